package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func validOIDC(c *Config) {
	c.OIDC.Issuer = "https://idp.example.com/realms/main"
	c.OIDC.ClientID = "tokengate"
	c.OIDC.ClientSecretFile = "/etc/tokengate/secret/oidc"
	c.OIDC.RedirectURL = "https://app.example.com/tokengate/oidc/callback"
}

func TestConfigValidateOIDC(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"off: nothing checked", func(c *Config) { c.OIDC.ClientID = ""; c.Routes.OIDCCallback = "bad" }, nil},
		{"valid", validOIDC, nil},
		{"loopback http", func(c *Config) {
			validOIDC(c)
			c.OIDC.Issuer = "http://127.0.0.1:9000"
			c.OIDC.RedirectURL = "http://localhost:8081/tokengate/oidc/callback"
		}, nil},
		{"secret from the environment", func(c *Config) {
			validOIDC(c)
			c.OIDC.ClientSecretFile, c.OIDC.ClientSecret = "", "s3cret"
		}, nil},
		{"missing pieces", func(c *Config) {
			c.OIDC.Issuer = "http://idp.example.com"
			c.OIDC.RedirectURL = "https://app.example.com/callback?x=1"
			c.OIDC.Scopes = []string{"profile", "a b"}
			c.OIDC.IDClaim = "upn"
			c.OIDC.AllowedEmailDomains = []string{"@example.com"}
			c.OIDC.Timeout = 0
		}, []string{
			`oidc.issuer: "http://idp.example.com" must use https (http only to a loopback address)`,
			`oidc.client_id: must not be empty`,
			`oidc.client_secret_file: a client secret is required when oidc.issuer is set; or set TOKENGATE_OIDC_CLIENT_SECRET`,
			`oidc.redirect_url: "https://app.example.com/callback?x=1" must have no user info, query or fragment`,
			`oidc.scopes: must include openid`,
			`oidc.scopes[1]: "a b" is not a scope token`,
			`oidc.id_claim: must be one of sub, email, preferred_username (got "upn")`,
			`oidc.allowed_email_domains[0]: "@example.com" must be a domain (example.com)`,
			`oidc.timeout: must be a positive duration (got 0s)`,
		}},
		{"redirect path is not the callback route", func(c *Config) {
			validOIDC(c)
			c.OIDC.RedirectURL = "https://app.example.com/oauth2/callback"
		}, []string{`oidc.redirect_url: path "/oauth2/callback" must be routes.oidc_callback (/tokengate/oidc/callback)`}},
		{"needs browser sign-in", func(c *Config) {
			validOIDC(c)
			c.Routes.SignIn, c.Routes.SignOut = "", ""
		}, []string{`oidc.issuer: needs routes.sign_in (browser sign-in is off)`}},
		{"routes collide when on", func(c *Config) {
			validOIDC(c)
			c.Routes.BackchannelLogout = "/tokengate/oidc/callback"
		}, []string{`routes.backchannel_logout: /tokengate/oidc/callback is also routes.oidc_callback; routes must differ`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			assertLines(t, c.Validate(), tt.want)
		})
	}
}

// A secret written in the YAML is refused, naming its line; the same
// secret from the environment is fine.
func TestConfigOIDCSecretNotInYAML(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	yaml := "oidc:\n  issuer: https://idp.example.com\n  client_id: tg\n  client_secret: hunter2hunter2\n  redirect_url: https://app.example.com/tokengate/oidc/callback\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "oidc.client_secret: a secret must not be written in the YAML (line 4)") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("the error echoes the secret: %v", err)
	}
	cfg, err = Load(path[:0], []string{"TOKENGATE_OIDC_ISSUER=https://idp.example.com", "TOKENGATE_OIDC_CLIENT_ID=tg",
		"TOKENGATE_OIDC_CLIENT_SECRET=hunter2hunter2", "TOKENGATE_OIDC_REDIRECT_URL=https://app.example.com/tokengate/oidc/callback"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
