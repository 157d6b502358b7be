package authn

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"tokengate/internal/testsvc"
)

func TestCheckGroupName(t *testing.T) {
	for _, ok := range []string{"ops", "Finance Team", "équipe", "a-b_c.d", "cn=ops"} {
		if err := CheckGroupName(ok); err != nil {
			t.Errorf("CheckGroupName(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "a,b", "ops\n", "o\x00ps", " ops", "ops ", "\xff", strings.Repeat("g", MaxGroupNameBytes+1), "a\u0085b"} {
		if err := CheckGroupName(bad); err == nil {
			t.Errorf("CheckGroupName(%q) = nil, want an error", bad)
		}
	}
}

func TestCleanAndSplitGroups(t *testing.T) {
	got, dropped := cleanGroups([]string{"ops", "", "ops", "a,b", "finance", "bad\n"})
	if !slices.Equal(got, []string{"ops", "finance"}) || !slices.Equal(dropped, []string{"a,b", "bad\n"}) {
		t.Fatalf("cleanGroups = %q dropped %q", got, dropped)
	}
	if got, _ := cleanGroups(nil); got != nil {
		t.Fatalf("cleanGroups(nil) = %q, want nil", got)
	}
	many := make([]string, MaxGroups+5)
	for i := range many {
		many[i] = "g" + strings.Repeat("x", i)
	}
	if got, dropped := cleanGroups(many); len(got) != MaxGroups || len(dropped) != 5 {
		t.Fatalf("cleanGroups kept %d dropped %d, want %d and 5", len(got), len(dropped), MaxGroups)
	}
	if got := splitGroups(" ops, finance ,,team a,"); !slices.Equal(got, []string{"ops", "finance", "team a"}) {
		t.Fatalf("splitGroups = %q", got)
	}
	if got := splitGroups(""); got != nil {
		t.Fatalf("splitGroups(\"\") = %q, want nil", got)
	}
}

func TestFileUsersGroups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	body := usersYAML(
		userEntry("marco", marcoHash, "")+"    groups: [ops, finance]\n",
		userEntry("ada", adaHash, "user-0001")+"    groups:\n      - reports\n",
		userEntry("nogroups", marcoHash, "")+"    groups: []\n",
		userEntry("nullgroups", marcoHash, "")+"    groups:\n",
		userEntry("plain", marcoHash, ""),
	)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := LoadFileUsers(path, FileUsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tt := range []struct {
		name, id string
		want     []string
	}{
		{"marco", "marco", []string{"ops", "finance"}},
		{"ada", "user-0001", []string{"reports"}},
		{"nogroups", "nogroups", nil},
		{"nullgroups", "nullgroups", nil},
		{"plain", "plain", nil},
	} {
		u, err := f.LookupUser(ctx, tt.name)
		if err != nil || !slices.Equal(u.Groups, tt.want) {
			t.Errorf("LookupUser(%q) groups = %q, %v; want %q", tt.name, u.Groups, err, tt.want)
		}
		u, err = f.LookupUserByID(ctx, tt.id)
		if err != nil || !slices.Equal(u.Groups, tt.want) {
			t.Errorf("LookupUserByID(%q) groups = %q, %v; want %q", tt.id, u.Groups, err, tt.want)
		}
	}
	if got := f.Groups(); !slices.Equal(got, []string{"finance", "ops", "reports"}) {
		t.Errorf("Groups() = %q, want every group of the file, sorted", got)
	}
}

func TestFileUsersGroupsRefused(t *testing.T) {
	for _, tt := range []struct {
		name, groups string
		want         []string // substrings of the error
	}{
		{"scalar", "    groups: ops\n", []string{`users[1] ("bad"): groups (line 7): want a list`}},
		{"empty name", "    groups: [ops, \"\"]\n", []string{`users[1] ("bad"): groups[1] (line 7): "" is empty`}},
		{"comma", "    groups:\n      - ops\n      - \"a,b\"\n", []string{`groups[1] (line 9): "a,b" contains a comma`}},
		{"control", "    groups: [\"o\\tps\"]\n", []string{`groups[0] (line 7): "o\tps" contains a control character`}},
		{"null item", "    groups: [ops, ~]\n", []string{`groups[1] (line 7): want a group name`}},
		{"nested", "    groups: [[ops]]\n", []string{`groups[0] (line 7): want a group name`}},
		{"twice", "    groups: [ops, finance, ops]\n", []string{`groups[2] (line 7): "ops" is listed twice (also groups[0])`}},
		{"spaces", "    groups: [\" ops\"]\n", []string{`starts or ends with a space`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := usersYAML(userEntry("good", marcoHash, "")+"    groups: [ops]\n", userEntry("bad", marcoHash, "")+tt.groups)
			_, err := parseUsers([]byte(data))
			if err == nil {
				t.Fatalf("parseUsers accepted:\n%s", data)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), marcoHash) {
				t.Errorf("error echoes a password hash: %v", err)
			}
		})
	}
}

// A reload that changes groups swaps them in; one with a bad group keeps
// the previous users (and their groups).
func TestFileUsersReloadGroups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(usersYAML(userEntry("marco", marcoHash, "") + "    groups: [ops]\n"))
	f, err := LoadFileUsers(path, FileUsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	write(usersYAML(userEntry("marco", marcoHash, "") + "    groups: [finance]\n"))
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	u, _ := f.LookupUserByID(context.Background(), "marco")
	if !slices.Equal(u.Groups, []string{"finance"}) {
		t.Fatalf("after reload groups = %q", u.Groups)
	}
	write(usersYAML(userEntry("marco", marcoHash, "") + "    groups: [\"a,b\"]\n"))
	if err := f.Reload(); err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("reload of a bad group = %v, want an error naming line 4", err)
	}
	u, _ = f.LookupUserByID(context.Background(), "marco")
	if !slices.Equal(u.Groups, []string{"finance"}) {
		t.Fatalf("after a refused reload groups = %q, want the previous [finance]", u.Groups)
	}
}

