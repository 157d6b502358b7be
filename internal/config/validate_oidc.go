package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// oidc checks the oidc section; nothing when oidc.issuer is empty (off).
func (v *validator) oidc(o OIDCConfig, r RoutesConfig) {
	if o.Issuer == "" {
		return
	}
	v.providerURL("oidc.issuer", o.Issuer)
	v.nonEmpty("oidc.client_id", o.ClientID)
	switch origin := v.origin["oidc.client_secret"]; {
	case o.ClientSecret != "" && strings.HasPrefix(origin, "line "):
		v.failHint("oidc.client_secret", "use oidc.client_secret_file or TOKENGATE_OIDC_CLIENT_SECRET",
			"a secret must not be written in the YAML")
	case o.ClientSecret != "" && o.ClientSecretFile != "":
		v.fail("oidc.client_secret_file", "set either it or TOKENGATE_OIDC_CLIENT_SECRET, not both")
	case o.ClientSecret == "" && o.ClientSecretFile == "":
		v.failHint("oidc.client_secret_file", "or set TOKENGATE_OIDC_CLIENT_SECRET",
			"a client secret is required when oidc.issuer is set")
	}
	if r.SignIn == "" {
		v.fail("oidc.issuer", "needs routes.sign_in (browser sign-in is off)")
	}
	for _, k := range []struct{ key, path string }{
		{"routes.oidc_sign_in", r.OIDCSignIn},
		{"routes.oidc_callback", r.OIDCCallback},
	} {
		if k.path == "" {
			v.fail(k.key, "must not be empty when oidc.issuer is set")
		}
	}
	if u, ok := v.providerURL("oidc.redirect_url", o.RedirectURL); ok && r.OIDCCallback != "" && u.Path != r.OIDCCallback {
		v.fail("oidc.redirect_url", "path %q must be routes.oidc_callback (%s)", u.Path, r.OIDCCallback)
	}
	if o.PostLogoutRedirectURL != "" {
		v.providerURL("oidc.post_logout_redirect_url", o.PostLogoutRedirectURL)
	}
	if !slices.Contains(o.Scopes, "openid") {
		v.fail("oidc.scopes", "must include openid")
	}
	for i, s := range o.Scopes {
		if s == "" || strings.ContainsAny(s, " \\\"") {
			v.fail(fmt.Sprintf("oidc.scopes[%d]", i), "%q is not a scope token", s)
		}
	}
	v.oneOf("oidc.id_claim", o.IDClaim, "sub", "email", "preferred_username")
	v.nonEmpty("oidc.username_claim", o.UsernameClaim)
	v.nonEmpty("oidc.groups_claim", o.GroupsClaim)
	v.nonEmpty("oidc.name", o.Name)
	for i, d := range o.AllowedEmailDomains {
		if d == "" || !validHost(d) || strings.ContainsAny(d, ":[]@") {
			v.fail(fmt.Sprintf("oidc.allowed_email_domains[%d]", i), "%q must be a domain (example.com)", d)
		}
	}
	for i, g := range o.AllowedGroups {
		v.nonEmpty(fmt.Sprintf("oidc.allowed_groups[%d]", i), g)
	}
	if v.positive("oidc.timeout", o.Timeout) {
		v.atMost("oidc.timeout", o.Timeout, maxProviderTimeout)
	}
}

const maxProviderTimeout = 2 * time.Minute // a browser is waiting

// providerURL checks an absolute URL at the provider or back to us: https,
// or http to a loopback host (development, tests); no fragment, no user info.
func (v *validator) providerURL(key, raw string) (*url.URL, bool) {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		v.fail(key, "must not be empty")
	case err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "":
		v.fail(key, "%q must be an absolute URL (https://host/path)", raw)
	case u.Scheme != "https" && !(u.Scheme == "http" && loopbackHost(u.Hostname())):
		v.fail(key, "%q must use https (http only to a loopback address)", raw)
	case u.User != nil || u.Fragment != "" || u.RawQuery != "":
		v.fail(key, "%q must have no user info, query or fragment", raw)
	default:
		return u, true
	}
	return nil, false
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
