package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"tokengate/authn"
	"tokengate/internal/testkit"
	"tokengate/internal/testsvc"
	"tokengate/revocation"
)

// oidcStack is the handler with OpenID Connect sign-in against a real
// provider (oidc-provider), on a real listener.
type oidcStack struct {
	h     *handler
	srv   *httptest.Server
	idp   *testsvc.OIDCProvider
	store *revocation.MemoryStore
	logs  *testkit.LogBuffer
}

func newOIDCStack(t *testing.T, groups map[string][]string, mutate func(*OIDCOptions)) *oidcStack {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	idp := testsvc.StartOIDCProvider(t, []map[string]any{{
		"client_id": "tg", "client_secret": "tg-secret-0123456789abcdef0123456789",
		"redirect_uris": []string{base + "/tokengate/oidc/callback", testRedirect}, "grant_types": []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"}, "backchannel_logout_uri": base + "/tokengate/oidc/backchannel_logout",
		"backchannel_logout_session_required": true,
	}, {
		"client_id": "other", "client_secret": "other-secret-0123456789abcdef012345",
		"redirect_uris": []string{testRedirect}, "grant_types": []string{"authorization_code"}, "response_types": []string{"code"},
	}}, groups)

	key, err := authn.LoadOrCreateSigningKey(filepath.Join(t.TempDir(), "signing.key"), "EdDSA")
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := authn.NewTokens(key, nil, authn.TokenOptions{Issuer: "tokengate", TTL: time.Hour, Leeway: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st := &oidcStack{idp: idp, store: revocation.NewMemoryStore(nil), logs: &testkit.LogBuffer{}}
	checker, err := revocation.NewChecker(st.store, revocation.CheckerOptions{UserCutoffTTL: tokens.MaxLifetime()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { checker.Close() })
	up := newUpstream(t)
	upURL, _ := url.Parse(up.srv.URL)
	oo := &OIDCOptions{
		Issuer: idp.Issuer, ClientID: "tg", ClientSecret: "tg-secret-0123456789abcdef0123456789",
		RedirectURL: base + "/tokengate/oidc/callback", Key: make([]byte, 32), Records: st.store,
	}
	if mutate != nil {
		mutate(oo)
	}
	routes := defaultRoutes()
	routes.SignIn, routes.SignOut = "/tokengate/sign_in", "/tokengate/sign_out"
	routes.OIDCSignIn, routes.OIDCCallback, routes.BackchannelLogout = "/tokengate/oidc/sign_in", "/tokengate/oidc/callback", "/tokengate/oidc/backchannel_logout"
	h, err := New(Options{
		Upstream: upURL, Routes: routes, Browser: BrowserOptions{InsecureCookie: true}, OIDC: oo,
		Tokens: tokens, Auth: authn.NewAuthenticator(noUsers{}, authn.AuthenticatorOptions{}), Revocation: checker,
		Logger: slog.New(slog.NewJSONHandler(st.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	st.h = h.(*handler)
	st.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: h}}
	st.srv.Start()
	t.Cleanup(st.srv.Close)
	t.Cleanup(func() { _ = st.h.oidcIdentities.Close() })
	return st
}

func (st *oidcStack) signIn(t *testing.T, login string) *http.Client {
	t.Helper()
	c := testsvc.NewBrowserClient()
	if pg := testsvc.SignInAtProvider(t, c, st.srv.URL+"/tokengate/oidc/sign_in?rd=/app", login); pg.Code != 200 || pg.URL.Path != "/app" {
		t.Fatalf("sign-in as %s: %d %s %s", login, pg.Code, pg.URL, pg.Body)
	}
	return c
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// An OIDC user's groups come from the provider and follow it: a group
// change at the provider is seen within the refresh interval (through the
// refresh token, no new sign-in), and a user the provider no longer knows
// loses access. The stored identity holds the refresh token sealed only.
func TestOIDCIdentityFollowsTheProvider(t *testing.T) {
	st := newOIDCStack(t, map[string][]string{"erin": {"ops", "finance"}}, func(o *OIDCOptions) { o.RefreshInterval = time.Second })
	ctx := context.Background()
	c := st.signIn(t, "erin")
	u, err := st.h.oidcIdentities.Identity(ctx, "erin")
	if err != nil || !slices.Equal(u.Groups, []string{"ops", "finance"}) || u.Username != "erin" {
		t.Fatalf("after sign-in: %+v %v", u, err)
	}
	raw, found, _ := st.store.GetRecord(ctx, oidcUserKey("erin"))
	if !found || !strings.Contains(string(raw), `"r":"`) || strings.Contains(string(raw), "erin@") {
		t.Fatalf("stored identity: %s", raw)
	}

	st.idp.ChangeAccount(t, map[string]any{"id": "erin", "groups": []string{"finance"}})
	waitFor(t, 3*time.Second, "the group change reaches tokengate", func() bool {
		u, err := st.h.oidcIdentities.Identity(ctx, "erin")
		return err == nil && slices.Equal(u.Groups, []string{"finance"})
	})
	if pg := testsvc.Fetch(t, c, "GET", st.srv.URL+"/app", nil); pg.Code != 200 {
		t.Fatalf("still a member of the provider: %d", pg.Code)
	}

	st.idp.ChangeAccount(t, map[string]any{"id": "erin", "removed": true})
	waitFor(t, 3*time.Second, "the removal reaches tokengate", func() bool {
		_, err := st.h.oidcIdentities.Identity(ctx, "erin")
		return errors.Is(err, authn.ErrUserNotFound)
	})
	noRedirect := &http.Client{Jar: c.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if pg := testsvc.Fetch(t, noRedirect, "GET", st.srv.URL+"/app", nil); pg.Code != http.StatusFound {
		t.Fatalf("a user the provider removed: %d", pg.Code)
	}
	if !strings.Contains(st.logs.String(), "the provider refused the refresh token") {
		t.Fatalf("no log line saying why:\n%s", st.logs)
	}
}

// allowed_groups is checked again at each refresh: a user taken out of the
// allowed groups at the provider loses access.
func TestOIDCAllowedGroupsOnRefresh(t *testing.T) {
	st := newOIDCStack(t, map[string][]string{"frank": {"staff"}}, func(o *OIDCOptions) {
		o.RefreshInterval = time.Second
		o.AllowedGroups = []string{"staff"}
	})
	// Not in an allowed group: refused at sign-in, with the page.
	c := testsvc.NewBrowserClient()
	pg := testsvc.SignInAtProvider(t, c, st.srv.URL+"/tokengate/oidc/sign_in", "gina")
	if pg.Code != http.StatusForbidden || !strings.Contains(pg.Body, "not allowed to use this application") {
		t.Fatalf("gina (no groups): %d %s", pg.Code, pg.Body)
	}
	st.signIn(t, "frank")
	st.idp.ChangeAccount(t, map[string]any{"id": "frank", "groups": []string{"contractors"}})
	waitFor(t, 3*time.Second, "frank leaves staff", func() bool {
		_, err := st.h.oidcIdentities.Identity(context.Background(), "frank")
		return errors.Is(err, authn.ErrUserNotFound)
	})
	if !strings.Contains(st.logs.String(), fmt.Sprintf("%s: in none of allowed_groups", errOIDCNotAllowed)) {
		t.Fatalf("log:\n%s", st.logs)
	}
}

// noUsers is a password store with nobody in it.
type noUsers struct{}

func (noUsers) LookupUser(context.Context, string) (authn.User, error) {
	return authn.User{}, authn.ErrUserNotFound
}

// While another replica holds the refresh lock, the stored identity is
// served, but not past the max-stale bound: then the answer is
// "unavailable", never a guess. A record the provider ended is a removed
// user; no record at all is an unknown one.
func TestOIDCUsersWhileAnotherReplicaRefreshes(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	store := revocation.NewMemoryStore(func() time.Time { return now })
	u := &oidcUsers{c: &oidcClient{opts: OIDCOptions{Timeout: time.Minute}}, records: store, refresh: 30 * time.Second, maxStale: authn.DefaultMaxStale,
		life: time.Hour, now: func() time.Time { return now }, log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	put := func(id string, rec oidcUserRecord) {
		if err := u.put(ctx, id, rec, now); err != nil {
			t.Fatal(err)
		}
	}
	lockHeld := func(id string, checked time.Time) {
		if ok, err := store.AddRecord(ctx, oidcRefreshLock(id, checked.UnixNano()), []byte{1}, now.Add(time.Minute)); !ok || err != nil {
			t.Fatal("could not take the lock", err)
		}
	}
	recent := now.Add(-time.Minute)
	put("ivy", oidcUserRecord{Username: "ivy", Groups: []string{"ops"}, Refresh: "sealed", Checked: recent.UnixNano()})
	lockHeld("ivy", recent)
	if got, err := u.LookupUserByID(ctx, "ivy"); err != nil || !slices.Equal(got.Groups, []string{"ops"}) {
		t.Fatalf("within the bound: %+v %v", got, err)
	}
	old := now.Add(-(30*time.Second + authn.DefaultMaxStale + time.Second))
	put("jay", oidcUserRecord{Username: "jay", Refresh: "sealed", Checked: old.UnixNano()})
	lockHeld("jay", old)
	if _, err := u.LookupUserByID(ctx, "jay"); !errors.Is(err, authn.ErrUsersUnavailable) {
		t.Fatalf("past the bound: %v", err)
	}
	put("kim", oidcUserRecord{Username: "kim", Checked: recent.UnixNano(), Ended: "the provider refused the refresh token"})
	if _, err := u.LookupUserByID(ctx, "kim"); !errors.Is(err, authn.ErrUserNotFound) {
		t.Fatalf("ended: %v", err)
	}
	if _, err := u.LookupUserByID(ctx, "nobody"); !errors.Is(err, authn.ErrUserNotFound) {
		t.Fatalf("unknown: %v", err)
	}
}

// localIdentities is a user store's Identities with fixed answers.
type localIdentities map[string][]string

func (l localIdentities) Identity(_ context.Context, id string) (authn.User, error) {
	g, ok := l[id]
	if !ok {
		return authn.User{}, authn.ErrUserNotFound
	}
	return authn.User{ID: id, Groups: g}, nil
}

// The identities the handler is given answer an OIDC token's user from the
// provider's identities and any other token's from the user store, never
// mixing the two for an id both know. New installs them in Options.
func TestOIDCAwareIdentities(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	store := revocation.NewMemoryStore(func() time.Time { return now })
	opts := Options{
		Routes:     Routes{SignIn: "/tokengate/sign_in", OIDCSignIn: "/o/s", OIDCCallback: "/o/c"},
		Identities: localIdentities{"lee": {"local-admins"}},
		OIDC: &OIDCOptions{Issuer: "https://idp.example.com", ClientID: "tg", ClientSecret: "s", RedirectURL: "https://app.example.com/o/c",
			Key: make([]byte, 32), Records: store},
	}
	opts = opts.withDefaults()
	opts.Now = func() time.Time { return now }
	p, err := newOIDC(&opts)
	if err != nil {
		t.Fatal(err)
	}
	defer p.identities.Close()
	ctx := context.Background()
	if err := p.users.put(ctx, "lee", oidcUserRecord{Username: "lee", Groups: []string{"idp-readers"}, Checked: now.UnixNano()}, now); err != nil {
		t.Fatal(err)
	}
	ids := opts.Identities
	if u, err := ids.Identity(ctx, "lee"); err != nil || !slices.Equal(u.Groups, []string{"local-admins"}) {
		t.Fatalf("password token: %+v %v", u, err)
	}
	if u, err := ids.Identity(withOIDCToken(ctx), "lee"); err != nil || !slices.Equal(u.Groups, []string{"idp-readers"}) {
		t.Fatalf("OIDC token: %+v %v", u, err)
	}
	if _, err := ids.Identity(withOIDCToken(ctx), "nobody"); !errors.Is(err, authn.ErrUserNotFound) {
		t.Fatalf("OIDC token of an unknown user: %v", err)
	}
	if _, err := ids.Identity(ctx, "nobody"); !errors.Is(err, authn.ErrUserNotFound) {
		t.Fatalf("password token of an unknown user: %v", err)
	}
	// Without a user store's Identities, other tokens' users exist, groupless.
	noLocal := oidcAwareIdentities{oidc: p.identities}
	if u, err := noLocal.Identity(ctx, "anyone"); err != nil || u.ID != "anyone" || len(u.Groups) != 0 {
		t.Fatalf("no local identities: %+v %v", u, err)
	}
}
