package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
	"tokengate/internal/testkit"
)

// countChecks replaces a's password check with one that records the hash of
// every check, and returns the record.
func countChecks(a *Authenticator) *[]string {
	var hashes []string
	a.check = func(hash, password string) (bool, error) {
		hashes = append(hashes, hash)
		return CheckPassword(hash, password)
	}
	return &hashes
}

func mustParams(t *testing.T, hash string) hashParams {
	t.Helper()
	p, ok := paramsOf(hash)
	if !ok {
		t.Fatalf("hash %.12s... has no usable parameters", hash)
	}
	return p
}

var (
	bcrypt4  = hashParams{alg: HashBcrypt, bcryptCost: 4}
	bcrypt6  = hashParams{alg: HashBcrypt, bcryptCost: 6}
	bcrypt12 = hashParams{alg: HashBcrypt, bcryptCost: 12}
	argonBig = hashParams{alg: HashArgon2id, memory: 64 * 1024, time: 3, threads: 2, saltLen: 16, keyLen: 32}
	argonLow = hashParams{alg: HashArgon2id, memory: 1024, time: 1, threads: 1, saltLen: 16, keyLen: 32}
)

func TestDummyHashHasItsParameters(t *testing.T) {
	for _, p := range []hashParams{bcrypt4, bcrypt12, argonBig, argonLow, {alg: HashArgon2id, memory: 4096, time: 2, threads: 4, saltLen: 8, keyLen: 64}} {
		h := p.dummyHash()
		if got := mustParams(t, h); got != p {
			t.Errorf("dummy for %+v has parameters %+v", p, got)
		}
		if p == bcrypt12 {
			continue // a real cost-12 check is slow and adds nothing
		}
		if ok, err := CheckPassword(h, "any-password"); ok || err != nil {
			t.Errorf("CheckPassword(dummy %v) = %v, %v; want false, nil", p, ok, err)
		}
	}
	if first, second := bcrypt6.dummyHash(), bcrypt6.dummyHash(); first == second {
		t.Error("two dummies are equal: the salt is not random")
	}
}

func TestCostOrder(t *testing.T) {
	// Within an algorithm the order is exact; across, the estimate puts
	// argon2id's defaults a little above bcrypt 10, as measured.
	order := []hashParams{argonLow, bcrypt4, bcrypt6, {alg: HashBcrypt, bcryptCost: 10}, argonBig, bcrypt12}
	for i := 1; i < len(order); i++ {
		if !order[i].moreExpensive(order[i-1]) || order[i-1].moreExpensive(order[i]) {
			t.Errorf("%v should cost more than %v", order[i], order[i-1])
		}
	}
}

// Issue 17 point 4 and issue 13 point 5: an unknown name costs one hash
// check, against a hash as expensive as the most expensive stored one.
func TestUnknownNameCostsTheMostExpensiveStoredHash(t *testing.T) {
	tests := []struct {
		name       string
		stored     []hashParams
		configured HashOptions
		want       hashParams
	}{
		{"one bcrypt cost, configured higher", []hashParams{bcrypt4}, HashOptions{BcryptCost: 12}, bcrypt4},
		{"two bcrypt costs", []hashParams{bcrypt4, bcrypt6, bcrypt4}, HashOptions{BcryptCost: 4}, bcrypt6},
		{"bcrypt and argon2id", []hashParams{bcrypt6, argonBig}, HashOptions{BcryptCost: 4}, argonBig},
		{"cheap argon2id only, configured argon2id", []hashParams{argonLow}, HashOptions{Algorithm: HashArgon2id}, argonLow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var entries []string
			for i, p := range tt.stored {
				entries = append(entries, userEntry(string(rune('a'+i)), p.dummyHash(), ""))
			}
			users, err := LoadFileUsers(writeFile(t, usersYAML(entries...)), FileUsersOptions{})
			if err != nil {
				t.Fatal(err)
			}
			a := NewAuthenticator(users, AuthenticatorOptions{Hash: tt.configured})
			checks := countChecks(a)
			if tt.want == bcrypt12 || tt.want == argonBig {
				a.check = func(hash, password string) (bool, error) { *checks = append(*checks, hash); return false, nil }
			}
			if _, err := a.Authenticate(context.Background(), "nobody", "some-password", "192.0.2.1"); err != ErrInvalidCredentials {
				t.Fatalf("unknown name: %v", err)
			}
			if len(*checks) != 1 {
				t.Fatalf("unknown name cost %d hash checks, want 1", len(*checks))
			}
			if got := mustParams(t, (*checks)[0]); got != tt.want {
				t.Errorf("dummy checked has %v, want %v (the most expensive stored)", got, tt.want)
			}
		})
	}
}

