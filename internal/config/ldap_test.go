package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// ldapConfig is a valid config for the ldap backend (ldaps, password file).
func ldapConfig() Config {
	c := Default()
	c.Users.Backend = "ldap"
	c.Users.LDAP.URL = "ldaps://ldap.example.com"
	c.Users.LDAP.BindDN = "cn=tokengate,ou=services,dc=example,dc=com"
	c.Users.LDAP.BindPasswordFile = "/etc/tokengate/secret/ldap-password"
	c.Users.LDAP.BaseDN = "ou=people,dc=example,dc=com"
	return c
}

func TestConfigValidateLDAP(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*LDAPConfig)
		want   []string
	}{
		{"valid", func(*LDAPConfig) {}, nil},
		{"StartTLS", func(l *LDAPConfig) {
			l.URL, l.StartTLS, l.CAFile, l.ServerName = "ldap://ldap.example.com:389", true, "ca.pem", "ldap.example.com"
		}, nil},
		{"plain to loopback", func(l *LDAPConfig) { l.URL = "ldap://127.0.0.1:3389" }, nil},
		{"plain to localhost", func(l *LDAPConfig) { l.URL = "ldap://localhost" }, nil},
		{"plain, insecure", func(l *LDAPConfig) { l.URL, l.Insecure = "ldap://ldap.example.com", true }, nil},
		{"password from the environment", func(l *LDAPConfig) { l.BindPasswordFile, l.BindPassword = "", "s3cret" }, nil},
		{"AD", func(l *LDAPConfig) {
			l.Preset, l.IDAttribute, l.NestedGroups, l.GroupsBaseDN = "active_directory", "objectGUID", true, "ou=groups,dc=example,dc=com"
		}, nil},
		{"group search", func(l *LDAPConfig) {
			l.GroupFilter, l.UserFilter = "(&(objectClass=groupOfNames)(member={dn}))", "(&(objectClass=person)(mail={username}))"
		}, nil},
		{"empty", func(l *LDAPConfig) { *l = defaultLDAP() }, []string{
			`users.ldap.url: must not be empty`,
			`users.ldap.bind_dn: must not be empty`,
			`users.ldap.bind_password_file: must be set with backend ldap (the service account's password); or set TOKENGATE_USERS_LDAP_BIND_PASSWORD`,
			`users.ldap.base_dn: must not be empty`,
		}},
		{"plain to another host", func(l *LDAPConfig) { l.URL = "ldap://ldap.example.com" }, []string{
			`users.ldap.url: plain ldap:// to ldap.example.com would send passwords in clear text; use ldaps://, or start_tls: true, or (not recommended) users.ldap.insecure: true`,
		}},
		{"bad URLs", func(l *LDAPConfig) { l.URL = "https://ldap.example.com" }, []string{`users.ldap.url: scheme must be ldap or ldaps (got "https://ldap.example.com")`}},
		{"URL with a DN", func(l *LDAPConfig) { l.URL = "ldaps://ldap.example.com/dc=example,dc=com" }, []string{
			`users.ldap.url: must be scheme://host[:port] only; the base DN goes in users.ldap.base_dn (got "ldaps://ldap.example.com/dc=example,dc=com")`,
		}},
		{"URL with credentials", func(l *LDAPConfig) { l.URL = "ldaps://u:p@ldap.example.com" }, []string{
			`users.ldap.url: must not carry credentials (the password comes from bind_password_file)`,
		}},
		{"StartTLS on ldaps", func(l *LDAPConfig) { l.StartTLS = true }, []string{
			`users.ldap.start_tls: cannot be used with an ldaps:// URL; use ldap://host:389 with start_tls, or ldaps:// without it`,
		}},
		{"TLS settings without TLS", func(l *LDAPConfig) { l.URL, l.CAFile = "ldap://127.0.0.1", "ca.pem" }, []string{
			`users.ldap.ca_file: has no effect without TLS (ldaps:// or start_tls: true)`,
		}},
		{"certificate without key", func(l *LDAPConfig) { l.ClientCertFile = "c.pem" }, []string{
			`users.ldap.client_key_file: client_cert_file and client_key_file go together; set both or neither`,
		}},
		{"both password sources", func(l *LDAPConfig) { l.BindPassword = "x" }, []string{
			`users.ldap.bind_password_file: and TOKENGATE_USERS_LDAP_BIND_PASSWORD are both set; keep one`,
		}},
		{"filters", func(l *LDAPConfig) { l.UserFilter, l.GroupFilter = "(uid=alice)", "(member={dn}" }, []string{
			`users.ldap.user_filter: must contain {username} (the login name, escaped)`,
			`users.ldap.group_filter: "(member={dn}" is not an LDAP filter: want one parenthesised expression, e.g. (uid={username})`,
		}},
		{"unbalanced user filter", func(l *LDAPConfig) { l.UserFilter = "uid={username})(" }, []string{
			`users.ldap.user_filter: "uid={username})(" is not an LDAP filter: want one parenthesised expression, e.g. (uid={username})`,
		}},
		{"nested with a group filter", func(l *LDAPConfig) { l.NestedGroups, l.GroupFilter = true, "(member={dn})" }, []string{
			`users.ldap.nested_groups: uses its own group filter (member:1.2.840.113556.1.4.1941:={dn}); group_filter is set too; leave group_filter empty, or write the in-chain rule into it yourself`,
		}},
		{"attributes and limits", func(l *LDAPConfig) {
			l.Preset, l.IDAttribute, l.GroupNameAttribute, l.Timeout, l.DialTimeout, l.MaxConns = "novell", "uid)(x", "", 0, 2*time.Minute, 0
		}, []string{
			`users.ldap.preset: must be one of openldap, active_directory (got "novell")`,
			`users.ldap.id_attribute: "uid)(x" is not an attribute name (letters, digits, -)`,
			`users.ldap.group_name_attribute: must not be empty`,
			`users.ldap.dial_timeout: must be at most 1m0s (got 2m0s)`,
			`users.ldap.timeout: must be a positive duration (got 0s)`,
			`users.ldap.max_conns: must be between 1 and 256 (got 0)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ldapConfig()
			tt.mutate(&c.Users.LDAP)
			assertLines(t, c.Validate(), tt.want)
		})
	}
}

func TestConfigLDAPReadOnly(t *testing.T) {
	c := ldapConfig()
	c.Users.Registration = "open"
	assertLines(t, c.Validate(), []string{
		`users.registration: the LDAP directory is read-only: users are created and change passwords in the directory; set it to "off"`,
	})
}

// The bind password never comes from the YAML (a ConfigMap); the
// environment may set it.
func TestConfigLDAPBindPasswordSource(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	yaml := "users:\n  backend: ldap\n  ldap:\n    url: ldaps://ldap.example.com\n    bind_dn: cn=x\n    base_dn: dc=x\n    bind_password: hunter2\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertLines(t, cfg.Validate(), []string{
		`users.ldap.bind_password: must not be written in the configuration file (line 7); use users.ldap.bind_password_file or TOKENGATE_USERS_LDAP_BIND_PASSWORD`,
	})
	yaml = "users:\n  backend: ldap\n  ldap:\n    url: ldaps://ldap.example.com\n    bind_dn: cn=x\n    base_dn: dc=x\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = Load(path, []string{"TOKENGATE_USERS_LDAP_BIND_PASSWORD=hunter2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil || cfg.Users.LDAP.BindPassword != "hunter2" {
		t.Fatalf("password from the environment: %v (%q)", err, cfg.Users.LDAP.BindPassword)
	}
}

func TestConfigLDAPWarnings(t *testing.T) {
	for _, tt := range []struct {
		url      string
		insecure bool
		want     []string
	}{
		{"ldap://ldap.example.com", true, []string{"users.ldap.insecure: passwords go to ldap.example.com in clear text (plain ldap:// without start_tls); use ldaps:// or start_tls: true"}},
		{"ldap://127.0.0.1", true, nil},
		{"ldaps://ldap.example.com", true, nil},
		{"ldap://127.0.0.1", false, nil},
	} {
		c := ldapConfig()
		c.Users.LDAP.URL, c.Users.LDAP.Insecure = tt.url, tt.insecure
		if got := c.LDAPWarnings(); !slices.Equal(got, tt.want) {
			t.Errorf("%s insecure=%v: %q, want %q", tt.url, tt.insecure, got, tt.want)
		}
	}
}
