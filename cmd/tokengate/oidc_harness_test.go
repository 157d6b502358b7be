package main

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"testing"

	"tokengate/internal/testsvc"
)

// The OpenID Connect tests run a real provider (testsvc.StartOIDCProvider:
// oidc-provider from npm); these are their shortcuts.

type page = testsvc.Page

var (
	fetch             = testsvc.Fetch
	signInAtProvider  = testsvc.SignInAtProvider
	logoutAtProvider  = testsvc.LogoutAtProvider
	startIDP          = testsvc.StartOIDCProvider
	confirmIDPLogout  = testsvc.ConfirmProviderLogout
	newBrowserClientC = testsvc.NewBrowserClient
)

func newBrowserClient(t *testing.T, stopAt ...string) *http.Client {
	t.Helper()
	return newBrowserClientC(stopAt...)
}

// reservePort returns a free loopback port for a tokengate instance whose
// redirect URL must be registered at the provider before it starts.
func reservePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

const (
	oidcClientID     = "tokengate"
	oidcClientSecret = "tokengate-test-client-secret-0123456789"
	oidcCallback     = "/tokengate/oidc/callback"
	oidcStart        = "/tokengate/oidc/sign_in"
)

// oidcClient is the provider's registration of tokengate at these ports;
// its back-channel logout URL is backchannel, or the first port's route.
func oidcClient(ports []int, backchannel string) map[string]any {
	var redirects, postLogout []string
	for _, p := range ports {
		redirects = append(redirects, fmt.Sprintf("http://127.0.0.1:%d%s", p, oidcCallback))
		postLogout = append(postLogout, fmt.Sprintf("http://127.0.0.1:%d/tokengate/sign_in", p))
	}
	c := map[string]any{
		"client_id":                 oidcClientID,
		"client_secret":             oidcClientSecret,
		"redirect_uris":             redirects,
		"post_logout_redirect_uris": postLogout,
		"grant_types":               []string{"authorization_code", "refresh_token"},
		"response_types":            []string{"code"},
	}
	if backchannel == "" {
		backchannel = fmt.Sprintf("http://127.0.0.1:%d/tokengate/oidc/backchannel_logout", ports[0])
	}
	// sid in the ID token and in the logout token.
	c["backchannel_logout_uri"] = backchannel
	c["backchannel_logout_session_required"] = true
	return c
}

// oidcEnv configures an instance on port for the provider.
func oidcEnv(issuer string, port int) []string {
	return []string{
		fmt.Sprintf("TOKENGATE_LISTEN=127.0.0.1:%d", port),
		"TOKENGATE_BROWSER_COOKIE_SECURE=false",
		"TOKENGATE_OIDC_ISSUER=" + issuer,
		"TOKENGATE_OIDC_CLIENT_ID=" + oidcClientID,
		"TOKENGATE_OIDC_CLIENT_SECRET=" + oidcClientSecret,
		fmt.Sprintf("TOKENGATE_OIDC_REDIRECT_URL=http://127.0.0.1:%d%s", port, oidcCallback),
		"TOKENGATE_OIDC_NAME=Test IdP",
	}
}

// cookieNamed is the jar's cookie name for u ("" when none).
func cookieNamed(c *http.Client, u, name string) string {
	pu, _ := url.Parse(u)
	for _, ck := range c.Jar.Cookies(pu) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}
