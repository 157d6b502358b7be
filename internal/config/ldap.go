package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// LDAPConfig is users.ldap: the directory for users.backend ldap. Its
// service account's password comes from bind_password_file or from
// TOKENGATE_USERS_LDAP_BIND_PASSWORD, never from the YAML.
type LDAPConfig struct {
	URL               string `yaml:"url"`                // ldaps://host:636, or ldap://host:389 (with start_tls, or insecure)
	StartTLS          bool   `yaml:"start_tls"`          // upgrade ldap:// with StartTLS; false
	CAFile            string `yaml:"ca_file"`            // PEM CA for the directory's certificate; "" = system roots
	ServerName        string `yaml:"server_name"`        // name checked in the certificate; "" = the URL's host
	ClientCertFile    string `yaml:"client_cert_file"`   // PEM client certificate (with client_key_file); ""
	ClientKeyFile     string `yaml:"client_key_file"`    // PEM key of client_cert_file; ""
	Insecure          bool   `yaml:"insecure"`           // allow plain ldap:// to a non-loopback host; false
	BindDN            string `yaml:"bind_dn"`            // the service account that searches
	BindPasswordFile  string `yaml:"bind_password_file"` // file holding its password
	BindPassword      string `yaml:"bind_password"`      // only from TOKENGATE_USERS_LDAP_BIND_PASSWORD
	BaseDN            string `yaml:"base_dn"`            // where users are searched (subtree)
	Preset            string `yaml:"preset"`             // openldap | active_directory; openldap
	UserFilter        string `yaml:"user_filter"`        // "" = the preset's; must contain {username}
	UsernameAttribute string `yaml:"username_attribute"` // the login name; "" = the preset's (uid, sAMAccountName)
	IDAttribute       string `yaml:"id_attribute"`       // the user id; "" = username_attribute; entryUUID, objectGUID
	GroupsBaseDN      string `yaml:"groups_base_dn"`     // where groups are; "" = base_dn
	GroupFilter       string `yaml:"group_filter"`       // "" = memberOf; else e.g. (member={dn})
	// GroupNameAttribute names a group for access rules; cn.
	GroupNameAttribute string        `yaml:"group_name_attribute"`
	NestedGroups       bool          `yaml:"nested_groups"` // AD: groups through groups (in-chain rule); false
	DialTimeout        time.Duration `yaml:"dial_timeout"`  // connect, TLS and StartTLS; 5s
	Timeout            time.Duration `yaml:"timeout"`       // each bind and search; 5s
	MaxConns           int           `yaml:"max_conns"`     // pooled connections; 8
}

// defaultLDAP is users.ldap's defaults.
func defaultLDAP() LDAPConfig {
	return LDAPConfig{
		Preset:             "openldap",
		GroupNameAttribute: "cn",
		DialTimeout:        5 * time.Second,
		Timeout:            5 * time.Second,
		MaxConns:           8,
	}
}

const (
	ldapBindPasswordEnv = envPrefix + "USERS_LDAP_BIND_PASSWORD"
	maxLDAPTimeout      = time.Minute
	maxLDAPConns        = 256
)

// ldapSecretInFile refuses a bind password written in the YAML (a
// ConfigMap is no place for it), whatever the backend.
func (v *validator) ldapSecretInFile(l LDAPConfig) {
	if l.BindPassword != "" && strings.HasPrefix(v.origin["users.ldap.bind_password"], "line ") {
		v.failHint("users.ldap.bind_password", "use users.ldap.bind_password_file or "+ldapBindPasswordEnv,
			"must not be written in the configuration file")
	}
}

