package authn

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"tokengate/internal/testclock"
	"tokengate/internal/testsvc"
)

// stallProxy forwards TCP to a server until Stall: then it keeps every
// connection open but passes nothing (a database that stops answering, not
// one that refuses), until Resume drops them all and forwards again.
type stallProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	stalled chan struct{} // closed while forwarding; open while stalled
	conns   []net.Conn
	wg      sync.WaitGroup
}

func startStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, stalled: make(chan struct{})}
	close(p.stalled)
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.Resume()
		p.wg.Wait()
	})
	return p
}

func (p *stallProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Go(func() { p.serve(c) })
	}
}

func (p *stallProxy) gate() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stalled
}

func (p *stallProxy) serve(c net.Conn) {
	defer c.Close()
	<-p.gate()
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, up)
	p.mu.Unlock()
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				<-p.gate() // a stall holds what was read
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	c.Close()
	up.Close()
	<-done
}

// Stall stops passing bytes; connections stay open.
func (p *stallProxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = make(chan struct{})
}

// Resume drops every connection held so far and forwards again.
func (p *stallProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	select {
	case <-p.stalled:
	default:
		close(p.stalled)
	}
}

// Identities over the real PostgreSQL store: a changed group and a removed
// row are seen within the refresh interval; an outage (a database that
// stops answering, then a renamed column) serves the last answer up to
// max_stale and then refuses; recovery is picked up.
func TestIdentitiesPostgres(t *testing.T) {
	base := testsvc.PostgresURL(t)
	table := pgTestTable(t, base, "tg_ident")
	ident := pgx.Identifier{table}.Sanitize()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startStallProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	store := openTestPostgres(t, PostgresUsersOptions{URL: u.String(), Table: table, Migrate: true, Timeout: time.Second})
	ctx := context.Background()
	for _, nu := range []User{
		{ID: "alice", Username: "alice", PasswordHash: marcoHash, Groups: []string{"ops"}},
		{ID: "bob", Username: "bob", PasswordHash: marcoHash},
	} {
		if _, err := store.CreateUser(ctx, nu); err != nil {
			t.Fatal(err)
		}
	}
	clock := testclock.New(identStart)
	c := newTestIdentities(t, store, clock, IdentitiesOptions{
		RefreshInterval: time.Minute, MaxStale: 5 * time.Minute, Timeout: 300 * time.Millisecond,
	})
	wantGroups(t, c, "alice", "ops")
	wantGroups(t, c, "bob")

	// A changed group: served from the cache until the refresh-ahead has
	// re-read it, which happens within the interval.
	pgExec(t, base, "UPDATE "+ident+" SET groups = '{finance}' WHERE id = 'alice'")
	clock.Advance(31 * time.Second)
	wantGroups(t, c, "alice", "ops")
	c.settle(t)
	wantGroups(t, c, "alice", "finance")

	// A removed row: bob is unknown once his entry is an interval old.
	pgExec(t, base, "DELETE FROM "+ident+" WHERE id = 'bob'")
	clock.Advance(61 * time.Second)
	wantIdentityErr(t, c, "bob", ErrUserNotFound)

	// The database stops answering.
	wantGroups(t, c, "alice", "finance") // refreshed just now (synchronously: 61s old)
	proxy.Stall()
	// Changed behind the stall: an answer of "audit" would mean the store
	// was read, not the last answer served.
	pgExec(t, base, "UPDATE "+ident+" SET groups = '{audit}' WHERE id = 'alice'")
	clock.Advance(61 * time.Second)
	begin := time.Now()
	wantGroups(t, c, "alice", "finance") // waits for the lookup timeout once, then the last answer
	if d := time.Since(begin); d > 3*time.Second {
		t.Fatalf("the first lookup during a stall took %s (timeout 300ms)", d)
	}
	begin = time.Now()
	for range 20 {
		wantGroups(t, c, "alice", "finance")
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("20 lookups once the outage was known took %s: they waited on the database", d)
	}
	clock.Advance(4 * time.Minute) // 5m1s since the database last answered
	wantIdentityErr(t, c, "alice", ErrUsersUnavailable)
	if n := testutil.ToFloat64(c.refreshErrors); n < 1 {
		t.Fatalf("refresh errors = %v, want at least 1", n)
	}

	// Back: the next background retry refreshes, and answers flow again.
	proxy.Resume()
	c.settle(t)
	clock.Advance(2 * time.Second)
	eventually(t, func() error {
		_, err := c.Identity(ctx, "alice")
		c.settle(t)
		clock.Advance(2 * time.Second)
		return err
	})
	wantGroups(t, c, "alice", "audit")

	// A different outage: the column the store reads is renamed (a bad
	// migration). Not "user removed": the last answer, then 503.
	pgExec(t, base, "ALTER TABLE "+ident+" RENAME COLUMN groups TO groups_old")
	clock.Advance(61 * time.Second)
	wantGroups(t, c, "alice", "audit")
	clock.Advance(5 * time.Minute)
	wantIdentityErr(t, c, "alice", ErrUsersUnavailable)
	// Changed before the column comes back, so the first read that works
	// sees it (a background refresh between the two statements would
	// otherwise read "audit" and the check below would race).
	pgExec(t, base, "UPDATE "+ident+" SET groups_old = '{ops,reports}' WHERE id = 'alice'")
	pgExec(t, base, "ALTER TABLE "+ident+" RENAME COLUMN groups_old TO groups")
	eventually(t, func() error {
		_, err := c.Identity(ctx, "alice")
		c.settle(t)
		clock.Advance(2 * time.Second)
		return err
	})
	wantGroups(t, c, "alice", "ops", "reports")
}

// eventually retries f (which moves the test clock itself) for up to 5s.
func eventually(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after 5s: %v", err)
		}
		if !errors.Is(err, ErrUsersUnavailable) {
			t.Fatalf("unexpected error: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
