package proxy

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

func TestClassifyPath(t *testing.T) {
	tests := []struct {
		target string // as a client sends it on the request line
		want   pathClass
	}{
		{"/healthz", pathClean},
		{"/healthz/", pathClean},
		{"/healthz/x/y", pathClean},
		{"/a.b/c..d/...", pathClean},
		{"/healthz/../admin", pathHostile},
		{"/healthz/./x", pathHostile},
		{"/healthz/.", pathHostile},
		{"/healthz/..", pathHostile},
		{"/healthz/%2e%2e/admin", pathHostile},
		{"/healthz/%2E%2E/admin", pathHostile},
		{"/healthz/.%2e/admin", pathHostile},
		{"/healthz%2f..%2fadmin", pathHostile},
		{"/healthz/..;/admin", pathHostile},
		{"/healthz/.;x/admin", pathHostile},
		{"/healthz%5c..%5cadmin", pathHostile},
		{"/healthz/%00", pathHostile},
		{"/healthz%2fadmin", pathUnclean},
		{"/healthz%5Cadmin", pathHostile}, // decodes to a backslash
		{"//healthz", pathUnclean},
		{"/healthz//x", pathUnclean},
		{"/healthz/%252e%252e/admin", pathUnclean},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			u, err := url.ParseRequestURI(tt.target)
			if err != nil {
				t.Fatal(err)
			}
			if got := classifyPath(u.Path, u.RawPath); got != tt.want {
				t.Errorf("classifyPath(%q, %q) = %d, want %d", u.Path, u.RawPath, got, tt.want)
			}
		})
	}
}

func TestPublicPathsMatch(t *testing.T) {
	pp := newPublicPaths([]string{"/healthz", "/static/"})
	tests := []struct {
		path string
		want bool
	}{
		{"/healthz", true},
		{"/healthz/", true},
		{"/healthz/x", true},
		{"/healthzX", false},
		{"/HEALTHZ", false},
		{"/healthz;x", false},
		{"/static", true},
		{"/static/app.js", true},
		{"/staticfoo", false},
		{"/", false},
		{"/admin", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := pp.match(tt.path); got != tt.want {
				t.Errorf("match(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

func TestCleanPublicPath(t *testing.T) {
	for _, p := range []string{"", "healthz", "/a/../b", "/a//b", "/a/%2e", `/a\b`, "/a/."} {
		if _, err := cleanPublicPath(p); err == nil {
			t.Errorf("cleanPublicPath(%q) accepted", p)
		}
	}
	for in, want := range map[string]string{"/healthz": "/healthz", "/static/": "/static", "/": "/"} {
		got, err := cleanPublicPath(in)
		if err != nil || got != want {
			t.Errorf("cleanPublicPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// FuzzPublicPath: whatever the client sends, a path matched as public is
// clean: path.Clean leaves it alone (up to a trailing slash), it lies under
// the prefix by whole segments, and the raw form hides no encoded slash.
func FuzzPublicPath(f *testing.F) {
	for _, s := range []string{"/healthz", "/healthz/../admin", "/healthz/%2e%2e/admin", "/healthz%2f..%2fadmin",
		"/healthz/..;/admin", "//healthz", "/healthzX", "/healthz/./x", "/healthz%5c..", "/healthz/%252e"} {
		f.Add(s)
	}
	pp := newPublicPaths([]string{"/healthz"})
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		if classifyPath(u.Path, u.RawPath) != pathClean || !pp.match(u.Path) {
			return
		}
		p := u.Path
		if cleaned := path.Clean(p); cleaned != p && cleaned+"/" != p {
			t.Fatalf("%q matched as public but cleans to %q", target, cleaned)
		}
		if p != "/healthz" && !strings.HasPrefix(p, "/healthz/") {
			t.Fatalf("%q matched /healthz but is outside it", target)
		}
		if strings.ContainsAny(p, "\\%") {
			t.Fatalf("%q matched as public with \\ or %%", target)
		}
		raw := strings.ToLower(u.EscapedPath())
		if strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") {
			t.Fatalf("%q matched as public with an encoded slash", target)
		}
	})
}
