package main

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// chartSVG draws the run at a glance, hand-written SVG (no dependency): for
// each scenario, its throughput and p99 ratios to bare with the budget
// marked, and the CPU time a request costs each process (server,
// upstream, load generator), stacked.
func chartSVG(m runMeta, sums []summary) string {
	const (
		labelW  = 190.0
		panelW  = 330.0
		gap     = 40.0
		rowH    = 30.0
		top     = 64.0
		bottom  = 46.0
		maxTput = 1.6 // ratio axis: 0 to 1.6 (a p99 ratio past it is clipped, its value printed)
	)
	width := labelW + 2*panelW + gap + 80
	height := top + rowH*float64(len(sums)) + bottom
	maxCPU := 0.0
	for _, s := range sums {
		maxCPU = math.Max(maxCPU, us(s.cpuPerReq)+us(s.upCPU)+us(s.genCPU))
	}
	maxCPU = niceCeil(maxCPU)

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#fff"/>`+"\n")
	title := fmt.Sprintf("tokengate vs bare httputil.ReverseProxy, %s, %d CPUs, %d clients, %d x %v",
		m.date.UTC().Format("2006-01-02 15:04 UTC"), m.cpus, m.concurrency, m.turns, m.duration)
	if m.loadavg != "" {
		title += ", load avg " + m.loadavg
	}
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))

	x1 := labelW
	x2 := labelW + panelW + gap
	fmt.Fprintf(&b, `<text x="%.0f" y="44">to bare: throughput (bar), CPU-bound (o), p99 (line)</text>`+"\n", x1)
	fmt.Fprintf(&b, `<text x="%.0f" y="44">CPU µs per request (stacked)</text>`+"\n", x2)

	scaleT := func(r float64) float64 { return x1 + panelW*math.Min(math.Max(r, 0), maxTput)/maxTput }
	scaleC := func(v float64) float64 { return panelW * v / maxCPU }
	// Grid: ratio 0.5, 1.0, 1.5; CPU in quarters.
	for _, r := range []float64{0, 0.5, 1, 1.5} {
		x := scaleT(r)
		stroke := "#ddd"
		if r == 1 {
			stroke = "#888"
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s"/>`+"\n", x, top-6, x, height-bottom+4, stroke)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%.1f</text>`+"\n", x, height-bottom+18, r)
	}
	for i := 0; i <= 4; i++ {
		v := maxCPU * float64(i) / 4
		x := x2 + scaleC(v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/>`+"\n", x, top-6, x, height-bottom+4)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%.0f</text>`+"\n", x, height-bottom+18, v)
	}

	colors := [3]string{"#3b6ea8", "#9bbad9", "#d9d9d9"}
	for i, s := range sums {
		y := top + rowH*float64(i)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", labelW-8, y+rowH/2+4, html.EscapeString(s.scenario))
		// Throughput ratio bar, coloured by verdict.
		fill := "#7a7a7a"
		switch s.verdict {
		case verdictPass:
			fill = "#4c9a4c"
		case verdictFail:
			fill = "#c0504d"
		case verdictInvalid:
			fill = "#e0a030"
		}
		if !math.IsNaN(s.tputRatio) {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n",
				x1, y+5, scaleT(s.tputRatio)-x1, rowH-14, fill)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#000">%.2f</text>`+"\n", scaleT(s.tputRatio)+4, y+rowH/2+1, s.tputRatio)
		}
		if !math.IsNaN(s.p99Ratio) {
			py := y + rowH - 7
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000" stroke-width="2"/>`+"\n", x1, py, scaleT(s.p99Ratio), py)
			if s.scenario != scenarioBare {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" fill="#333">p99 %.2f</text>`+"\n", scaleT(s.p99Ratio)+4, py+3, s.p99Ratio)
			}
		}
		if !math.IsNaN(s.cpuRatio) && s.cpuRatio > 0 {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="#fff" stroke="#000" stroke-width="1.5"/>`+"\n", scaleT(s.cpuRatio), y+rowH/2-2)
		}
		if s.budget != nil {
			bx := scaleT(s.budget.minThroughput)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000" stroke-width="2" stroke-dasharray="3,2"/>`+"\n", bx, y+2, bx, y+rowH-2)
		}
		// CPU per request, stacked.
		x := x2
		for k, v := range []float64{us(s.cpuPerReq), us(s.upCPU), us(s.genCPU)} {
			if v <= 0 {
				continue
			}
			w := scaleC(v)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y+5, w, rowH-10, colors[k])
			x += w
		}
		if total := us(s.cpuPerReq) + us(s.upCPU) + us(s.genCPU); total > 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%.0f (%.0f)</text>`+"\n", x+4, y+rowH/2+4, total, us(s.cpuPerReq))
		}
	}
	// Legend.
	ly := height - 12
	for k, name := range []string{"server", "upstream", "load generator"} {
		lx := x2 + float64(k)*90
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f" font-size="11">%s</text>`+"\n", lx, ly-9, colors[k], lx+14, ly, name)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11" fill="#555">green PASS, red FAIL, grey no budget, dashes budget; CPU: total (server)</text>`+"\n", x1, ly)
	b.WriteString("</svg>\n")
	return b.String()
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 10).
func niceCeil(v float64) float64 {
	if v <= 10 {
		return 10
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