func TestBoltUsersGroups(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users.db")
	s := openTestBolt(t, path)
	if _, err := s.CreateUser(ctx, User{ID: "u1", Username: "alice", PasswordHash: marcoHash, Groups: []string{"ops", "finance"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, User{Username: "bob", PasswordHash: marcoHash}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"ops", ""}, {"a,b"}, {"x\x00"}} {
		if _, err := s.CreateUser(ctx, User{Username: "eve", PasswordHash: marcoHash, Groups: bad}); err == nil {
			t.Fatalf("CreateUser with groups %q accepted", bad)
		}
	}
	check := func(s *BoltUsers) {
		t.Helper()
		for _, tt := range []struct {
			name, id string
			want     []string
		}{{"alice", "u1", []string{"ops", "finance"}}, {"bob", "bob", nil}} {
			u, err := s.LookupUser(ctx, tt.name)
			if err != nil || !slices.Equal(u.Groups, tt.want) {
				t.Errorf("LookupUser(%q) groups = %q, %v; want %q", tt.name, u.Groups, err, tt.want)
			}
			u, err = s.LookupUserByID(ctx, tt.id)
			if err != nil || !slices.Equal(u.Groups, tt.want) {
				t.Errorf("LookupUserByID(%q) groups = %q, %v; want %q", tt.id, u.Groups, err, tt.want)
			}
		}
	}
	check(s)
	// Identities reads bolt through its cache.
	c, err := NewIdentities(s, IdentitiesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.Identity(ctx, "u1")
	c.Close()
	if err != nil || !slices.Equal(u.Groups, []string{"ops", "finance"}) || u.PasswordHash != "" {
		t.Fatalf("Identity over bolt = %+v, %v", u, err)
	}
	s.Close()
	check(openTestBolt(t, path)) // kept across restarts
}

func TestRegistrarDefaultGroups(t *testing.T) {
	ctx := context.Background()
	stores := map[string]UserCreator{"bolt": openTestBolt(t, filepath.Join(t.TempDir(), "users.db"))}
	if url := pgURLIfAvailable(t); url != "" {
		stores["postgres"] = openTestPostgres(t, PostgresUsersOptions{URL: url, Table: pgTestTable(t, url, "tg_defgroups"), Migrate: true})
	}
	for name, store := range stores {
		t.Run(name, func(t *testing.T) {
			r := NewRegistrar(store, UserPolicy{}, HashOptions{BcryptCost: 4})
			r.DefaultGroups = []string{"members", "readers"}
			u, err := r.Register(ctx, "newcomer", "correct horse battery")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(u.Groups, []string{"members", "readers"}) {
				t.Fatalf("Register returned groups %q", u.Groups)
			}
			stored, err := store.(UserStore).LookupUser(ctx, "newcomer")
			if err != nil || !slices.Equal(stored.Groups, []string{"members", "readers"}) {
				t.Fatalf("stored groups = %q, %v", stored.Groups, err)
			}
			r.DefaultGroups = nil
			if _, err := r.Register(ctx, "plain", "correct horse battery"); err != nil {
				t.Fatal(err)
			}
			if stored, _ := store.(UserStore).LookupUser(ctx, "plain"); stored.Groups != nil {
				t.Fatalf("without default groups: %q", stored.Groups)
			}
		})
	}
}

// pgURLIfAvailable is testsvc.PostgresURL for a test that also has a part
// without PostgreSQL: "" when it is not reachable and not required.
func pgURLIfAvailable(t *testing.T) string {
	var url string
	t.Run("postgres available", func(t *testing.T) { url = testsvc.PostgresURL(t) })
	return url
}

// Whatever a users file holds, a loaded user's groups are usable names,
// each once.
func FuzzParseUsersGroups(f *testing.F) {
	f.Add(usersYAML(userEntry("marco", marcoHash, "") + "    groups: [ops, finance]\n"))
	f.Add(usersYAML(userEntry("marco", marcoHash, "") + "    groups:\n      - \"a,b\"\n"))
	f.Add(usersYAML(userEntry("marco", marcoHash, "") + "    groups: [\"\\u0085\", ~, [x], {a: b}]\n"))
	f.Add(usersYAML(userEntry("marco", marcoHash, "") + "    groups: ops\n"))
	f.Fuzz(func(t *testing.T, data string) {
		set, err := parseUsers([]byte(data))
		if err != nil {
			if strings.Contains(err.Error(), marcoHash) {
				t.Fatalf("error echoes a hash: %v", err)
			}
			return
		}
		for _, u := range set.byName {
			seen := map[string]bool{}
			if len(u.Groups) > MaxGroups {
				t.Fatalf("%d groups", len(u.Groups))
			}
			for _, g := range u.Groups {
				if err := CheckGroupName(g); err != nil || seen[g] {
					t.Fatalf("loaded group %q (%v, twice: %v)", g, err, seen[g])
				}
				seen[g] = true
			}
		}
	})
}
