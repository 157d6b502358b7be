package authn

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresUsersOptions configure a PostgreSQL user store.
type PostgresUsersOptions struct {
	// URL is the connection string (postgres://... or key=value); pgxpool's
	// pool_* parameters are honoured. Without connect_timeout, dialing is
	// bounded by Timeout (pgxpool finishes a dial in the background even
	// when the caller gives up).
	URL string
	// Password, when set, replaces the URL's (read by the caller from a
	// file or the environment so the URL can sit in a ConfigMap).
	Password string
	// Table holds the users; default "tokengate_users". A plain identifier
	// or schema.table, quoted (so case-sensitive).
	Table string
	// Migrate creates Table at open when it does not exist.
	Migrate bool
	// Query switches to legacy, read-only mode: the operator's SQL taking
	// $1 = login name and returning exactly (id, password_hash). Table and
	// Migrate are then ignored.
	Query string
	// MaxConns caps the open connections; default the URL's pool_max_conns,
	// else max(4, NumCPU).
	MaxConns int32
	// Timeout bounds each statement, and each dial, when the caller's
	// context has no deadline; default 5s.
	Timeout time.Duration
}

// PostgresUsers is a UserStore in PostgreSQL, shared by replicas. In
// legacy mode (Query set) it reads an existing schema and is read-only.
type PostgresUsers struct {
	pool      *pgxpool.Pool
	timeout   time.Duration
	legacy    string // the operator's query; "" in table mode
	lookup    string
	byID      string
	insert    string
	foldLock  string // serialises creations of one folded name
	nameTaken string
	index     string // the folded-name index the migration creates
}

// foldSQL is foldName in SQL.
func foldSQL(expr string) string {
	return "translate(" + expr + ", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
}

var (
	_ UserStore   = (*PostgresUsers)(nil)
	_ UserCreator = (*PostgresUsers)(nil)
)

// SQLSTATEs we branch on.
const (
	pgUniqueViolation = "23505"
	pgUndefinedTable  = "42P01"
)

var plainIdentifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func parseTable(name string) (pgx.Identifier, error) {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("authn: users table %q: want table or schema.table", name)
	}
	for _, p := range parts {
		if !plainIdentifier.MatchString(p) {
			return nil, fmt.Errorf("authn: users table %q: not a plain identifier (letters, digits, _; at most 63)", name)
		}
	}
	return pgx.Identifier(parts), nil
}

// OpenPostgresUsers connects, checks (or with Migrate creates) the users
// table, or in legacy mode checks that Query takes one parameter and
// returns two columns. Any problem is reported here, not at first login.
func OpenPostgresUsers(ctx context.Context, opts PostgresUsersOptions) (*PostgresUsers, error) {
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		// pgx redacts passwords only on a best-effort basis: keep its message out.
		return nil, errors.New("authn: users postgres_url: cannot parse the connection string")
	}
	s := &PostgresUsers{timeout: opts.Timeout, legacy: opts.Query}
	if s.timeout <= 0 {
		s.timeout = 5 * time.Second
	}
	if opts.Password != "" {
		cfg.ConnConfig.Password = opts.Password
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if cfg.ConnConfig.ConnectTimeout <= 0 {
		// pgxpool's own default is two minutes.
		cfg.ConnConfig.ConnectTimeout = s.timeout
	}
	// Idle connections are also pinged before reuse once idle for a second
	// (pgxpool's default); the periodic check retires old and idle ones.
	cfg.HealthCheckPeriod = 30 * time.Second

	var table string
	if s.legacy == "" {
		name := opts.Table
		if name == "" {
			name = "tokengate_users"
		}
		ident, err := parseTable(name)
		if err != nil {
			return nil, err
		}
		table = ident.Sanitize()
		// ASCII case folding, as foldName: translate() is immutable, so the
		// migration can index it, and unlike lower() it ignores the locale.
		// The exact spelling sorts first; two other spellings and no exact
		// one is ambiguous (a table filled before folding).
		s.lookup = "SELECT id, username, password_hash FROM " + table + " WHERE " + foldSQL("username") + " = " + foldSQL("$1") +
			" ORDER BY username = $1 DESC LIMIT 2"
		s.foldLock = "SELECT pg_advisory_xact_lock(hashtext('tokengate_users_name:' || " + foldSQL("$1") + "))"
		s.nameTaken = "SELECT EXISTS (SELECT 1 FROM " + table + " WHERE " + foldSQL("username") + " = " + foldSQL("$1") + ")"
		s.index = "CREATE INDEX IF NOT EXISTS " + pgx.Identifier{ident[len(ident)-1] + "_username_folded"}.Sanitize() +
			" ON " + table + " (" + foldSQL("username") + ")"
		s.byID = "SELECT id, username, password_hash FROM " + table + " WHERE id = $1"
		s.insert = "INSERT INTO " + table + " (id, username, password_hash) VALUES ($1, $2, $3)"
	}

	// The pool dials lazily: the Ping below makes the first connection.
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, errors.New("authn: users postgres_url: invalid pool configuration")
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	err = s.pool.Ping(ctx)
	switch {
	case err != nil:
		err = fmt.Errorf("authn: users postgres: connect: %w", err)
	case s.legacy != "":
		err = s.checkLegacyQuery(ctx)
	case opts.Migrate:
		err = s.migrate(ctx, table)
	default:
		err = s.checkTable(ctx, table)
	}
	if err != nil {
		s.pool.Close()
		return nil, err
	}
	return s, nil
}

