package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"tokengate/authn"
	"tokengate/internal/config"
)

// ldapOptions turns users.ldap into the store's options, reading the files
// it names (CA, client certificate, bind password); each error names its key.
func ldapOptions(cfg config.Config, reg prometheus.Registerer, log *slog.Logger) (authn.LDAPUsersOptions, error) {
	l := cfg.Users.LDAP
	var errs []error
	password := l.BindPassword // from TOKENGATE_USERS_LDAP_BIND_PASSWORD (validation refuses it in the file)
	if l.BindPasswordFile != "" {
		b, err := readSecretFile(cfg.Resolve(l.BindPasswordFile), 1)
		if err != nil {
			errs = append(errs, fmt.Errorf("users.ldap.bind_password_file: %w", err))
		}
		password = string(b)
	}
	var tc *tls.Config
	if l.CAFile != "" || l.ServerName != "" || l.ClientCertFile != "" {
		tc = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: l.ServerName}
	}
	if l.CAFile != "" {
		pem, err := os.ReadFile(cfg.Resolve(l.CAFile))
		if err == nil {
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				err = fmt.Errorf("%s: no PEM certificate in it", cfg.Resolve(l.CAFile))
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("users.ldap.ca_file: %w", err))
		}
	}
	if l.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Resolve(l.ClientCertFile), cfg.Resolve(l.ClientKeyFile))
		if err != nil {
			errs = append(errs, fmt.Errorf("users.ldap.client_cert_file: %w", err))
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if len(errs) > 0 {
		return authn.LDAPUsersOptions{}, errors.Join(errs...)
	}
	return authn.LDAPUsersOptions{
		URL: l.URL, StartTLS: l.StartTLS, TLS: tc,
		BindDN: l.BindDN, BindPassword: password, BaseDN: l.BaseDN,
		Preset: l.Preset, UserFilter: l.UserFilter, UsernameAttribute: l.UsernameAttribute, IDAttribute: l.IDAttribute,
		GroupsBaseDN: l.GroupsBaseDN, GroupFilter: l.GroupFilter, GroupNameAttribute: l.GroupNameAttribute, NestedGroups: l.NestedGroups,
		DialTimeout: l.DialTimeout, Timeout: l.Timeout, MaxConns: l.MaxConns,
		Registerer: reg, Logger: log,
	}, nil
}

// openLDAPUsers builds the directory store. It does not connect: a
// directory outage at start leaves logins answering 503 until it is back
// (and /readyz is local), rather than keeping every replica down.
func openLDAPUsers(cfg config.Config, reg prometheus.Registerer, log *slog.Logger) (*authn.LDAPUsers, error) {
	opts, err := ldapOptions(cfg, reg, log)
	if err != nil {
		return nil, err
	}
	lu, err := authn.NewLDAPUsers(opts)
	if err != nil {
		return nil, fmt.Errorf("users.ldap: %w", err)
	}
	return lu, nil
}
