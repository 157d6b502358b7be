package proxy

import (
	"strings"
	"testing"
	"time"
)

// A sealed value opens only with its key, for its purpose, before its
// expiry, and untouched; its payload is not readable in the cookie.
func TestSeal(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	s, err := newSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	v, err := seal(s, "oidc state", oidcState{State: "the-state", Nonce: "n", Verifier: "v"}, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(v, "the-state") {
		t.Fatal("the payload is readable")
	}
	if got, err := unseal[oidcState](s, "oidc state", v, now); err != nil || got.State != "the-state" {
		t.Fatalf("open: %+v %v", got, err)
	}
	other, _ := newSealer([]byte(strings.Repeat("x", 32)))
	flipped := []byte(v)
	flipped[len(flipped)/2] ^= 1
	for name, try := range map[string]func() error{
		"other purpose": func() error { _, err := unseal[oidcState](s, "oidc id token", v, now); return err },
		"other key":     func() error { _, err := unseal[oidcState](other, "oidc state", v, now); return err },
		"expired":       func() error { _, err := unseal[oidcState](s, "oidc state", v, now.Add(61*time.Second)); return err },
		"tampered":      func() error { _, err := unseal[oidcState](s, "oidc state", string(flipped), now); return err },
		"truncated":     func() error { _, err := unseal[oidcState](s, "oidc state", v[:10], now); return err },
		"garbage":       func() error { _, err := unseal[oidcState](s, "oidc state", "%%%", now); return err },
	} {
		if err := try(); err != errSealed {
			t.Errorf("%s: %v, want errSealed", name, err)
		}
	}
	if _, err := newSealer(key[:16]); err == nil {
		t.Error("a 16-byte key was taken")
	}
}
