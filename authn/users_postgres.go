package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
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
	// Migrate creates Table at open when it does not exist, and adds the
	// groups column (text[]) to a table made before groups existed.
	Migrate bool
	// Query switches to legacy, read-only mode: the operator's SQL taking
	// $1 = login name and returning (id, password_hash) or (id,
	// password_hash, groups), groups a text array or a comma-separated
	// string. Table and Migrate are then ignored.
	Query string
	// IDQuery, legacy mode only: SQL taking $1 = a user id (the token's
	// sub, as Query returned it) and returning the same columns as Query.
	// Without it legacy mode cannot look users up by id (ErrNoIDLookup):
	// no live groups, no refusal of removed users.
	IDQuery string
	// Logger; default discard. Says when a table has no groups column and
	// when a row holds group names that cannot be used.
	Logger *slog.Logger
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
	log       *slog.Logger
	legacy    string       // the operator's query; "" in table mode
	idQuery   string       // the operator's query by id; "" = none
	groups    groupsColumn // the table's, or the legacy query's, groups column
	idGroups  groupsColumn // the id query's
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
	pgUndefinedColumn = "42703"
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
	s := &PostgresUsers{timeout: opts.Timeout, legacy: opts.Query, log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.IDQuery != "" {
		if s.legacy == "" {
			return nil, errors.New("authn: users.id_query is only used with users.query (legacy mode)")
		}
		s.idQuery = opts.IDQuery
	}
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
		s.foldLock = "SELECT pg_advisory_xact_lock(hashtext('tokengate_users_name:' || " + foldSQL("$1") + "))"
		s.nameTaken = "SELECT EXISTS (SELECT 1 FROM " + table + " WHERE " + foldSQL("username") + " = " + foldSQL("$1") + ")"
		s.index = "CREATE INDEX IF NOT EXISTS " + pgx.Identifier{ident[len(ident)-1] + "_username_folded"}.Sanitize() +
			" ON " + table + " (" + foldSQL("username") + ")"
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
	if s.legacy == "" {
		s.tableQueries(table)
	}
	return s, nil
}

// tableQueries builds the managed table's statements, with the groups
// column when the table has one.
func (s *PostgresUsers) tableQueries(table string) {
	cols, insert := "id, username, password_hash", "INSERT INTO "+table+" (id, username, password_hash) VALUES ($1, $2, $3)"
	if s.groups.present {
		cols += ", groups"
		insert = "INSERT INTO " + table + " (id, username, password_hash, groups) VALUES ($1, $2, $3, $4)"
	}
	s.lookup = "SELECT " + cols + " FROM " + table + " WHERE " + foldSQL("username") + " = " + foldSQL("$1") +
		" ORDER BY username = $1 DESC LIMIT 2"
	s.byID = "SELECT " + cols + " FROM " + table + " WHERE id = $1"
	s.insert = insert
}

// HasGroups reports whether users from this store can have groups: the
// table has a groups column, or the legacy query returns one.
func (s *PostgresUsers) HasGroups() bool { return s.groups.present }

