package proxy

import (
	"net/url"
	"strings"
)

// maxRedirectBytes bounds rd: a longer one is not a page a user was on.
const maxRedirectBytes = 2048

// safeRedirect returns rd when it is a relative path on this origin, the
// only kind of redirect target browser sign-in honours; otherwise "/" and
// false. It is strict on purpose: a browser's URL parser and a server's
// routing disagree in many small ways, and every one of them is an open
// redirect (https://example.com, //example.com, /\example.com, \/example.com,
// / /example.com, /%2F%2Fexample.com decoded by the app, a tab or newline
// that a browser strips). So rd must be
//   - printable ASCII only (no spaces, control characters or non-ASCII:
//     tokengate's own redirects percent-encode those),
//   - an absolute path: one "/" first, never "//" and no "\" anywhere,
//   - free of dot segments,
//   - and the same after percent-decoding (repeatedly): no "//" or "/\"
//     prefix, no "\", control character or dot segment appears.
//
// Absolute URLs to other hosts (allowed_redirect_hosts, for forward auth)
// are a later extension of this function.
func safeRedirect(rd string) (string, bool) {
	if !isSafeRelativeRedirect(rd) {
		return "/", false
	}
	return rd, true
}

func isSafeRelativeRedirect(rd string) bool {
	if rd == "" || len(rd) > maxRedirectBytes {
		return false
	}
	for i := 0; i < len(rd); i++ {
		if c := rd[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return false
		}
	}
	if !isSafePath(rd) {
		return false
	}
	u, err := url.Parse(rd)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") {
		return false
	}
	// Whatever decodes the value later (the browser, the app, a second
	// proxy) must not see something else: check every decoding.
	s := rd
	for range 4 {
		d, err := url.PathUnescape(s)
		if err != nil {
			return false
		}
		if d == s {
			return true
		}
		for i := 0; i < len(d); i++ {
			if c := d[i]; c < ' ' || c == 0x7f || c == '\\' {
				return false
			}
		}
		if !isSafePath(d) {
			return false
		}
		s = d
	}
	return false // still changing after four decodings: nobody needs that
}

// isSafePath checks the path part (up to "?" or "#") of a candidate: one
// leading "/", not "//", no dot segments.
func isSafePath(s string) bool {
	if len(s) == 0 || s[0] != '/' {
		return false
	}
	if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return false
	}
	p := s
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if isDotSegment(seg) {
			return false
		}
	}
	return true
}
