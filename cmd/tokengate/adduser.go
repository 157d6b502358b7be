package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"tokengate/authn"
	"tokengate/internal/config"
)

// cmdAddUser creates a user in the configured writable store (bolt, or
// PostgreSQL without a legacy query), with the password read from stdin and
// the same policy and hash as POST /users. It bootstraps the first user when
// registration is "authenticated" and the store is empty.
func cmdAddUser(ctx context.Context, args []string, e env) int {
	fset := newFlagSet("add-user", e)
	configPath := fset.String("config", "", "config file naming the user store")
	user := fset.String("user", "", "login name of the new user (its id is the same)")
	if code, ok := parseFlags(fset, args, e); !ok {
		return code
	}
	if *user == "" {
		fmt.Fprintln(e.stderr, "add-user: --user is required (usage: echo -n 'password' | tokengate add-user --config FILE --user NAME)")
		return exitConfig
	}
	cfg, ok := loadConfig(*configPath, e)
	if !ok {
		return exitConfig
	}
	password, err := readPasswordLine(e.stdin)
	if err != nil {
		fmt.Fprintf(e.stderr, "add-user: %v\n", err)
		return exitConfig
	}
	store, closeStore, err := openWritableUsers(ctx, cfg)
	if err != nil {
		fmt.Fprintf(e.stderr, "add-user: %v\n", err)
		return exitConfig
	}
	defer closeStore()
	hash := authn.HashOptions{Algorithm: cfg.Users.PasswordHash, BcryptCost: cfg.Users.BcryptCost}
	reg := authn.NewRegistrar(store, authn.UserPolicy{MinPasswordLength: cfg.Users.MinPasswordLength}, hash)
	reg.DefaultGroups = cfg.Users.DefaultGroups
	u, err := reg.Register(ctx, *user, password)
	var policy *authn.PolicyError
	switch {
	case errors.As(err, &policy):
		fmt.Fprintf(e.stderr, "add-user: %v\n", err)
		return exitConfig
	case errors.Is(err, authn.ErrUserExists):
		fmt.Fprintf(e.stderr, "add-user: a user named %q (or with that id) already exists; nothing was changed\n", *user)
		return exitError
	case err != nil:
		fmt.Fprintf(e.stderr, "add-user: %v\n", err)
		return exitError
	}
	fmt.Fprintf(e.stdout, "created user %q (id %q)\n", u.Username, u.ID)
	return exitOK
}

// readPasswordLine reads one line (at most 4 KiB) from r without its line
// ending; an empty password is an error.
func readPasswordLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading stdin: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		return "", errors.New("no password on stdin")
	}
	return password, nil
}

// openWritableUsers opens the configured store for writing, or says why it
// cannot be written.
func openWritableUsers(ctx context.Context, cfg config.Config) (authn.UserCreator, func(), error) {
	u := cfg.Users
	switch {
	case u.Backend == "bolt":
		bu, err := authn.OpenBoltUsers(cfg.Resolve(u.Path), authn.BoltUsersOptions{})
		if err != nil {
			return nil, nil, fmt.Errorf("users.path: %w (a running tokengate holds the file: stop it, or use POST %s)", err, cfg.Routes.Users)
		}
		return bu, func() { bu.Close() }, nil
	case u.Backend == "postgres" && u.Query == "":
		password, err := optionalSecret(cfg.Resolve(u.PostgresPasswordFile), u.PostgresPasswordFile)
		if err != nil {
			return nil, nil, fmt.Errorf("users.postgres_password_file: %w", err)
		}
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		pu, err := authn.OpenPostgresUsers(octx, authn.PostgresUsersOptions{
			URL: u.PostgresURL, Password: password, Table: u.Table, Migrate: u.Migrate,
		})
		if err != nil {
			return nil, nil, postgresUsersError(err)
		}
		return pu, pu.Close, nil
	case u.Backend == "postgres":
		return nil, nil, errors.New("users.query: the legacy query store is read-only: add the user in the app's own table")
	case u.Backend == "ldap":
		return nil, nil, errors.New("users.backend: the LDAP directory is read-only: create the user (and set passwords) in the directory")
	default:
		return nil, nil, fmt.Errorf("users.backend: the %s store is read-only here: add an entry to %s with a hash from tokengate hash-password", u.Backend, u.File)
	}
}
