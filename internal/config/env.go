package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// envAllowed reports whether a TOKENGATE_* variable that names no key is
// meant for something else and so is ignored:
//   - TOKENGATE_CONFIG and TOKENGATE_TEST_* (tooling, tests);
//   - the service links Kubernetes injects for a Service named tokengate or
//     tokengate-*: *_SERVICE_HOST, *_SERVICE_PORT[_NAME], *_PORT and
//     *_PORT_<number>_<PROTOCOL>[_PROTO|_PORT|_ADDR].
func envAllowed(name string) bool {
	if name == envPrefix+"CONFIG" || strings.HasPrefix(name, envPrefix+"TEST_") {
		return true
	}
	if strings.HasSuffix(name, "_SERVICE_HOST") || strings.HasSuffix(name, "_SERVICE_PORT") ||
		strings.Contains(name, "_SERVICE_PORT_") || strings.HasSuffix(name, "_PORT") {
		return true
	}
	_, rest, ok := strings.Cut(name, "_PORT_")
	if !ok {
		return false
	}
	parts := strings.Split(rest, "_")
	if len(parts) < 2 || len(parts) > 3 {
		return false
	}
	if _, err := strconv.ParseUint(parts[0], 10, 16); err != nil {
		return false
	}
	switch parts[1] {
	case "TCP", "UDP", "SCTP":
	default:
		return false
	}
	return len(parts) == 2 || parts[2] == "PROTO" || parts[2] == "PORT" || parts[2] == "ADDR"
}

// applyEnv overrides keys from TOKENGATE_* variables, in order (a later
// duplicate wins). Lists take comma-separated values; an empty value empties
// a list or a string.
func applyEnv(environ []string, cfg *Config) []error {
	keys := map[string]configKey{}
	var names []string
	for _, k := range configKeys() {
		keys[envName(k.path)] = k
		names = append(names, envName(k.path))
	}
	var errs []error
	v := reflect.ValueOf(cfg).Elem()
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) {
			continue
		}
		k, ok := keys[name]
		if !ok {
			if !envAllowed(name) {
				e := &fieldError{Key: name, Msg: "names no configuration key"}
				if s := suggest(name, names); s != "" {
					e.Hint = "did you mean " + s + "?"
				}
				errs = append(errs, e)
			}
			continue
		}
		fv := v.FieldByIndex(k.index)
		if k.typ == reflect.TypeFor[[]string]() {
			var list []string
			for item := range strings.SplitSeq(val, ",") {
				if item = strings.TrimSpace(item); item != "" {
					list = append(list, item)
				}
			}
			fv.Set(reflect.ValueOf(list))
			for i := range list {
				cfg.origin[fmt.Sprintf("%s[%d]", k.path, i)] = name
			}
		} else if err := setScalar(fv, val); err != nil {
			errs = append(errs, &fieldError{Key: name, Msg: err.msg, Hint: err.hint})
			continue
		}
		cfg.origin[k.path] = name
	}
	return errs
}

// suggest returns the candidate closest to name when it is close enough to
// be a likely typo, else "".
func suggest(name string, candidates []string) string {
	best, bestDist := "", 3 // at most two edits away
	for _, c := range candidates {
		if strings.EqualFold(c, name) {
			return c
		}
		if d := editDistance(strings.ToLower(name), strings.ToLower(c)); d < bestDist && d < len(c) {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30 // not a typo of a key name; and keeps the cost bounded
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
