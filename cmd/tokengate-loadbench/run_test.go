package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
	buildOut  []byte
)

// selfBinary builds this command once per test process: the children of a
// run are subcommands of it.
func selfBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "tokengate-loadbench-test-")
		if buildErr != nil {
			return
		}
		buildOut, buildErr = exec.Command("go", "build", "-o", filepath.Join(buildDir, "loadbench"), ".").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("building tokengate-loadbench: %v\n%s", buildErr, buildOut)
	}
	return filepath.Join(buildDir, "loadbench")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// The child servers start on free loopback ports, report them, proxy, and
// die by PID.
func TestChildServers(t *testing.T) {
	self := selfBinary(t)
	var p procs
	defer p.killAll()
	ctx := context.Background()
	up, upAddr, err := p.startServer(ctx, "upstream", self, []string{"upstream"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	bare, bareAddr, err := p.startServer(ctx, "bare", self, []string{"bare", "-upstream", "http://" + upAddr}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(upAddr, "127.0.0.1:") || !strings.HasPrefix(bareAddr, "127.0.0.1:") {
		t.Errorf("children listen on %s and %s, want loopback", upAddr, bareAddr)
	}
	resp, err := http.Get("http://" + bareAddr + "/anything")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, upstreamBody) {
		t.Errorf("through the bare child: %d %q", resp.StatusCode, body)
	}
	p.killAll()
	for _, c := range []*child{up, bare} {
		if !c.exited() {
			t.Errorf("%s still running after killAll", c.name)
		}
	}
	if _, err := http.Get("http://" + bareAddr + "/"); err == nil {
		t.Error("bare child still answers after killAll")
	}
}

func TestChildBadUpstream(t *testing.T) {
	self := selfBinary(t)
	var p procs
	defer p.killAll()
	_, _, err := p.startServer(context.Background(), "bare", self, []string{"bare", "-upstream", "ftp://x"}, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "-upstream must be an http:// URL") {
		t.Errorf("err = %v, want the child's complaint", err)
	}
}

// The whole run, -short, against the real tokengate binary. It is skipped
// only while cmd/tokengate does not build.
func TestShortRunAgainstTokengate(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the full load run")
	}
	self := selfBinary(t)
	dir := t.TempDir()
	tg := filepath.Join(dir, "tokengate")
	if out, err := exec.Command("go", "build", "-o", tg, "../tokengate").CombinedOutput(); err != nil {
		t.Skipf("cmd/tokengate does not build yet: %v\n%s", err, out)
	}
	outFile := filepath.Join(dir, "bench.md")
	svgFile := filepath.Join(dir, "bench.svg")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "-short", "-concurrency", "4", "-tokengate", tg, "-out", outFile, "-svg", svgFile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("load run failed: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	report := stdout.String()
	for _, want := range []string{"| bare |", "| tokengate-reused |", "| tokengate-reused-quiet |", "| tokengate-unique |",
		"| tokengate-public |", "| tokengate-cookie |", "tokengate-cookie: ", "| tokengate-verify |", "| tokengate-default |", "| tokengate-unique-eddsa |", "tokengate-unique: 0 hits",
		"tokengate-unique-eddsa: 0 hits", "access log on vs off"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if runtime.GOOS == "linux" && !regexp.MustCompile(`\| bare \|.*\| [0-9.]+µs \| [0-9.]+µs \| [0-9.]+µs \|`).MatchString(report) {
		t.Errorf("no CPU per request (server, upstream, generator) for bare:\n%s", report)
	}
	svg, err := os.ReadFile(svgFile)
	if err != nil || !strings.HasPrefix(string(svg), "<svg ") || !strings.Contains(string(svg), "tokengate-unique-eddsa") {
		t.Errorf("no chart written (err %v): %.200s", err, svg)
	}
	if strings.Contains(report, verdictInvalid) {
		t.Errorf("run had request errors:\n%s", report)
	}
	written, err := os.ReadFile(outFile)
	if err != nil || string(written) != report {
		t.Errorf("-out file differs from stdout (err %v)", err)
	}
}
