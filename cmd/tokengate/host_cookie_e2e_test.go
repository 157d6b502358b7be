package main

import (
	"net/http"
	"strings"
	"testing"
)

// Issue 21 point 3 behind the real nginx and Caddy with the shipped files:
// with cookie_secure: true (as the shipped tokengate.yaml has it) the
// session cookie is __Host-tokengate. It authenticates through the
// ingress; a planted un-prefixed tokengate cookie holding another valid
// token neither authenticates nor reaches the app; the app keeps its own
// cookies.
func TestForwardAuthHostPrefixedCookie(t *testing.T) {
	for _, kind := range ingresses {
		t.Run(kind.name, func(t *testing.T) {
			s := newForwardAuth(t, kind, "TOKENGATE_BROWSER_COOKIE_SECURE=true")
			logs := func() string { return s.in.logs() + "\n" + s.tg.logs.String() }
			alice := s.login(t)
			r := call(t, "POST", s.in.base+"/tokengate/login", "", `{"username":"bob","password":"`+testUsers["bob"]+`"}`)
			bob, _ := r.json(t)["token"].(string)
			if bob == "" {
				t.Fatalf("bob's login: %d %s", r.Code, r.Body)
			}

			r = s.fetch(t, "GET", "/app/prefixed", [][2]string{{"Accept", "application/json"}, {"Cookie", "app=1; tokengate=" + bob + "; __Host-tokengate=" + alice}})
			if ids, _ := s.identitySeen("/app/prefixed"); r.Code != http.StatusOK || strings.Join(ids, ",") != "alice" {
				t.Fatalf("__Host-tokengate beside a planted tokengate: %d, identity %q\n%s", r.Code, ids, logs())
			}
			if got, _ := s.cookieSeen("/app/prefixed"); strings.Join(cookiePairs(got), "; ") != "app=1" {
				t.Errorf("the app received Cookie %q, want app=1", redactCookies(strings.Join(got, "; ")))
			}

			r = s.fetch(t, "GET", "/app/planted", [][2]string{{"Accept", "application/json"}, {"Cookie", "app=1; tokengate=" + bob}})
			if _, reached := s.identitySeen("/app/planted"); r.Code != http.StatusUnauthorized || reached {
				t.Errorf("a planted un-prefixed cookie alone: %d, reached the app %v; want 401\n%s", r.Code, reached, logs())
			}
		})
	}
}
