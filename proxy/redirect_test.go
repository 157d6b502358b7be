package proxy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// redirectCases: every open-redirect spelling we know of lands on "/";
// ordinary same-origin paths are kept as sent.
var redirectCases = []struct {
	rd   string
	safe bool
}{
	// Ordinary pages.
	{"/", true},
	{"/app", true},
	{"/app/", true},
	{"/reports/2025?q=a%20b&sort=asc", true},
	{"/search?next=//evil.example", true}, // only the path decides where a browser goes
	{"/a/b#section", true},
	{"/caf%C3%A9", true},
	{"/x?y=%2F%2Fevil.example", true},
	{"/file.txt", true},
	{"/a..b/c", true},
	{"/.well-known/x", true},

	// Empty, relative, absolute.
	{"", false},
	{"app", false},
	{"./app", false},
	{"../app", false},
	{"evil.example", false},
	{"https://evil.example", false},
	{"https://evil.example/", false},
	{"http://evil.example/app", false},
	{"HTTPS://evil.example", false},
	{"javascript:alert(1)", false},
	{"JaVaScRiPt:alert(1)", false},
	{"data:text/html,<script>alert(1)</script>", false},
	{"vbscript:msgbox(1)", false},
	{"mailto:a@evil.example", false},
	{"ftp://evil.example", false},
	{"https:evil.example", false},
	{"http:/evil.example", false},
	{"https:/\\evil.example", false},

	// Scheme-relative and authority tricks.
	{"//evil.example", false},
	{"//evil.example/", false},
	{"///evil.example", false},
	{"////evil.example", false},
	{"//user@evil.example", false},
	{"/@evil.example", true}, // a path segment "@evil.example" on this origin
	{"//@evil.example", false},
	{"//evil.example%2F..", false},
	{"/%2F/evil.example", false},
	{"/%2f%2fevil.example", false},
	{"%2F%2Fevil.example", false},
	{"/%252F%252Fevil.example", false}, // decoded twice by someone
	{"/%25252F%25252Fevil.example", false},
	{"/%5Cevil.example", false},
	{"/%5cevil.example", false},
	{"/%255Cevil.example", false},

	// Backslashes: browsers read them as slashes.
	{"\\\\evil.example", false},
	{"\\/evil.example", false},
	{"/\\evil.example", false},
	{"/\\/evil.example", false},
	{"/a\\b", false},
	{"\\evil.example", false},

	// Whitespace and control characters that browsers strip or stop at.
	{" /app", false},
	{"/app ", false},
	{" //evil.example", false},
	{"/ /evil.example", false},
	{"\t//evil.example", false},
	{"/\t/evil.example", false},
	{"/\n/evil.example", false},
	{"/\r\n/evil.example", false},
	{"/\x00/evil.example", false},
	{"/app\x00", false},
	{"/\x0b/evil.example", false},
	{"/\x7f/evil.example", false},
	{"/%09/evil.example", false},
	{"/%0a/evil.example", false},
	{"/%0d%0a/evil.example", false},
	{"/%00", false},
	{"/app%0d%0aSet-Cookie:x=1", false}, // header splitting if anyone decodes
	{"/%20/evil.example", true},         // "/ /..." is a path on this origin, encoded

	// Non-ASCII look-alikes (fullwidth solidus, ideographic full stop).
	{"/\uff0fevil.example", false},
	{"/\u3002evil.example", false},
	{"/\u2215evil.example", false},

	// Dot segments, plain and encoded.
	{"/./app", false},
	{"/../app", false},
	{"/a/../../evil", false},
	{"/.//evil.example", false},
	{"/%2e%2e/app", false},
	{"/%2E/app", false},
	{"/..;/app", false},
	{"/app/..", false},

	// Too long to be a page anybody was on.
	{"/" + strings.Repeat("a", maxRedirectBytes), false},
}

func TestSafeRedirect(t *testing.T) {
	for _, tt := range redirectCases {
		t.Run(tt.rd, func(t *testing.T) {
			got, ok := safeRedirect(tt.rd, nil)
			want := "/"
			if tt.safe {
				want = tt.rd
			}
			if got != want || ok != tt.safe {
				t.Errorf("safeRedirect(%q) = %q, %v; want %q, %v", tt.rd, got, ok, want, tt.safe)
			}
		})
	}
}

// TestSignInRedirects runs the same table through the real form: where
// does the 303 send the browser?
func TestSignInRedirects(t *testing.T) {
	e := newBrowserEnv(t)
	for _, tt := range redirectCases {
		e.checkSignInRedirect(t, tt.rd, tt.safe)
	}
}

func FuzzSafeRedirect(f *testing.F) {
	for _, tt := range redirectCases {
		f.Add(tt.rd)
	}
	f.Fuzz(func(t *testing.T, rd string) {
		got, ok := safeRedirect(rd, nil)
		if !ok {
			if got != "/" {
				t.Fatalf("refused %q but returned %q", rd, got)
			}
			return
		}
		// Whatever passes must resolve to this origin in a browser-like
		// resolver, and stay there after a decoding.
		base, _ := url.Parse("https://app.example/")
		for _, s := range []string{got, mustUnescape(got)} {
			u, err := base.Parse(s)
			if err != nil {
				continue
			}
			if u.Host != "app.example" || u.Scheme != "https" {
				t.Fatalf("safeRedirect accepted %q, which leaves the origin (%s)", rd, u)
			}
		}
		if strings.ContainsAny(got, "\\\r\n\t ") {
			t.Fatalf("accepted %q", got)
		}
	})
}

func mustUnescape(s string) string {
	d, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return d
}

// checkSignInRedirect signs in through the real form with rd and checks the
// 303 goes to rd when it is safe, else to "/".
func (e *env) checkSignInRedirect(t *testing.T, rd string, safe bool) {
	t.Helper()
	t.Run(rd, func(t *testing.T) {
		p := e.getPage(signInPath)
		res := e.postForm(signInPath, url.Values{"username": {"marco"}, "password": {marcoPassword}, "csrf": {p.csrf}, "rd": {rd}}, nil, p.csrfCookie)
		want := "/"
		if safe {
			want = rd
		}
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != want {
			t.Errorf("rd %q: %d Location %q, want %q", rd, res.StatusCode, res.Header.Get("Location"), want)
		}
	})
}
