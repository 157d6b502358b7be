package proxy

import (
	"net/url"
	"strings"
	"testing"
)

// redirectHostCases are absolute rd values under allowed_redirect_hosts
// ["app.example.com", ".example.org"].
var redirectHostCases = []struct {
	rd   string
	safe bool
}{
	{"https://app.example.com/", true},
	{"https://app.example.com", true},
	{"http://app.example.com/a/b?x=1&y=2", true},
	{"https://APP.Example.COM/page", true},
	{"https://app.example.com:8443/page", true},
	{"https://example.org/", true},
	{"https://a.b.example.org/x", true},
	{"HTTPS://sub.example.org/x", true},

	// Hosts not listed.
	{"https://evil.com/", false},
	{"https://example.com/", false}, // app.example.com is exact, not a suffix
	{"https://x.app.example.com/", false},
	{"https://evilexample.org/", false},
	{"https://example.org.evil.com/", false},
	{"https://app.example.com.evil.com/", false},

	// Tricks on the authority.
	{"https://app.example.com@evil.com/", false},
	{"https://evil.com#@app.example.com/", false},
	{"https://evil.com?@app.example.com/", false},
	{"https://evil.com\\@app.example.com/", false},
	{"https://app.example.com\\.evil.com/", false},
	{"https://app.example.com:evil.com/", false},
	{"https://app.example.com:0/", false},
	{"https://app.example.com:99999/", false},
	{"https://app.example.com:+443/", false},
	{"https://app.example.com%2F.evil.com/", false},
	{"https://app%2eexample.com/", false},
	{"https://app.example.com./", false},
	{"https://[::1]/", false},
	{"https:/app.example.com/", false},
	{"https:///app.example.com/", false},
	{"//app.example.com/", false},
	{"javascript://app.example.com/%0aalert(1)", false},
	{"ftp://app.example.com/", false},
	{"https://app.example.com\t/", false},
	{"https://app.example.com /", false},

	// The path part passes the relative rules.
	{"https://app.example.com//evil.com", false},
	{"https://app.example.com/\\evil.com", false},
	{"https://app.example.com/%2F%2Fevil.com", false},
	{"https://app.example.com/../x", false},
	{"https://app.example.com?x=1", false},
	{"https://app.example.com#x", false},
	{"https://app.example.com/a b", false},
	{"https://app.example.com/" + strings.Repeat("a", maxRedirectBytes), false},
}

func TestSafeRedirectAllowedHosts(t *testing.T) {
	allowed := newRedirectHosts([]string{"app.example.com", ".Example.org"})
	for _, tt := range redirectHostCases {
		t.Run(tt.rd, func(t *testing.T) {
			got, ok := safeRedirect(tt.rd, allowed)
			want := "/"
			if tt.safe {
				want = tt.rd
			}
			if got != want || ok != tt.safe {
				t.Errorf("safeRedirect(%q) = %q, %v; want %q, %v", tt.rd, got, ok, want, tt.safe)
			}
			// Without allowed hosts no absolute URL passes.
			if got, ok := safeRedirect(tt.rd, nil); ok {
				t.Errorf("no allowed hosts: safeRedirect(%q) = %q, true", tt.rd, got)
			}
		})
	}
	// The relative cases keep their verdicts with allowed hosts set.
	for _, tt := range redirectCases {
		if _, ok := safeRedirect(tt.rd, allowed); ok != tt.safe {
			t.Errorf("with allowed hosts: safeRedirect(%q) ok = %v, want %v", tt.rd, ok, tt.safe)
		}
	}
}

// Through the real form: an allowed absolute rd is where the 303 goes.
func TestSignInRedirectsToAllowedHosts(t *testing.T) {
	e := newBrowserEnv(t, envConfig{options: func(o *Options) {
		o.Browser.AllowedRedirectHosts = []string{"app.example.com", ".example.org"}
	}})
	for _, tt := range redirectHostCases {
		e.checkSignInRedirect(t, tt.rd, tt.safe)
	}
	// The GET page carries an allowed rd into its form.
	res := e.send("GET", signInPath+"?rd="+url.QueryEscape("https://app.example.com/x"), nil, "")
	if !strings.Contains(res.body, "https://app.example.com/x") {
		t.Error("the sign-in page dropped an allowed absolute rd")
	}
}

func TestAllowedRedirectHostsValidation(t *testing.T) {
	for _, h := range []string{"https://x.com", "x.com:443", "", ".", "a..b", "a_b.com", "[::1]"} {
		o := Options{Browser: BrowserOptions{AllowedRedirectHosts: []string{h}}}.withDefaults()
		if err := o.Browser.validate(); err == nil || !strings.Contains(err.Error(), "AllowedRedirectHosts") {
			t.Errorf("AllowedRedirectHosts %q: err %v, want a refusal", h, err)
		}
	}
	o := Options{Browser: BrowserOptions{AllowedRedirectHosts: []string{"app.example.com", ".example.org", "10.0.0.1"}}}.withDefaults()
	if err := o.Browser.validate(); err != nil {
		t.Error(err)
	}
}