func TestDummyFollowsTheUsersFile(t *testing.T) {
	path := writeFile(t, usersYAML(userEntry("a", bcrypt4.dummyHash(), ""), userEntry("b", bcrypt6.dummyHash(), "")))
	users, err := LoadFileUsers(path, FileUsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(users, AuthenticatorOptions{Hash: HashOptions{BcryptCost: 4}})
	checks := countChecks(a)
	replaceFile(t, path, usersYAML(userEntry("a", bcrypt4.dummyHash(), "")), time.Now())
	if err := users.Reload(); err != nil {
		t.Fatal(err)
	}
	a.Authenticate(context.Background(), "nobody", "some-password", "")
	if len(*checks) != 1 || mustParams(t, (*checks)[0]) != bcrypt4 {
		t.Errorf("after the cost-6 user left the file the dummy should be cost 4; checks %v", *checks)
	}
}

// Stores that cannot list their hashes (bolt, PostgreSQL) raise the dummy
// to every more expensive hash a lookup shows; it never goes down.
func TestDummyFollowsHashesSeenOnLookups(t *testing.T) {
	store := mapStore{
		"cheap": {Username: "cheap", PasswordHash: bcrypt4.dummyHash()},
		"dear":  {Username: "dear", PasswordHash: bcrypt6.dummyHash()},
	}
	a := NewAuthenticator(store, AuthenticatorOptions{Hash: HashOptions{BcryptCost: 5}})
	checks := countChecks(a)
	unknown := func() hashParams {
		t.Helper()
		*checks = nil
		if _, err := a.Authenticate(context.Background(), "nobody", "some-password", ""); err != ErrInvalidCredentials {
			t.Fatal(err)
		}
		if len(*checks) != 1 {
			t.Fatalf("unknown name cost %d hash checks, want 1", len(*checks))
		}
		return mustParams(t, (*checks)[0])
	}
	if got := unknown(); got != (hashParams{alg: HashBcrypt, bcryptCost: 5}) {
		t.Errorf("before any lookup the dummy is the configured cost: got %v", got)
	}
	a.Authenticate(context.Background(), "cheap", "wrong-password", "")
	if got := unknown(); got.bcryptCost != 5 {
		t.Errorf("a cheaper hash lowered the dummy to %v", got)
	}
	a.Authenticate(context.Background(), "dear", "wrong-password", "")
	if got := unknown(); got != bcrypt6 {
		t.Errorf("after seeing a cost-6 hash the dummy is %v, want cost 6", got)
	}
}

// Issue 15 point 3: an account without a usable hash answers like an
// unknown name: 401 (ErrInvalidCredentials) after a dummy check, counted by
// the throttle; never a store error.
func TestUnusableHashIsAnUnknownName(t *testing.T) {
	store := mapStore{}
	for _, h := range []string{"", "!", "*", "!$2a$04$gcb3g3TxkIn49WlKv.WfUuOX0uYBX88pV6zJe43LMHyBO7P3jXFZa", "md5" + "0123456789abcdef0123456789abcdef", "$1$salt$hash", "garbage", "$2a$04$short"} {
		store["u"+h] = User{Username: "u" + h, PasswordHash: h}
	}
	a := NewAuthenticator(store, AuthenticatorOptions{Hash: HashOptions{BcryptCost: 4}, Throttle: ThrottleOptions{PerUser: 100, PerAddress: 100}})
	checks := countChecks(a)
	for name := range store {
		*checks = nil
		_, err := a.Authenticate(context.Background(), name, "some-password", "")
		if err != ErrInvalidCredentials {
			t.Errorf("hash %q: %v, want ErrInvalidCredentials", name[1:], err)
		}
		if len(*checks) != 1 || mustParams(t, (*checks)[0]) != bcrypt4 {
			t.Errorf("hash %q: checks %d, want one dummy check", name[1:], len(*checks))
		}
	}
}

// Issue 15 point 3: names no store can hold are refused before any lookup
// or hash check, as a client error.
func TestMalformedLoginNames(t *testing.T) {
	looked := 0
	a := NewAuthenticator(lookupCounter{&looked}, AuthenticatorOptions{Hash: HashOptions{BcryptCost: 4}})
	checks := countChecks(a)
	for _, name := range []string{"bob\x00", "\x00", "b\xffob", "bob\n", "bob\r\nX-Admin: 1", "tab\there", "del\x7f", "c1\u0085", string([]byte{0xc3})} {
		if _, err := a.Authenticate(context.Background(), name, "some-password", ""); !errors.Is(err, ErrMalformedLoginName) {
			t.Errorf("name %q: %v, want ErrMalformedLoginName", name, err)
		}
	}
	if looked != 0 || len(*checks) != 0 {
		t.Errorf("malformed names caused %d lookups and %d hash checks, want none", looked, len(*checks))
	}
	for _, name := range []string{"marco", "José", "名前", "a b"} {
		if _, err := a.Authenticate(context.Background(), name, "some-password", ""); err != ErrInvalidCredentials {
			t.Errorf("name %q: %v, want ErrInvalidCredentials", name, err)
		}
	}
}

type lookupCounter struct{ n *int }

func (c lookupCounter) LookupUser(context.Context, string) (User, error) {
	*c.n++
	return User{}, ErrUserNotFound
}

// Users with a cheaper hash than the most expensive one stay faster than an
// unknown name: the operator is told at every load.
func TestUsersFileWarnsOfMixedHashCosts(t *testing.T) {
	var logs testkit.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	path := writeFile(t, usersYAML(userEntry("a", bcrypt4.dummyHash(), ""), userEntry("b", bcrypt4.dummyHash(), "")))
	f, err := LoadFileUsers(path, FileUsersOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "different parameters") {
		t.Errorf("one parameter set warned:\n%s", logs.String())
	}
	replaceFile(t, path, usersYAML(userEntry("a", bcrypt4.dummyHash(), ""), userEntry("b", bcrypt6.dummyHash(), "")), time.Now())
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "different parameters") || !strings.Contains(logs.String(), "parameter_sets=2") {
		t.Errorf("two parameter sets did not warn:\n%s", logs.String())
	}
}

