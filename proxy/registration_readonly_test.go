package proxy

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"tokengate/authn"
	"tokengate/internal/testsvc"
)

// A read-only user store (legacy query mode against the app's own table)
// cannot register users: 501 registration_unsupported, nothing written.
func TestUsersRouteReadOnlyStore(t *testing.T) {
	url := testsvc.PostgresURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	table := testsvc.TempTable(t, url, "tg_proxy_legacy")
	if _, err := conn.Exec(ctx, `CREATE TABLE `+table+` (id bigint, login text, pw text)`); err != nil {
		t.Fatal(err)
	}

	store, err := authn.OpenPostgresUsers(ctx, authn.PostgresUsersOptions{
		URL: url, Query: `SELECT id, pw FROM ` + table + ` WHERE login = $1`,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	reg := authn.NewRegistrar(store, authn.UserPolicy{}, authn.HashOptions{BcryptCost: 4})
	e := newEnv(t, envConfig{options: func(o *Options) {
		o.Registration = "open"
		o.Registrar = reg
	}})
	res := e.do("POST", "/users", jsonHeader(), `{"username":"newbie","password":"a long enough password"}`)
	if res.StatusCode != 501 || res.apiErr().Code != "registration_unsupported" {
		t.Fatalf("register on a read-only store: %d %s", res.StatusCode, res.body)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows in the legacy table: %d (%v), want 0", n, err)
	}
}
