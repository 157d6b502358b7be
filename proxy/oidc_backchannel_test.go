package proxy

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"tokengate/internal/testsvc"
)

// testRedirect is a redirect URI registered for the tests' own code flows
// (nothing listens there: the client stops at the redirect).
const testRedirect = "http://127.0.0.1:9/cb"

// idTokenFor runs a code flow at the provider as clientID (as login) from
// the test itself and returns the ID token: a real token signed by the
// provider's keys, which is not a logout token.
func idTokenFor(t *testing.T, st *oidcStack, clientID, secret, login string) string {
	t.Helper()
	p, err := oidc.NewProvider(context.Background(), st.idp.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := oauth2.Config{ClientID: clientID, ClientSecret: secret, Endpoint: p.Endpoint(), RedirectURL: testRedirect, Scopes: []string{"openid"}}
	verifier := oauth2.GenerateVerifier()
	c := testsvc.NewBrowserClient("/cb")
	pg := testsvc.SignInAtProvider(t, c, cfg.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-0123456789")), login)
	loc, err := url.Parse(pg.Location)
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("no code: %d %s %s", pg.Code, pg.Location, pg.Body)
	}
	tok, err := cfg.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("no id_token")
	}
	return raw
}

// The back-channel route takes logout tokens only: a genuine ID token of
// the same provider (no events claim, a nonce), one issued to another
// client (audience), a forged or malformed one, and a wrong method or
// content type are refused, and none of them ends the session.
func TestOIDCBackchannelRefusesNonLogoutTokens(t *testing.T) {
	st := newOIDCStack(t, nil, nil)
	c := st.signIn(t, "hank")
	post := func(form url.Values, contentType string) (int, string) {
		resp, err := http.Post(st.srv.URL+"/tokengate/oidc/backchannel_logout", contentType, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, string(b)
	}
	ownID := idTokenFor(t, st, "tg", "tg-secret-0123456789abcdef0123456789", "hank")
	otherID := idTokenFor(t, st, "other", "other-secret-0123456789abcdef012345", "hank")
	parts := strings.Split(ownID, ".")
	forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	for name, token := range map[string]string{
		"own ID token":           ownID,
		"another client's token": otherID,
		"forged signature":       forged,
		"not a JWT":              "not-a-jwt",
		"empty":                  "",
	} {
		code, body := post(url.Values{"logout_token": {token}}, "application/x-www-form-urlencoded")
		if code != http.StatusBadRequest || !strings.Contains(body, `"invalid_request"`) || strings.Contains(body, "eyJ") {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
	if code, _ := post(url.Values{"logout_token": {ownID}}, "application/json"); code != http.StatusBadRequest {
		t.Errorf("JSON body: %d", code)
	}
	resp, err := http.Get(st.srv.URL + "/tokengate/oidc/backchannel_logout")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if pg := testsvc.Fetch(t, c, "GET", st.srv.URL+"/app", nil); pg.Code != 200 || pg.URL.Path != "/app" {
		t.Fatalf("the session ended after refused logout tokens: %d %s", pg.Code, pg.URL)
	}
	if !strings.Contains(st.logs.String(), "no back-channel logout event (an ID token sent here?)") {
		t.Fatalf("log:\n%s", st.logs)
	}
}