func (s *PostgresUsers) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

func (s *PostgresUsers) migrate(ctx context.Context, table string) error {
	// Replicas starting together would race CREATE TABLE IF NOT EXISTS (it
	// can fail on the catalog's unique index); a transaction-scoped advisory
	// lock on the table name serialises them.
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "tokengate_users_migrate:"+table); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (
	id            text PRIMARY KEY,
	username      text UNIQUE NOT NULL,
	password_hash text NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT now()
)`)
		if err != nil {
			return err
		}
		// Logins look names up ignoring case: index what they compare.
		_, err = tx.Exec(ctx, s.index)
		return err
	})
	if err != nil {
		return fmt.Errorf("authn: users postgres: migrate: create table %s: %w", table, err)
	}
	return s.checkTable(ctx, table)
}

// checkTable fails unless table exists with the columns the store uses.
func (s *PostgresUsers) checkTable(ctx context.Context, table string) error {
	_, err := s.pool.Exec(ctx, "SELECT id, username, password_hash FROM "+table+" LIMIT 0")
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == pgUndefinedTable:
		return fmt.Errorf("%w: table %s does not exist: set users.migrate: true or create it", ErrUsersTable, table)
	default:
		return fmt.Errorf("%w: table %s unusable (want columns id, username, password_hash): %v", ErrUsersTable, table, err)
	}
}

func (s *PostgresUsers) checkLegacyQuery(ctx context.Context) error {
	var sd *pgconn.StatementDescription
	err := s.pool.AcquireFunc(ctx, func(conn *pgxpool.Conn) error {
		// The unnamed statement only describes the query; nothing runs.
		var err error
		sd, err = conn.Conn().PgConn().Prepare(ctx, "", s.legacy, nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("authn: users.query: %w", err)
	}
	if len(sd.ParamOIDs) != 1 || len(sd.Fields) != 2 {
		return fmt.Errorf("authn: users.query must take one parameter ($1, the login name) and return two columns (id, password_hash); it takes %d and returns %d",
			len(sd.ParamOIDs), len(sd.Fields))
	}
	return nil
}

// LookupUser implements UserStore.
func (s *PostgresUsers) LookupUser(ctx context.Context, username string) (User, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if s.legacy != "" {
		return s.lookupLegacy(ctx, username)
	}
	rows, err := s.pool.Query(ctx, s.lookup, username)
	if err != nil {
		return User{}, fmt.Errorf("authn: users postgres: lookup: %w", err)
	}
	found, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (User, error) {
		var u User
		return u, row.Scan(&u.ID, &u.Username, &u.PasswordHash)
	})
	if err != nil {
		return User{}, fmt.Errorf("authn: users postgres: lookup: %w", err)
	}
	if len(found) == 0 {
		return User{}, ErrUserNotFound
	}
	u := found[0]
	if len(found) > 1 && u.Username != username {
		return User{}, errAmbiguousCase
	}
	if u.ID == "" {
		return User{}, errNoID
	}
	return u, nil
}

// Rows nobody can log in as are answered like a missing user (the caller
// then spends a dummy hash check), never as a store failure: a 503 would
// say the account exists. Both wrap ErrUserNotFound.
var (
	errLegacyManyRows = fmt.Errorf("%w: users postgres: more than one row for this login name", ErrUserNotFound)
	errNoID           = fmt.Errorf("%w: users postgres: the row has an empty or NULL id", ErrUserNotFound)
	errAmbiguousCase  = fmt.Errorf("%w: users postgres: several usernames equal this one ignoring case, none exactly", ErrUserNotFound)
)

func (s *PostgresUsers) lookupLegacy(ctx context.Context, login string) (User, error) {
	// Text results turn any id type (bigint, uuid, numeric) into its
	// canonical string without knowing the type.
	rows, err := s.pool.Query(ctx, s.legacy, pgx.QueryResultFormats{pgx.TextFormatCode, pgx.TextFormatCode}, login)
	if err != nil {
		return User{}, fmt.Errorf("authn: users postgres: legacy lookup: %w", err)
	}
	u, found, err := scanLegacyRow(rows, login)
	if errors.Is(err, ErrUserNotFound) {
		return User{}, err
	}
	if err != nil {
		return User{}, fmt.Errorf("authn: users postgres: legacy lookup: %w", err)
	}
	if !found {
		return User{}, ErrUserNotFound
	}
	return u, nil
}

// scanLegacyRow reads the one row a login name may match, and closes rows
// (which hands the connection back to the pool).
func scanLegacyRow(rows pgx.Rows, login string) (u User, found bool, err error) {
	defer rows.Close()
	rowCount := 0
	for rows.Next() {
		if rowCount++; rowCount > 1 {
			// Two accounts answer to one login name: refuse rather than pick one.
			return User{}, false, errLegacyManyRows
		}
		vals := rows.RawValues()
		if len(vals) != 2 {
			return User{}, false, fmt.Errorf("legacy query returned %d columns, want 2", len(vals))
		}
		found = vals[1] != nil // NULL hash: nobody can log in as this
		u = User{ID: string(vals[0]), Username: login, PasswordHash: string(vals[1])}
		if len(vals[0]) == 0 {
			return User{}, false, errNoID // an empty id would become the login name
		}
	}
	return u, found, rows.Err()
}

// LookupUserByID finds the user whose id (the token's sub) is id. Legacy
// mode cannot (the operator's query takes a login name): ErrNoIDLookup.
func (s *PostgresUsers) LookupUserByID(ctx context.Context, id string) (User, error) {
	if s.legacy != "" {
		return User{}, ErrNoIDLookup
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var u User
	err := s.pool.QueryRow(ctx, s.byID, id).Scan(&u.ID, &u.Username, &u.PasswordHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, ErrUserNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("authn: users postgres: lookup by id: %w", err)
	}
	return u, nil
}

// CreateUser implements UserCreator: the table's primary key and unique
// username decide races; a violation is ErrUserExists. Legacy mode is
// read-only.
func (s *PostgresUsers) CreateUser(ctx context.Context, u User) (User, error) {
	if s.legacy != "" {
		return User{}, ErrReadOnly
	}
	u, err := normalizeNewUser(u)
	if err != nil {
		return User{}, err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	// The unique constraints hold exact names and ids; a name equal to
	// another ignoring case is refused under a lock on the folded name, so
	// two replicas registering "Dave" and "dave" at once cannot both win.
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, s.foldLock, u.Username); err != nil {
			return err
		}
		var taken bool
		if err := tx.QueryRow(ctx, s.nameTaken, u.Username).Scan(&taken); err != nil {
			return err
		}
		if taken {
			return ErrUserExists
		}
		_, err := tx.Exec(ctx, s.insert, u.ID, u.Username, u.PasswordHash)
		return err
	})
	if errors.Is(err, ErrUserExists) {
		return User{}, err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgUniqueViolation {
		return User{}, ErrUserExists
	}
	if err != nil {
		return User{}, fmt.Errorf("authn: users postgres: create user: %w", err)
	}
	return u, nil
}

// Ping checks that the database answers (for /readyz).
func (s *PostgresUsers) Ping(ctx context.Context) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	return s.pool.Ping(ctx)
}

// Close closes the pool, waiting for connections in use to come back;
// later calls fail.
func (s *PostgresUsers) Close() { s.pool.Close() }
