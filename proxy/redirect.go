package proxy

import (
	"net/url"
	"strconv"
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
// An absolute http(s) URL is honoured only when its host is one of allowed
// (browser.allowed_redirect_hosts, for forward auth: the apps behind the
// ingress live on other hosts), and its path and query pass the same checks
// as a relative rd.
func safeRedirect(rd string, allowed redirectHosts) (string, bool) {
	if isSafeRelativeRedirect(rd) || allowed.permits(rd) {
		return rd, true
	}
	return "/", false
}

// redirectHosts are the hosts an absolute rd may name: exact host names,
// or ".example.com" for example.com and every name under it. Lower case.
type redirectHosts []string

func newRedirectHosts(hosts []string) redirectHosts {
	out := make(redirectHosts, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, strings.ToLower(h))
	}
	return out
}

// permits reports whether rd is an absolute http or https URL to an
// allowed host (any port), with no user info, whose path and query (if
// any) are a safe relative redirect. The authority is checked byte by
// byte before any parsing: only letters, digits, '.', '-' and one ':port'.
func (a redirectHosts) permits(rd string) bool {
	if len(a) == 0 || len(rd) > maxRedirectBytes {
		return false
	}
	var rest string
	switch {
	case len(rd) > 8 && strings.EqualFold(rd[:8], "https://"):
		rest = rd[8:]
	case len(rd) > 7 && strings.EqualFold(rd[:7], "http://"):
		rest = rd[7:]
	default:
		return false
	}
	authority, path := rest, ""
	if i := strings.IndexAny(rest, "/?#\\"); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	host, port, hasPort := strings.Cut(authority, ":")
	if !validRedirectHost(host) {
		return false
	}
	if hasPort {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 || strings.HasPrefix(port, "+") {
			return false
		}
	}
	if path != "" && !isSafeRelativeRedirect(path) {
		return false // also refuses "?x" and "#x" right after the host, and any "\\"
	}
	host = strings.ToLower(host)
	for _, h := range a {
		if h == host || (strings.HasPrefix(h, ".") && (host == h[1:] || strings.HasSuffix(host, h))) {
			return true
		}
	}
	return false
}

// validRedirectHost accepts a DNS name or IPv4 address: letters, digits,
// '-' and non-empty dot-separated labels.
func validRedirectHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
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