// CanLookupByID reports whether LookupUserByID works: always with the
// managed table, with users.id_query in legacy mode.
func (s *PostgresUsers) CanLookupByID() bool { return s.legacy == "" || s.idQuery != "" }

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
	created_at    timestamptz NOT NULL DEFAULT now(),
	groups        text[] NOT NULL DEFAULT '{}'
)`)
		if err != nil {
			return err
		}
		// Tables made before groups existed gain the column; a constant
		// default makes this a catalog change, not a rewrite.
		_, err = tx.Exec(ctx, `ALTER TABLE `+table+` ADD COLUMN IF NOT EXISTS groups text[] NOT NULL DEFAULT '{}'`)
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

// checkTable fails unless table exists with the columns the store uses,
// and finds out whether it has a usable groups column (optional: a table
// made before groups existed still works, its users have none).
func (s *PostgresUsers) checkTable(ctx context.Context, table string) error {
	_, err := s.pool.Exec(ctx, "SELECT id, username, password_hash FROM "+table+" LIMIT 0")
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
	case errors.As(err, &pgErr) && pgErr.Code == pgUndefinedTable:
		return fmt.Errorf("%w: table %s does not exist: set users.migrate: true or create it", ErrUsersTable, table)
	default:
		return fmt.Errorf("%w: table %s unusable (want columns id, username, password_hash): %v", ErrUsersTable, table, err)
	}
	rows, err := s.pool.Query(ctx, "SELECT groups FROM "+table+" LIMIT 0")
	if err == nil {
		oid := rows.FieldDescriptions()[0].DataTypeOID
		rows.Close()
		if s.groups, err = groupsColumnOf(oid); err != nil {
			return fmt.Errorf("%w: table %s: column groups %v", ErrUsersTable, table, err)
		}
		return nil
	}
	if errors.As(err, &pgErr) && pgErr.Code == pgUndefinedColumn {
		s.log.Warn("the users table has no groups column: its users have no groups (add it: ALTER TABLE ... ADD COLUMN groups text[] NOT NULL DEFAULT '{}', or set users.migrate: true)",
			"table", table)
		return nil
	}
	return fmt.Errorf("%w: table %s: %v", ErrUsersTable, table, err)
}

func (s *PostgresUsers) checkLegacyQuery(ctx context.Context) error {
	var err error
	if s.groups, err = s.describeLegacy(ctx, "users.query", s.legacy, "the login name"); err != nil {
		return err
	}
	if s.idQuery != "" {
		if s.idGroups, err = s.describeLegacy(ctx, "users.id_query", s.idQuery, "a user id"); err != nil {
			return err
		}
	}
	return nil
}

// describeLegacy checks that an operator's query takes one parameter and
// returns (id, password_hash) or (id, password_hash, groups), and says
// what its groups column is.
func (s *PostgresUsers) describeLegacy(ctx context.Context, key, query, param string) (groupsColumn, error) {
	var sd *pgconn.StatementDescription
	err := s.pool.AcquireFunc(ctx, func(conn *pgxpool.Conn) error {
		// The unnamed statement only describes the query; nothing runs.
		var err error
		sd, err = conn.Conn().PgConn().Prepare(ctx, "", query, nil)
		return err
	})
	if err != nil {
		return groupsColumn{}, fmt.Errorf("authn: %s: %w", key, err)
	}
	if len(sd.ParamOIDs) != 1 || (len(sd.Fields) != 2 && len(sd.Fields) != 3) {
		return groupsColumn{}, fmt.Errorf("authn: %s must take one parameter ($1, %s) and return two columns (id, password_hash) or three (id, password_hash, groups); it takes %d and returns %d",
			key, param, len(sd.ParamOIDs), len(sd.Fields))
	}
	if len(sd.Fields) == 2 {
		return groupsColumn{}, nil
	}
	g, err := groupsColumnOf(sd.Fields[2].DataTypeOID)
	if err != nil {
		return groupsColumn{}, fmt.Errorf("authn: %s: the third column (groups) %w", key, err)
	}
	return g, nil
}

// groupsColumn describes where a row's groups come from.
type groupsColumn struct {
	present bool
	array   bool   // a text array; else a comma-separated string
	oid     uint32 // its type
}

// groupsColumnOf accepts text arrays and strings.
func groupsColumnOf(oid uint32) (groupsColumn, error) {
	switch oid {
	case pgtype.TextArrayOID, pgtype.VarcharArrayOID, pgtype.BPCharArrayOID, pgtype.NameArrayOID:
		return groupsColumn{present: true, array: true, oid: oid}, nil
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.UnknownOID:
		return groupsColumn{present: true, oid: oid}, nil
	}
	return groupsColumn{}, fmt.Errorf("must be text[] (or varchar[]) or a comma-separated text; its type has oid %d", oid)
}

// groupsValue scans one row's groups column.
type groupsValue struct {
	col  groupsColumn
	arr  []pgtype.Text
	text pgtype.Text
}

func (g *groupsValue) dest() any {
	if g.col.array {
		return &g.arr
	}
	return &g.text
}

// scanText decodes the column from the text format (legacy rows).
func (g *groupsValue) scanText(raw []byte) error {
	if raw == nil {
		return nil // NULL: no groups
	}
	return pgTypes.Scan(g.col.oid, pgx.TextFormatCode, raw, g.dest())
}

var pgTypes = pgtype.NewMap()

// groups returns the usable groups; the ones dropped are logged for user id.
func (g *groupsValue) groups(log *slog.Logger, id string) []string {
	var raw []string
	if g.col.array {
		for _, t := range g.arr {
			if t.Valid {
				raw = append(raw, t.String)
			}
		}
	} else if g.text.Valid {
		raw = splitGroups(g.text.String)
	}
	groups, dropped := cleanGroups(raw)
	if len(dropped) > 0 {
		log.Warn("users postgres: ignoring group names that cannot be used (empty, too long, a comma, a control character, surrounding spaces, or too many)",
			"user_id", id, "groups", dropped)
	}
	return groups
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
		return s.scanTableRow(row)
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

// scanTableRow reads (id, username, password_hash[, groups]).
func (s *PostgresUsers) scanTableRow(row pgx.Row) (User, error) {
	var u User
	g := groupsValue{col: s.groups}
	dest := []any{&u.ID, &u.Username, &u.PasswordHash}
	if s.groups.present {
		dest = append(dest, g.dest())
	}
	if err := row.Scan(dest...); err != nil {
		return User{}, err
	}
	u.Groups = g.groups(s.log, u.ID)
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
	u, err := s.queryLegacy(ctx, s.legacy, s.groups, login)
	if err != nil {
		return User{}, err
	}
	u.Username = login
	return u, nil
}

// queryLegacy runs one of the operator's queries and reads the one row it
// may return.
func (s *PostgresUsers) queryLegacy(ctx context.Context, query string, g groupsColumn, arg string) (User, error) {
	// Text results turn any id type (bigint, uuid, numeric) into its
	// canonical string without knowing the type.
	formats := pgx.QueryResultFormats{pgx.TextFormatCode, pgx.TextFormatCode, pgx.TextFormatCode}
	if !g.present {
		formats = formats[:2]
	}
	rows, err := s.pool.Query(ctx, query, formats, arg)
	if err != nil {
		return User{}, fmt.Errorf("authn: users postgres: legacy lookup: %w", err)
	}
	u, found, err := scanLegacyRow(rows, g, s.log)
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

// scanLegacyRow reads the one row a login name (or id) may match, and
// closes rows (which hands the connection back to the pool).
func scanLegacyRow(rows pgx.Rows, g groupsColumn, log *slog.Logger) (u User, found bool, err error) {
	defer rows.Close()
	want := 2
	if g.present {
		want = 3
	}
	rowCount := 0
	for rows.Next() {
		if rowCount++; rowCount > 1 {
			// Two accounts answer to one login name: refuse rather than pick one.
			return User{}, false, errLegacyManyRows
		}
		vals := rows.RawValues()
		if len(vals) != want {
			return User{}, false, fmt.Errorf("legacy query returned %d columns, want %d", len(vals), want)
		}
		found = vals[1] != nil // NULL hash: nobody can log in as this
		u = User{ID: string(vals[0]), PasswordHash: string(vals[1])}
		if len(vals[0]) == 0 {
			return User{}, false, errNoID // an empty id would become the login name
		}
		if g.present {
			gv := groupsValue{col: g}
			if err := gv.scanText(vals[2]); err != nil {
				return User{}, false, fmt.Errorf("%w: groups column: %w", errBadRecord, err)
			}
			u.Groups = gv.groups(log, u.ID)
		}
	}
	return u, found, rows.Err()
}

// LookupUserByID finds the user whose id (the token's sub) is id. Legacy
// mode needs IDQuery (else ErrNoIDLookup); the user it returns has no
// Username (the id query returns none), and a row whose id differs from
// the one asked for is an error, not a user.
func (s *PostgresUsers) LookupUserByID(ctx context.Context, id string) (User, error) {
	if s.legacy != "" && s.idQuery == "" {
		return User{}, ErrNoIDLookup
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if s.legacy != "" {
		u, err := s.queryLegacy(ctx, s.idQuery, s.idGroups, id)
		if err == nil && u.ID != id {
			return User{}, fmt.Errorf("authn: users postgres: %w: users.id_query returned id %q for id %q: it must return the row of the id it is given, in the text form users.query returns", errBadRecord, u.ID, id)
		}
		return u, err
	}
	u, err := s.scanTableRow(s.pool.QueryRow(ctx, s.byID, id))
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
	if len(u.Groups) > 0 && !s.groups.present {
		return User{}, errors.New("authn: users postgres: create user with groups: the users table has no groups column (set users.migrate: true, or add it)")
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
		args := []any{u.ID, u.Username, u.PasswordHash}
		if s.groups.present {
			args = append(args, s.groupsArg(u.Groups))
		}
		_, err := tx.Exec(ctx, s.insert, args...)
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

// groupsArg is u.Groups as the table's groups column takes them.
func (s *PostgresUsers) groupsArg(groups []string) any {
	if s.groups.array {
		if groups == nil {
			return []string{}
		}
		return groups
	}
	return strings.Join(groups, ",")
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
