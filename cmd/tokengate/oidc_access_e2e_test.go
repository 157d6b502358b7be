package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The provider's groups claim meets an access rule: a member of ops reaches
// /admin (and the app gets her groups), a non-member gets 403; when the
// provider takes her out of ops, she loses /admin within
// users.refresh_interval, without signing in again, and keeps the rest.
func TestOIDCGroupsMeetAccessRules(t *testing.T) {
	port := reservePort(t)
	p := startIDP(t, []map[string]any{oidcClient([]int{port}, "")}, map[string][]string{"alice": {"ops", "staff"}, "bob": {"staff"}})
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	conf := baseConfig(up.URL) + `access:
  rules:
    - name: admin
      paths: [/admin]
      groups: [ops]
`
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	in := start(t, dir, append(oidcEnv(p.Issuer, port), "TOKENGATE_USERS_REFRESH_INTERVAL=2s")...)

	alice, bob := newBrowserClient(t), newBrowserClient(t)
	if pg := signInAtProvider(t, alice, in.Public+oidcStart+"?rd=/admin", "alice"); pg.Code != 200 || pg.URL.Path != "/admin" {
		t.Fatalf("alice on /admin: %d %s %s", pg.Code, pg.URL, pg.Body)
	}
	if h, _ := up.headersSeen("/admin"); !strings.Contains(h.Get("X-Auth-Groups"), "ops") {
		t.Fatalf("the app got groups %q", h.Get("X-Auth-Groups"))
	}
	if pg := signInAtProvider(t, bob, in.Public+oidcStart+"?rd=/admin", "bob"); pg.Code != http.StatusForbidden {
		t.Fatalf("bob on /admin: %d %s", pg.Code, pg.URL)
	}
	if pg := fetch(t, bob, "GET", in.Public+"/app", nil); pg.Code != 200 {
		t.Fatalf("bob on /app: %d", pg.Code)
	}
	p.ChangeAccount(t, map[string]any{"id": "alice", "groups": []string{"staff"}})
	changed := time.Now()
	eventually(t, 8*time.Second, "alice loses /admin", func() bool {
		return fetch(t, alice, "GET", in.Public+"/admin", nil).Code == http.StatusForbidden
	})
	t.Logf("alice lost /admin %s after the change", time.Since(changed).Round(10*time.Millisecond))
	if pg := fetch(t, alice, "GET", in.Public+"/app", nil); pg.Code != 200 {
		t.Fatalf("alice on /app after the change: %d", pg.Code)
	}
}