// Issue 21 point 5: a wrong password for an account whose hash is cheaper
// than the dummy is also checked against the dummy, so the failure takes
// at least as long as an unknown name's; a success is not padded, and an
// account as costly as the dummy costs one check. Both kinds of store: the
// users file (the dummy is its most expensive hash) and a store without an
// inventory (the configured or most expensive seen parameters).
func TestCheapAccountFailureIsPadded(t *testing.T) {
	cheapHash, err := HashPassword("cheap-password", HashOptions{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	fileUsers, err := LoadFileUsers(writeFile(t, usersYAML(userEntry("cheap", cheapHash, ""), userEntry("dear", bcrypt6.dummyHash(), ""))), FileUsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stores := map[string]UserStore{
		"users file": fileUsers,
		"store without an inventory": mapStore{
			"cheap": {Username: "cheap", PasswordHash: cheapHash},
			"dear":  {Username: "dear", PasswordHash: bcrypt6.dummyHash()},
		},
	}
	for name, store := range stores {
		t.Run(name, func(t *testing.T) {
			a := NewAuthenticator(store, AuthenticatorOptions{Hash: HashOptions{BcryptCost: 6}, Throttle: ThrottleOptions{PerUser: 100, PerAddress: 100}})
			checks := countChecks(a)
			try := func(user, password string) []hashParams {
				t.Helper()
				*checks = nil
				a.Authenticate(context.Background(), user, password, "")
				var ps []hashParams
				for _, h := range *checks {
					ps = append(ps, mustParams(t, h))
				}
				return ps
			}
			for _, tc := range []struct {
				user, password string
				want           []hashParams
			}{
				{"nobody", "wrong-password", []hashParams{bcrypt6}},
				{"cheap", "wrong-password", []hashParams{bcrypt4, bcrypt6}}, // its own hash, then the dummy
				{"dear", "wrong-password", []hashParams{bcrypt6}},
				{"cheap", "cheap-password", []hashParams{bcrypt4}}, // a success is not padded
			} {
				if got := try(tc.user, tc.password); fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("%s with %s: checks %v, want %v", tc.user, tc.password, got, tc.want)
				}
			}
		})
	}
}

// The same measured, with real hashes of cost 4 and 10 (about 1 ms and 60
// ms): a wrong password for the cost-4 account takes at least half as long
// as an unknown name (before: about a fiftieth). Fastest of five each, a
// generous ratio, so a loaded machine does not make it flaky.
func TestCheapAccountFailureTakesAsLongAsUnknownName(t *testing.T) {
	if testing.Short() {
		t.Skip("timed: -short")
	}
	cheapHash, _ := HashPassword("cheap-password", HashOptions{BcryptCost: 4})
	dearHash, _ := HashPassword("dear-password", HashOptions{BcryptCost: 10})
	users, err := LoadFileUsers(writeFile(t, usersYAML(userEntry("cheap", cheapHash, ""), userEntry("dear", dearHash, ""))), FileUsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(users, AuthenticatorOptions{Hash: HashOptions{BcryptCost: 10}, Throttle: ThrottleOptions{PerUser: 100, PerAddress: 100}})
	fastest := func(user string) time.Duration {
		best := time.Duration(1<<63 - 1)
		for range 5 {
			start := time.Now()
			if _, err := a.Authenticate(context.Background(), user, "wrong-password", ""); err != ErrInvalidCredentials {
				t.Fatal(err)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	unknown, cheap := fastest("nobody"), fastest("cheap")
	t.Logf("fastest failed login of five: unknown name %s, cost-4 account %s", unknown, cheap)
	if cheap < unknown/2 {
		t.Errorf("a wrong password for the cost-4 account took %s, an unknown name %s: the account's existence shows", cheap, unknown)
	}
}
