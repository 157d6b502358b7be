package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
	"tokengate/internal/config"

	"tokengate/authn"
)

// cmdCheckConfig validates the config and loads the files it names (and, for
// the postgres users backend, checks the table), unless --config-only.
func cmdCheckConfig(args []string, e env) int {
	fset := newFlagSet("check-config", e)
	configPath := fset.String("config", "", "config file (YAML)")
	configOnly := fset.Bool("config-only", false, "check the configuration alone: open none of the files it names and no database (for a config written for another machine, e.g. a pod)")
	probe := fset.Bool("probe", false, "also contact what the config names: bind to the LDAP directory as the service account (users.backend ldap), fetch the OpenID Connect provider's discovery document (oidc.issuer)")
	if code, ok := parseFlags(fset, args, e); !ok {
		return code
	}
	cfg, ok := loadConfig(*configPath, e)
	if !ok {
		return exitConfig
	}
	if !*configOnly {
		errs := checkFiles(cfg)
		if len(errs) == 0 {
			errs = checkServices(cfg)
		}
		if len(errs) == 0 && *probe {
			errs = probeDirectory(cfg)
		}
		if len(errs) > 0 {
			reportProblems(e, *configPath, errs)
			return exitConfig
		}
	}
	for _, w := range cfg.LDAPWarnings() {
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	if *probe {
		found, err := probeOIDC(cfg)
		if err != nil {
			reportProblems(e, *configPath, []error{err})
			return exitConfig
		}
		if found != "" {
			fmt.Fprintln(e.stdout, found)
		}
	}
	what := "configuration OK"
	if *configOnly {
		what = "configuration OK (files and databases not checked)"
	}
	fmt.Fprintf(e.stdout, "%s%s\n", what, inFile(*configPath))
	// Rules that load but are likely mistakes: warned, not refused.
	warnCfg := cfg
	if *configOnly {
		warnCfg.Users.Backend = "" // the users file is not read
	}
	for _, w := range accessWarnings(warnCfg) {
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	return exitOK
}

// reportProblems prints what checkFiles or checkServices found, one per line.
func reportProblems(e env, path string, errs []error) {
	fmt.Fprintf(e.stderr, "tokengate: invalid configuration%s:\n", inFile(path))
	for _, err := range errs {
		fmt.Fprintf(e.stderr, "  %s\n", err)
	}
}

// checkServices checks what serve would refuse at start in the PostgreSQL
// users store: a table that is missing (with migrate off) or a legacy query
// that does not run. With migrate on the table is not checked: serve
// creates it, and check-config changes nothing.
func checkServices(cfg config.Config) []error {
	u := cfg.Users
	if u.Backend != "postgres" || (u.Migrate && u.Query == "") {
		return nil
	}
	password, err := optionalSecret(cfg.Resolve(u.PostgresPasswordFile), u.PostgresPasswordFile)
	if err != nil {
		return []error{fmt.Errorf("users.postgres_password_file: %w", err)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pu, err := authn.OpenPostgresUsers(ctx, authn.PostgresUsersOptions{
		URL: u.PostgresURL, Password: password, Table: u.Table, Query: u.Query, IDQuery: u.IDQuery,
	})
	if err != nil {
		return []error{postgresUsersError(err)}
	}
	defer pu.Close()
	if len(u.DefaultGroups) > 0 && !pu.HasGroups() {
		return []error{errNoGroupsColumn}
	}
	return nil
}

// probeDirectory binds to the LDAP directory as the service account
// (check-config --probe); nothing for other backends.
func probeDirectory(cfg config.Config) []error {
	if cfg.Users.Backend != "ldap" {
		return nil
	}
	lu, err := openLDAPUsers(cfg, nil, nil)
	if err != nil {
		return []error{err}
	}
	defer lu.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Users.LDAP.DialTimeout+cfg.Users.LDAP.Timeout)
	defer cancel()
	if err := lu.Ping(ctx); err != nil {
		return []error{fmt.Errorf("users.ldap: the service account's bind to %s failed: %w", cfg.Users.LDAP.URL, err)}
	}
	return nil
}

// checkFiles loads what the config names without side effects: a signing key
// that does not exist yet is fine (serve creates it).
func checkFiles(cfg config.Config) []error {
	var errs []error
	if _, err := os.Stat(cfg.Resolve(cfg.Tokens.SigningKeyFile)); err == nil {
		if _, err := authn.LoadSigningKey(cfg.Resolve(cfg.Tokens.SigningKeyFile), cfg.Tokens.Algorithm); err != nil {
			errs = append(errs, fmt.Errorf("tokens.signing_key_file: %w", err))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("tokens.signing_key_file: %w", err))
	}
	for i, f := range cfg.Tokens.VerificationKeyFiles {
		k, err := authn.LoadVerificationKey(cfg.Resolve(f))
		if err == nil {
			err = authn.CheckVerificationKeys(cfg.Tokens.Algorithm, []*authn.Key{k})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("tokens.verification_key_files[%d]: %w", i, err))
		}
	}
	if cfg.Users.Backend == "file" {
		if _, err := authn.LoadFileUsers(cfg.Resolve(cfg.Users.File), authn.FileUsersOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("users.file: %w", err))
		}
	}
	if cfg.Users.Backend == "ldap" {
		if _, err := ldapOptions(cfg, nil, nil); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.AdminTokenFile != "" {
		if _, err := readSecretFile(cfg.Resolve(cfg.AdminTokenFile), 32); err != nil {
			errs = append(errs, fmt.Errorf("admin_token_file: %w", err))
		}
	}
	for key, f := range map[string]string{
		"users.postgres_password_file":   cfg.Users.PostgresPasswordFile,
		"revocation.redis_password_file": cfg.Revocation.RedisPasswordFile,
		"oidc.client_secret_file":        cfg.OIDC.ClientSecretFile,
	} {
		if _, err := optionalSecret(cfg.Resolve(f), f); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	return errs
}

// cmdHashPassword reads one password line on stdin and prints its hash on
// the last line of stdout.
func cmdHashPassword(args []string, e env) int {
	fset := newFlagSet("hash-password", e)
	algorithm := fset.String("algorithm", "bcrypt", "bcrypt | argon2id")
	cost := fset.Int("cost", 10, "bcrypt cost (4-31)")
	if code, ok := parseFlags(fset, args, e); !ok {
		return code
	}
	if *algorithm != "bcrypt" && *algorithm != "argon2id" {
		fmt.Fprintf(e.stderr, "hash-password: --algorithm must be bcrypt or argon2id\n")
		return exitConfig
	}
	password, err := readPasswordLine(e.stdin)
	if err != nil {
		fmt.Fprintf(e.stderr, "hash-password: %v (usage: echo -n 'secret' | tokengate hash-password)\n", err)
		return exitConfig
	}
	hash, err := authn.HashPassword(password, authn.HashOptions{Algorithm: *algorithm, BcryptCost: *cost})
	if err != nil {
		fmt.Fprintf(e.stderr, "hash-password: %v\n", err)
		return exitConfig
	}
	fmt.Fprintln(e.stdout, hash)
	return exitOK
}

// cmdRevokeUser asks a running instance (its admin listener) to revoke every
// token of a user. The instance resolves --user through its user store (an
// id, else a login name) and says which id it revoked; --force-id revokes
// the argument as an id without asking the store. The instance writes to
// its revocation store, so with the redis backend every replica learns of it.
func cmdRevokeUser(ctx context.Context, args []string, e env) int {
	fset := newFlagSet("revoke-user", e)
	configPath := fset.String("config", "", "config file of the running instance")
	user := fset.String("user", "", "user id or login name whose tokens to revoke")
	forceID := fset.Bool("force-id", false, "revoke --user as an id even if the user store holds no such user (a deleted user)")
	adminURL := fset.String("admin-url", "", "admin listener base URL (default: from admin_listen)")
	if code, ok := parseFlags(fset, args, e); !ok {
		return code
	}
	if strings.TrimSpace(*user) == "" {
		fmt.Fprintln(e.stderr, "revoke-user: --user is required")
		return exitConfig
	}
	cfg, ok := loadConfig(*configPath, e)
	if !ok {
		return exitConfig
	}
	if cfg.AdminTokenFile == "" {
		fmt.Fprintln(e.stderr, "revoke-user: admin_token_file is not set in the configuration; the operator endpoint is off")
		return exitConfig
	}
	token, err := readSecretFile(cfg.Resolve(cfg.AdminTokenFile), 32)
	if err != nil {
		fmt.Fprintf(e.stderr, "revoke-user: admin_token_file: %v\n", err)
		return exitConfig
	}
	base := *adminURL
	if base == "" {
		base = "http://" + dialable(cfg.AdminListen)
	}
	body, _ := json.Marshal(map[string]any{"user": *user, "force": *forceID})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/admin/revoke_user", bytes.NewReader(body))
	if err != nil {
		fmt.Fprintf(e.stderr, "revoke-user: %v\n", err)
		return exitConfig
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+string(token))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(e.stderr, "revoke-user: %v\n", err)
		return exitError
	}
	defer resp.Body.Close()
	var answer struct {
		RevokedUserID string `json:"revoked_user_id"`
		Matched       string `json:"matched"`
		Message       string `json:"message"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if json.Unmarshal(raw, &answer) != nil || resp.StatusCode != http.StatusOK || answer.RevokedUserID == "" {
		msg := answer.Message
		if msg == "" {
			msg = strings.TrimSpace(string(raw))
		}
		// The instance's hints name the HTTP field ("force": true); here
		// the same thing is a flag.
		msg = strings.NewReplacer("send force: true", "pass --force-id", "force: true", "--force-id").Replace(msg)
		fmt.Fprintf(e.stderr, "revoke-user: %s: %s\n", resp.Status, msg)
		return exitError
	}
	how := map[string]string{
		"id":       "the id",
		"username": fmt.Sprintf("the login name %q", *user),
		"forced":   "--force-id, not looked up",
	}[answer.Matched]
	fmt.Fprintf(e.stdout, "revoked every token of user id %q issued until now (matched %s)\n", answer.RevokedUserID, how)
	return exitOK
}

// dialable turns a listen address into one a client can dial.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
