package access

import (
	"errors"
	"strings"
)

// PathClass sorts request paths before routing and matching.
type PathClass uint8

const (
	// PathClean may match a route, a public path or any rule.
	PathClean PathClass = iota
	// PathUnclean is legal but ambiguous (empty segments, encoded slashes,
	// double encoding, ";parameters"): it is proxied, but never matched by
	// a public rule; the other rules judge its canonical form (Canonical).
	PathUnclean
	// PathHostile has dot segments (also "..;"), backslashes or control
	// characters: no real client sends those, they only serve traversal
	// tricks against the upstream, so the request is refused with 400.
	PathHostile
)

// ClassifyPath looks at the decoded path and, when the client's spelling
// differed from the default encoding, at the raw one too. It never
// allocates. A ";" in the path (a servlet path parameter, "/admin;x=1")
// makes it unclean: servers disagree on whether it is part of the segment.
func ClassifyPath(path, rawPath string) PathClass {
	if path == "" || path[0] != '/' {
		return PathUnclean // "*" (OPTIONS *) and authority-form requests
	}
	class := PathClean
	start := 1
	for i := 1; i <= len(path); i++ {
		if i < len(path) {
			c := path[i]
			if c < 0x20 || c == 0x7f || c == '\\' {
				return PathHostile
			}
			if c == '%' || c == ';' {
				// A "%" that survived decoding was sent as %25: an upstream
				// decoding twice would see something else than we did. A
				// ";" starts a path parameter to some servers only.
				class = PathUnclean
			}
			if c != '/' {
				continue
			}
		}
		seg := path[start:i]
		switch {
		case IsDotSegment(seg):
			return PathHostile
		case seg == "" && i < len(path):
			class = PathUnclean // "//": upstreams disagree on what it means
		}
		start = i + 1
	}
	if rawPath != "" && ContainsEncodedSlash(rawPath) {
		// "/healthz%2fadmin" decodes to "/healthz/admin", but an upstream
		// that keeps %2f sees one segment "healthz%2fadmin".
		class = PathUnclean
	}
	return class
}

// IsDotSegment reports "." and ".." and their path-parameter forms (".;x",
// "..;x"), which servlet containers treat as dot segments.
func IsDotSegment(seg string) bool {
	if i := strings.IndexByte(seg, ';'); i >= 0 {
		seg = seg[:i]
	}
	return seg == "." || seg == ".."
}

// ContainsEncodedSlash reports an encoded "/" or "\\" (%2f, %5c, either
// case) in a raw path.
func ContainsEncodedSlash(raw string) bool {
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

// IsCleanPath reports whether p is an absolute path that ClassifyPath calls
// clean and that contains no "%".
func IsCleanPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.Contains(p, "%") && ClassifyPath(p, "") == PathClean
}

// CleanPrefix validates a configured path prefix (a public path, a rule's
// path) and drops a trailing slash: "/static/" and "/static" both mean the
// segment prefix /static.
func CleanPrefix(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", errors.New("must start with /")
	}
	if !IsCleanPath(p) {
		return "", errors.New("must be a clean path (no dot segments, empty segments, %, ;, \\ or control characters)")
	}
	if p != "/" {
		p = strings.TrimSuffix(p, "/")
	}
	return p, nil
}

// UnderPrefix reports whether path lies under prefix by whole segments:
// /healthz matches /healthz and /healthz/x, not /healthzX. Case-sensitive,
// like the upstream's own routing usually is.
func UnderPrefix(path, prefix string) bool {
	if prefix == "/" {
		return true
	}
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// Canonical is the form every rule but a public one judges: the decoded
// path with empty segments dropped ("//admin" is "/admin"), each segment's
// ";parameters" removed ("/admin;x=1/users" is "/admin/users", as Tomcat
// reads it) and a trailing slash dropped. It allocates only when the path
// differs from its canonical form.
func Canonical(path string) string {
	if !needsCanon(path) {
		return path
	}
	b := make([]byte, 0, len(path))
	for seg := range strings.SplitSeq(path, "/") {
		if i := strings.IndexByte(seg, ';'); i >= 0 {
			seg = seg[:i]
		}
		if seg == "" {
			continue
		}
		b = append(b, '/')
		b = append(b, seg...)
	}
	if len(b) == 0 {
		return "/"
	}
	return string(b)
}

func needsCanon(path string) bool {
	if path == "" || path[0] != '/' {
		return true
	}
	if len(path) > 1 && path[len(path)-1] == '/' {
		return true
	}
	for i := 1; i < len(path); i++ {
		if path[i] == ';' || (path[i] == '/' && path[i-1] == '/') {
			return true
		}
	}
	return false
}
