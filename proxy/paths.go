package proxy

import (
	"errors"
	"strings"
)

// pathClass sorts request paths before routing.
type pathClass uint8

const (
	// pathClean may match a route or a public path.
	pathClean pathClass = iota
	// pathUnclean is legal but ambiguous (empty segments, encoded slashes,
	// double encoding): it is proxied, but only as a private path.
	pathUnclean
	// pathHostile has dot segments (also "..;"), backslashes or control
	// characters: no real client sends those, they only serve traversal
	// tricks against the upstream, so the request is refused with 400.
	pathHostile
)

// classifyPath looks at the decoded path and, when the client's spelling
// differed from the default encoding, at the raw one too. It never allocates.
func classifyPath(path, rawPath string) pathClass {
	if path == "" || path[0] != '/' {
		return pathUnclean // "*" (OPTIONS *) and authority-form requests
	}
	class := pathClean
	start := 1
	for i := 1; i <= len(path); i++ {
		if i < len(path) {
			c := path[i]
			if c < 0x20 || c == 0x7f || c == '\\' {
				return pathHostile
			}
			if c == '%' {
				// A "%" that survived decoding was sent as %25: an upstream
				// decoding twice would see something else than we did.
				class = pathUnclean
			}
			if c != '/' {
				continue
			}
		}
		seg := path[start:i]
		switch {
		case isDotSegment(seg):
			return pathHostile
		case seg == "" && i < len(path):
			class = pathUnclean // "//": upstreams disagree on what it means
		}
		start = i + 1
	}
	if rawPath != "" && containsEncodedSlash(rawPath) {
		// "/healthz%2fadmin" decodes to "/healthz/admin", but an upstream
		// that keeps %2f sees one segment "healthz%2fadmin".
		class = pathUnclean
	}
	return class
}

// isDotSegment reports "." and ".." and their path-parameter forms (".;x",
// "..;x"), which servlet containers treat as dot segments.
func isDotSegment(seg string) bool {
	if i := strings.IndexByte(seg, ';'); i >= 0 {
		seg = seg[:i]
	}
	return seg == "." || seg == ".."
}

func containsEncodedSlash(raw string) bool {
	for i := 0; i+2 < len(raw); i++ {
		if raw[i] != '%' {
			continue
		}
		switch {
		case raw[i+1] == '2' && (raw[i+2] == 'f' || raw[i+2] == 'F'):
			return true
		case raw[i+1] == '5' && (raw[i+2] == 'c' || raw[i+2] == 'C'):
			return true
		}
	}
	return false
}

// isCleanPath reports whether p is an absolute path that classifyPath calls
// clean and that contains no "%".
func isCleanPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.Contains(p, "%") && classifyPath(p, "") == pathClean
}

// cleanPublicPath validates a configured public path and drops a trailing
// slash: "/static/" and "/static" both mean the segment prefix /static.
func cleanPublicPath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", errors.New("must start with /")
	}
	if !isCleanPath(p) {
		return "", errors.New("must be a clean path (no dot segments, empty segments, %, \\ or control characters)")
	}
	if p != "/" {
		p = strings.TrimSuffix(p, "/")
	}
	return p, nil
}

// publicPaths matches clean request paths against segment prefixes.
type publicPaths []string

func newPublicPaths(paths []string) publicPaths {
	out := make(publicPaths, 0, len(paths))
	for _, p := range paths {
		c, err := cleanPublicPath(p)
		if err != nil {
			continue // validate reported it
		}
		out = append(out, c)
	}
	return out
}

// match reports whether path, which classifyPath called clean, lies under
// one of the prefixes by whole segments: /healthz matches /healthz and
// /healthz/x, not /healthzX. Matching is case-sensitive, like the upstream's
// own routing usually is.
func (pp publicPaths) match(path string) bool {
	for _, p := range pp {
		if p == "/" {
			return true
		}
		if strings.HasPrefix(path, p) && (len(path) == len(p) || path[len(p)] == '/') {
			return true
		}
	}
	return false
}
