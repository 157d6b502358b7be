package deploy

import (
	"fmt"
	"sort"
	"strings"
)

// promqlKeywords are identifiers that are never metric names. Aggregation
// operators are reserved in PromQL, and may be followed by "by (...)"
// rather than "(", so they are listed here too.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true,
	"stddev": true, "stdvar": true, "count": true, "count_values": true,
	"bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
	"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "inf": true, "nan": true,
	"atan2": true, "start": true, "end": true,
}

// grouping keywords take a parenthesised label list that is not an expression.
var promqlGrouping = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true,
}

// MetricNames returns the sorted metric names a PromQL expression selects.
// It is a small lexer, not a full parser: it skips strings, label matchers
// ({...}), ranges ([...]), grouping label lists (by (...)), function and
// aggregation names (an identifier followed by "("), keywords, numbers,
// durations and Grafana variables ($x, ${x}), and reports unbalanced
// brackets. Selectors written as {__name__="x"} are not supported: an
// expression using one is an error, so the metric list cannot miss it.
func MetricNames(expr string) ([]string, error) {
	names := map[string]bool{}
	open := 0 // unclosed '('
	s := expr
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string in %q", expr)
			}
			i = j + 1
		case c == '#': // comment to end of line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '{':
			// Label matchers: skip to the matching '}', strings included.
			j := i + 1
			for j < len(s) && s[j] != '}' {
				if s[j] == '"' || s[j] == '\'' || s[j] == '`' {
					q := s[j]
					j++
					for j < len(s) && s[j] != q {
						if s[j] == '\\' && q != '`' {
							j++
						}
						j++
					}
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unbalanced '{' in %q", expr)
			}
			if strings.Contains(s[i:j], "__name__") {
				return nil, fmt.Errorf("__name__ matchers are not supported in %q", expr)
			}
			i = j + 1
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unbalanced '[' in %q", expr)
			}
			i += j + 1
		case c == '(':
			open++
			i++
		case c == ')' || c == ']' || c == '}':
			if c != ')' || open == 0 {
				return nil, fmt.Errorf("unbalanced %q in %q", c, expr)
			}
			open--
			i++
		case c == '$':
			j := i + 1
			if j < len(s) && s[j] == '{' {
				k := strings.IndexByte(s[j:], '}')
				if k < 0 {
					return nil, fmt.Errorf("unterminated ${ in %q", expr)
				}
				i = j + k + 1
				continue
			}
			for j < len(s) && isIdentByte(s[j], false) {
				j++
			}
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			// A number or a duration (5m, 1h30m, 0.99, 1e3, 0x1f).
			j := i
			for j < len(s) && (isIdentByte(s[j], false) || s[j] == '.') {
				j++
			}
			i = j
		case isIdentByte(c, true):
			j := i
			for j < len(s) && isIdentByte(s[j], false) {
				j++
			}
			word := s[i:j]
			k := j
			for k < len(s) && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n' || s[k] == '\r') {
				k++
			}
			switch {
			case promqlGrouping[strings.ToLower(word)]:
				if k < len(s) && s[k] == '(' {
					e := strings.IndexByte(s[k:], ')')
					if e < 0 {
						return nil, fmt.Errorf("unbalanced '(' after %s in %q", word, expr)
					}
					j = k + e + 1
				}
			case promqlKeywords[strings.ToLower(word)]:
			case k < len(s) && s[k] == '(':
				// A function or aggregation name.
			default:
				names[word] = true
			}
			i = j
		default:
			i++
		}
	}
	if open > 0 {
		return nil, fmt.Errorf("unbalanced '(' in %q", expr)
	}
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

func isIdentByte(c byte, first bool) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
}
