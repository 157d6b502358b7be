package proxy

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"

	"tokengate/authn"
)

// TestForwardedUntrustedPeerWithTrustedProxies: with trusted_proxies set, a
// peer that is not among them is treated exactly like one with no trusted
// proxies configured: its X-Forwarded-For, -Host and -Proto are dropped
// before the app sees them, and login throttling counts the peer's own
// address whatever chain it claims (issue 17: the existing tests covered
// "none configured" and "the peer is trusted" only).
func TestForwardedUntrustedPeerWithTrustedProxies(t *testing.T) {
	e := newEnv(t, envConfig{
		throttle: authn.ThrottleOptions{PerUser: 100, PerAddress: 2},
		options: func(o *Options) {
			// The test client connects from 127.0.0.1: not in this list.
			o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
		},
	})
	spoofed := http.Header{
		"X-Forwarded-For":   {"6.6.6.6"},
		"X-Forwarded-Host":  {"evil.example"},
		"X-Forwarded-Proto": {"https"},
	}
	tok := e.issue("marco", "marco")
	for _, path := range []string{"/healthz", "/app"} {
		hdr := spoofed.Clone()
		hdr.Set("Authorization", "Bearer "+tok)
		if res := e.do("GET", path, hdr, ""); res.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, res.StatusCode, res.body)
		}
		h := e.up.last(t).header
		if got := h.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
			t.Errorf("%s: X-Forwarded-For %q, want only the peer", path, got)
		}
		if got := h.Values("X-Forwarded-Host"); len(got) != 1 || got[0] != e.srv.Listener.Addr().String() {
			t.Errorf("%s: X-Forwarded-Host %q, want the Host tokengate received", path, got)
		}
		if got := h.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "http" {
			t.Errorf("%s: X-Forwarded-Proto %q, want http", path, got)
		}
	}

	// Throttling: each attempt claims another client, but all come from one
	// untrusted peer, so they share its per-address budget of 2.
	login := func(i int, user, password string) response {
		hdr := jsonHeader()
		hdr.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i))
		return e.do("POST", "/user/login", hdr, fmt.Sprintf(`{"username":%q,"password":%q}`, user, password))
	}
	for i, user := range []string{"nobody-1", "nobody-2"} {
		if res := login(i+1, user, "wrong"); res.StatusCode != 401 {
			t.Fatalf("failure %d: %d %s", i, res.StatusCode, res.body)
		}
	}
	if res := login(3, "marco", marcoPassword); res.StatusCode != 429 {
		t.Fatalf("third attempt from the same peer under another X-Forwarded-For: %d %s, want 429", res.StatusCode, res.body)
	}
}
