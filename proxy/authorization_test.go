package proxy

import (
	"net/http"
	"slices"
	"testing"
)

// The app never receives the client's Bearer token unless
// ForwardAuthorization asks for it: a token works against every app behind
// tokengate, so an app (or its logs) holding it could replay it. Public
// paths too; another scheme (an app's own Basic auth on a public path)
// passes.
func TestAuthorizationForwarding(t *testing.T) {
	for _, forward := range []bool{false, true} {
		name := "removed by default"
		if forward {
			name = "forward_authorization: true"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envConfig{options: func(o *Options) { o.ForwardAuthorization = forward }})
			tok := e.issue("marco", "marco")
			for _, tc := range []struct {
				name, path string
				auth       []string
				wantStrip  bool // the header is removed unless forwarded
			}{
				{"private path", "/app/x", []string{"Bearer " + tok}, true},
				{"scheme in lower case", "/app/x", []string{"bearer " + tok}, true},
				{"public path, valid token", "/healthz", []string{"Bearer " + tok}, true},
				{"public path, invalid token", "/healthz", []string{"Bearer not-a-token"}, true},
				{"public path, Basic", "/healthz", []string{"Basic bWFyY286eA=="}, false},
			} {
				t.Run(tc.name, func(t *testing.T) {
					res := e.do("GET", tc.path, http.Header{"Authorization": tc.auth}, "")
					if res.StatusCode != http.StatusOK {
						t.Fatalf("status %d: %s", res.StatusCode, res.body)
					}
					got := e.up.last(t).header["Authorization"]
					want := tc.auth
					if tc.wantStrip && !forward {
						want = nil
					}
					if !slices.Equal(got, want) {
						t.Errorf("the app received Authorization %q, want %q", got, want)
					}
				})
			}
		})
	}
}

func TestStripBearer(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{nil, nil},
		{[]string{"Bearer x"}, nil},
		{[]string{"  BEARER\tx"}, nil},
		{[]string{"Bearer"}, nil},
		{[]string{"Basic x", "Bearer y"}, []string{"Basic x"}},
		{[]string{"Bearerx"}, []string{"Bearerx"}},
		{[]string{"Digest a=b"}, []string{"Digest a=b"}},
	} {
		hdr := http.Header{}
		if tc.in != nil {
			hdr["Authorization"] = append([]string(nil), tc.in...)
		}
		stripBearer(hdr)
		if got := hdr["Authorization"]; !slices.Equal(got, tc.want) {
			t.Errorf("stripBearer(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if _, ok := hdr["Authorization"]; ok != (tc.want != nil) {
			t.Errorf("stripBearer(%q): key present = %v", tc.in, ok)
		}
	}
}
