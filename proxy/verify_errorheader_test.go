package proxy

import (
	"net/http"
	"testing"
)

// An nginx-style refusal names its code and message in headers, which the
// nginx template copies into the answer it writes (auth_request drops the
// body); other styles carry them in the body only.
func TestVerifyNamesErrorForNginx(t *testing.T) {
	e := newVerifyEnv(t, loopback)
	revoked := e.issue("marco", "marco")
	if res := e.do("POST", "/user/logout", bearer(revoked), ""); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d %s", res.StatusCode, res.body)
	}
	nginx := hdr("X-Original-Uri", "/app", "X-Original-Method", "GET")
	caddy := hdr("X-Forwarded-Uri", "/app", "X-Forwarded-Method", "GET")
	for _, tc := range []struct {
		name      string
		hdr       http.Header
		code, msg string // "" = no header
	}{
		{"nginx, no credentials", nginx, errMissingToken.Code, errMissingToken.Message},
		{"nginx, revoked", merge(nginx, bearer(revoked)), errTokenRevoked.Code, errTokenRevoked.Message},
		{"nginx, not a token", merge(nginx, bearer("x.y.z")), errInvalidToken.Code, errInvalidToken.Message},
		{"caddy, revoked", merge(caddy, bearer(revoked)), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do("GET", verifyPath, tc.hdr, "")
			if res.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d: %s", res.StatusCode, res.body)
			}
			if got := res.Header.Get(errorHeader); got != tc.code {
				t.Errorf("%s = %q, want %q", errorHeader, got, tc.code)
			}
			if got := res.Header.Get(errorMessageHeader); got != tc.msg {
				t.Errorf("%s = %q, want %q", errorMessageHeader, got, tc.msg)
			}
			if tc.code != "" && res.apiErr().Code != tc.code {
				t.Errorf("body code %q, header %q", res.apiErr().Code, tc.code)
			}
		})
	}
}