func (v *validator) ldap(l LDAPConfig, registration string) {
	const p = "users.ldap."
	u, ok := v.ldapURL(l.URL)
	tlsOn := ok && (u.Scheme == "ldaps" || l.StartTLS)
	if ok && u.Scheme == "ldaps" && l.StartTLS {
		v.failHint(p+"start_tls", "use ldap://host:389 with start_tls, or ldaps:// without it", "cannot be used with an ldaps:// URL")
	}
	if ok && !tlsOn && !loopbackHost(u.Hostname()) && !l.Insecure {
		v.failHint(p+"url", "use ldaps://, or start_tls: true, or (not recommended) users.ldap.insecure: true",
			"plain ldap:// to %s would send passwords in clear text", u.Hostname())
	}
	if ok && !tlsOn {
		for _, kv := range [][2]string{{"ca_file", l.CAFile}, {"server_name", l.ServerName}, {"client_cert_file", l.ClientCertFile}} {
			if kv[1] != "" {
				v.fail(p+kv[0], "has no effect without TLS (ldaps:// or start_tls: true)")
			}
		}
	}
	if (l.ClientCertFile == "") != (l.ClientKeyFile == "") {
		v.fail(p+"client_key_file", "client_cert_file and client_key_file go together; set both or neither")
	}
	if l.ServerName != "" && !validHost(l.ServerName) {
		v.fail(p+"server_name", "%q is not a host name", l.ServerName)
	}
	v.nonEmpty(p+"bind_dn", l.BindDN)
	switch {
	case l.BindPasswordFile != "" && l.BindPassword != "":
		v.fail(p+"bind_password_file", "and %s are both set; keep one", ldapBindPasswordEnv)
	case l.BindPasswordFile == "" && l.BindPassword == "":
		v.failHint(p+"bind_password_file", "or set "+ldapBindPasswordEnv, "must be set with backend ldap (the service account's password)")
	}
	v.nonEmpty(p+"base_dn", l.BaseDN)
	v.oneOf(p+"preset", l.Preset, "openldap", "active_directory")
	if l.UserFilter != "" {
		if v.ldapFilter(p+"user_filter", l.UserFilter) && !strings.Contains(l.UserFilter, "{username}") {
			v.fail(p+"user_filter", "must contain {username} (the login name, escaped)")
		}
	}
	if l.GroupFilter != "" {
		v.ldapFilter(p+"group_filter", l.GroupFilter)
		if l.NestedGroups {
			v.failHint(p+"nested_groups", "leave group_filter empty, or write the in-chain rule into it yourself",
				"uses its own group filter (member:1.2.840.113556.1.4.1941:={dn}); group_filter is set too")
		}
	}
	for _, kv := range [][2]string{{"username_attribute", l.UsernameAttribute}, {"id_attribute", l.IDAttribute}, {"group_name_attribute", l.GroupNameAttribute}} {
		if kv[1] != "" && !ldapAttributeName(kv[1]) {
			v.fail(p+kv[0], "%q is not an attribute name (letters, digits, -)", kv[1])
		}
	}
	v.nonEmpty(p+"group_name_attribute", l.GroupNameAttribute)
	if v.positive(p+"dial_timeout", l.DialTimeout) {
		v.atMost(p+"dial_timeout", l.DialTimeout, maxLDAPTimeout)
	}
	if v.positive(p+"timeout", l.Timeout) {
		v.atMost(p+"timeout", l.Timeout, maxLDAPTimeout)
	}
	v.inRange(p+"max_conns", int64(l.MaxConns), 1, maxLDAPConns)
	if registration != "off" {
		v.failHint("users.registration", `set it to "off"`, "the LDAP directory is read-only: users are created and change passwords in the directory")
	}
}

// ldapURL checks users.ldap.url; ok when it can be used.
func (v *validator) ldapURL(raw string) (*url.URL, bool) {
	const key = "users.ldap.url"
	if !v.nonEmpty(key, raw) {
		return nil, false
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		v.fail(key, "invalid URL")
	case u.Scheme != "ldap" && u.Scheme != "ldaps":
		v.fail(key, "scheme must be ldap or ldaps (got %q)", raw)
	case u.User != nil:
		v.fail(key, "must not carry credentials (the password comes from bind_password_file)")
	case u.Hostname() == "" || !validHost(u.Hostname()):
		v.fail(key, "must name a host, e.g. ldaps://ldap.example.com:636 (got %q)", raw)
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		v.fail(key, "must be scheme://host[:port] only; the base DN goes in users.ldap.base_dn (got %q)", raw)
	default:
		return u, true
	}
	return nil, false
}

// ldapFilter checks the shape of an RFC 4515 filter: parenthesised,
// balanced. The directory client parses it fully when the store opens.
func (v *validator) ldapFilter(key, f string) bool {
	depth, ok := 0, strings.HasPrefix(f, "(") && strings.HasSuffix(f, ")")
	for i := 0; i < len(f) && ok; i++ {
		switch f[i] {
		case '(':
			depth++
		case ')':
			depth--
			ok = depth >= 0
		}
	}
	if !ok || depth != 0 {
		v.fail(key, "%q is not an LDAP filter: want one parenthesised expression, e.g. (uid={username})", shorten(f))
		return false
	}
	return true
}

func ldapAttributeName(s string) bool {
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '-')) {
			return false
		}
	}
	return s != ""
}

// LDAPWarnings are what check-config and serve warn about in users.ldap
// without refusing it: plain ldap:// to another host, allowed by insecure.
func (c Config) LDAPWarnings() []string {
	l := c.Users.LDAP
	if c.Users.Backend != "ldap" || !l.Insecure || l.StartTLS {
		return nil
	}
	u, err := url.Parse(l.URL)
	if err != nil || u.Scheme != "ldap" || loopbackHost(u.Hostname()) {
		return nil
	}
	return []string{fmt.Sprintf("users.ldap.insecure: passwords go to %s in clear text (plain ldap:// without start_tls); use ldaps:// or start_tls: true", u.Hostname())}
}
