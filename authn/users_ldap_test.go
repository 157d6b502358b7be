package authn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"tokengate/internal/testsvc"
)

// newLDAPStore opens a store on slapd's plain URL with the shipped
// directory's service account; edit changes the options first.
func newLDAPStore(t *testing.T, s *testsvc.Slapd, edit func(*LDAPUsersOptions)) (*LDAPUsers, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts := LDAPUsersOptions{
		URL:          s.URL,
		BindDN:       "cn=tokengate,ou=services,dc=example,dc=com",
		BindPassword: "service-secret",
		BaseDN:       "dc=example,dc=com",
		GroupsBaseDN: "ou=groups,dc=example,dc=com",
		Timeout:      2 * time.Second,
		DialTimeout:  2 * time.Second,
		Registerer:   reg,
	}
	if edit != nil {
		edit(&opts)
	}
	st, err := NewLDAPUsers(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st, reg
}

// ldapRequests counts the directory requests made so far (dials included).
func ldapRequests(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() == "tokengate_ldap_request_duration_seconds" {
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}

func ldapCounter(t *testing.T, reg *prometheus.Registry, name, op string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if op == "" || labelIs(m, "op", op) {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}

func labelIs(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func TestLDAPCheckPassword(t *testing.T) {
	s := testsvc.StartSlapd(t)
	st, reg := newLDAPStore(t, s, nil)
	ctx := context.Background()
	tests := []struct {
		name, login, password string
		want                  User
		err                   error
	}{
		{"right password", "alice", "alice-password-1", User{ID: "alice", Username: "alice", Groups: []string{"finance", "ops"}}, nil},
		{"case folded", "ALICE", "alice-password-1", User{ID: "alice", Username: "alice", Groups: []string{"finance", "ops"}}, nil},
		{"no groups", "carol", "carol-password-1", User{ID: "carol", Username: "carol"}, nil},
		{"wrong password", "alice", "bob-password-1", User{}, ErrInvalidCredentials},
		{"unknown name", "mallory", "alice-password-1", User{}, ErrUserNotFound},
		{"duplicate entry, right password", "dave", "dave-password-1", User{}, ErrUserNotFound},
		{"duplicate entry, other password", "dave", "dave-password-2", User{}, ErrUserNotFound},
		{"metacharacters in a real name", "j*ne", "jane-password-1", User{ID: "j*ne", Username: "j*ne"}, nil},
		// Injection attempts: each would reach uid=admin (or another
		// entry) through an unescaped filter.
		{"star", "*", "admin-password-1", User{}, ErrUserNotFound},
		{"prefix star", "adm*", "admin-password-1", User{}, ErrUserNotFound},
		{"filter break-out", "admin)(|(uid=*", "admin-password-1", User{}, ErrUserNotFound},
		{"filter break-out closing", "*)(uid=admin", "admin-password-1", User{}, ErrUserNotFound},
		{"escaped star", `\2a`, "admin-password-1", User{}, ErrUserNotFound},
		{"escape of a real name", `j\2ane`, "jane-password-1", User{}, ErrUserNotFound},
		{"NUL", "admin\x00", "admin-password-1", User{}, ErrUserNotFound},
		{"NUL then more", "admin\x00)(uid=*", "admin-password-1", User{}, ErrUserNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := st.CheckPassword(ctx, tt.login, tt.password)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("CheckPassword(%q) error = %v, want %v", tt.login, err, tt.err)
			}
			if !slices.Equal(u.Groups, tt.want.Groups) || u.ID != tt.want.ID || u.Username != tt.want.Username || u.PasswordHash != "" {
				t.Errorf("CheckPassword(%q) = %+v, want %+v", tt.login, u, tt.want)
			}
		})
	}
	// The admin entry's password was offered many times under every
	// spelling above: none of them was a bind as admin, so none counted.
	if got := ldapCounter(t, reg, "tokengate_ldap_errors_total", ""); got != 0 {
		t.Errorf("directory errors = %v, want 0", got)
	}
}

// An empty password never reaches the directory: this slapd takes a name
// with an empty password as a successful unauthenticated bind.
func TestLDAPEmptyPasswordRefusedBeforeAnyRequest(t *testing.T) {
	s := testsvc.StartSlapd(t)
	st, reg := newLDAPStore(t, s, nil)
	// Proof that the server would have said yes.
	c := s.Admin(t)
	if _, err := c.SimpleBind(&ldap.SimpleBindRequest{Username: "uid=alice,ou=people,dc=example,dc=com", AllowEmptyPassword: true}); err != nil {
		t.Fatalf("this slapd refuses unauthenticated binds (%v): the test would prove nothing", err)
	}
	_, err := st.CheckPassword(context.Background(), "alice", "")
	if !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("empty password: %v, want ErrInvalidCredentials", err)
	}
	if n := ldapRequests(t, reg); n != 0 {
		t.Errorf("%d directory requests for an empty password, want 0", n)
	}
}

func TestLDAPGroups(t *testing.T) {
	s := testsvc.StartSlapd(t)
	s.AddLDIF(t, `dn: ou=elsewhere-groups,dc=example,dc=com
objectClass: organizationalUnit
ou: elsewhere-groups

dn: cn=outside,ou=elsewhere-groups,dc=example,dc=com
objectClass: groupOfNames
cn: outside
member: uid=alice,ou=people,dc=example,dc=com

dn: cn=Team Blue,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: Team Blue
description: blue
member: cn=Smith\, John (IT),ou=people,dc=example,dc=com
`)
	tests := []struct {
		name     string
		edit     func(*LDAPUsersOptions)
		login    string
		password string
		want     []string
	}{
		{"memberOf under groups_base_dn", nil, "alice", "alice-password-1", []string{"finance", "ops"}},
		{"memberOf anywhere", func(o *LDAPUsersOptions) { o.GroupsBaseDN = "" }, "alice", "alice-password-1", []string{"finance", "ops", "outside"}},
		{"memberOf, name from another attribute", func(o *LDAPUsersOptions) { o.GroupNameAttribute = "description" }, "jsmith", "jsmith-password-1", []string{"blue"}},
		{"group search", func(o *LDAPUsersOptions) { o.GroupFilter = "(member={dn})" }, "alice", "alice-password-1", []string{"finance", "ops"}},
		// The DN holds a comma (escaped) and parentheses: both must be
		// escaped for the filter or the search fails or finds nothing.
		{"group search, DN with metacharacters", func(o *LDAPUsersOptions) { o.GroupFilter = "(&(objectClass=groupOfNames)(member={dn}))" }, "jsmith", "jsmith-password-1", []string{"Team Blue", "finance"}},
		{"group search by username", func(o *LDAPUsersOptions) { o.GroupFilter = "(cn={username})" }, "carol", "carol-password-1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := newLDAPStore(t, s, tt.edit)
			u, err := st.CheckPassword(context.Background(), tt.login, tt.password)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(u.Groups, tt.want) {
				t.Errorf("groups = %q, want %q", u.Groups, tt.want)
			}
		})
	}
}

// The identity refresh (LookupUserByID) sees group changes, deletions and
// accounts the user filter no longer matches (disabled).
func TestLDAPLookupUserByIDFollowsTheDirectory(t *testing.T) {
	s := testsvc.StartSlapd(t)
	st, _ := newLDAPStore(t, s, func(o *LDAPUsersOptions) {
		o.UserFilter = "(&(uid={username})(!(description=disabled)))"
	})
	ctx := context.Background()
	u, err := st.LookupUserByID(ctx, "alice")
	if err != nil || !slices.Equal(u.Groups, []string{"finance", "ops"}) || u.Username != "alice" {
		t.Fatalf("alice = %+v, %v", u, err)
	}
	s.Leavers(t)
	if _, err := st.LookupUserByID(ctx, "carol"); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("disabled carol: %v, want ErrUserNotFound", err)
	}
	if _, err := st.CheckPassword(ctx, "carol", "carol-password-1"); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("disabled carol signing in: %v, want ErrUserNotFound", err)
	}
	// Ids with filter metacharacters are escaped too.
	for _, id := range []string{"*", "alice)(uid=*", "dave"} {
		if _, err := st.LookupUserByID(ctx, id); !errors.Is(err, ErrUserNotFound) {
			t.Errorf("LookupUserByID(%q): %v, want ErrUserNotFound", id, err)
		}
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestLDAPEntryUUIDAsID(t *testing.T) {
	s := testsvc.StartSlapd(t)
	st, _ := newLDAPStore(t, s, func(o *LDAPUsersOptions) { o.IDAttribute = "entryUUID" })
	ctx := context.Background()
	u, err := st.CheckPassword(ctx, "alice", "alice-password-1")
	if err != nil {
		t.Fatal(err)
	}
	if !uuidRE.MatchString(u.ID) || u.Username != "alice" {
		t.Fatalf("alice = %+v, want a UUID id", u)
	}
	again, err := st.LookupUserByID(ctx, u.ID)
	if err != nil || again.Username != "alice" || again.ID != u.ID {
		t.Fatalf("LookupUserByID(%s) = %+v, %v", u.ID, again, err)
	}
	if _, err := st.LookupUserByID(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("unknown UUID: %v", err)
	}
}

// objectGUID's text form is Microsoft's: the first three fields
// little-endian (the vector is from Microsoft's documentation of the
// objectGUID attribute's string form).
func TestGUIDText(t *testing.T) {
	raw := []byte{0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	s, ok := formatGUID(raw)
	if !ok || s != "00112233-4455-6677-8899-aabbccddeeff" {
		t.Fatalf("formatGUID = %q, %v", s, ok)
	}
	back, ok := parseGUID("00112233-4455-6677-8899-AABBCCDDEEFF")
	if !ok || !slices.Equal(back, raw) {
		t.Fatalf("parseGUID = %x, %v", back, ok)
	}
	for _, bad := range []string{"", "00112233445566778899aabbccddeeff", "0011223-34455-6677-8899-aabbccddeeff", "zz112233-4455-6677-8899-aabbccddeeff"} {
		if _, ok := parseGUID(bad); ok {
			t.Errorf("parseGUID(%q) accepted", bad)
		}
	}
	if _, ok := formatGUID(raw[:15]); ok {
		t.Error("formatGUID accepted 15 bytes")
	}
	st := &LDAPUsers{idAttr: "objectGUID"}
	v, ok := st.idFilterValue("00112233-4455-6677-8899-aabbccddeeff")
	if !ok || v != `\33\22\11\00\55\44\77\66\88\99\aa\bb\cc\dd\ee\ff` {
		t.Errorf("objectGUID assertion = %q", v)
	}
	if _, ok := st.idFilterValue("*"); ok {
		t.Error("a non-GUID id made an objectGUID assertion")
	}
}

// Active Directory's filters cannot run on slapd; what is sent is checked.
func TestLDAPActiveDirectoryPreset(t *testing.T) {
	st, err := NewLDAPUsers(LDAPUsersOptions{URL: "ldaps://dc.example.com", BindDN: "cn=x", BindPassword: "p", BaseDN: "dc=example,dc=com",
		Preset: LDAPPresetActiveDirectory, NestedGroups: true, IDAttribute: "objectGUID"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "(&(objectCategory=person)(objectClass=user)(sAMAccountName={username})(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"; st.userFilter != want {
		t.Errorf("user filter %s", st.userFilter)
	}
	if st.nameAttr != "sAMAccountName" || st.idAttr != "objectGUID" || st.groupFilter != "(member:1.2.840.113556.1.4.1941:={dn})" {
		t.Errorf("AD preset: name %s id %s groups %s", st.nameAttr, st.idAttr, st.groupFilter)
	}
	if st.tls.ServerName != "dc.example.com" || st.addr != "dc.example.com:636" {
		t.Errorf("tls server name %q, addr %s", st.tls.ServerName, st.addr)
	}
}

func TestNewLDAPUsersRefusesBadOptions(t *testing.T) {
	good := LDAPUsersOptions{URL: "ldap://127.0.0.1", BindDN: "cn=x", BindPassword: "p", BaseDN: "dc=x"}
	for name, edit := range map[string]func(*LDAPUsersOptions){
		"scheme":            func(o *LDAPUsersOptions) { o.URL = "http://x" },
		"start_tls + ldaps": func(o *LDAPUsersOptions) { o.URL = "ldaps://x"; o.StartTLS = true },
		"no bind password":  func(o *LDAPUsersOptions) { o.BindPassword = "" },
		"no base":           func(o *LDAPUsersOptions) { o.BaseDN = "" },
		"filter no name":    func(o *LDAPUsersOptions) { o.UserFilter = "(uid=alice)" },
		"filter syntax":     func(o *LDAPUsersOptions) { o.UserFilter = "(uid={username}" },
		"group filter":      func(o *LDAPUsersOptions) { o.GroupFilter = "member={dn})" },
		"preset":            func(o *LDAPUsersOptions) { o.Preset = "novell" },
	} {
		o := good
		edit(&o)
		if _, err := NewLDAPUsers(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewLDAPUsers(good); err != nil {
		t.Error(err)
	}
}

func caPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in", file)
	}
	return p
}

func TestLDAPTransportSecurity(t *testing.T) {
	s := testsvc.StartSlapd(t)
	client, err := tls.LoadX509KeyPair(s.ClientCertFile, s.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		url      string
		startTLS bool
		tls      *tls.Config
		ok       bool
	}{
		{"ldaps", s.LDAPSURL, false, &tls.Config{RootCAs: caPool(t, s.CAFile)}, true},
		{"ldaps, server name", s.LDAPSURL, false, &tls.Config{RootCAs: caPool(t, s.CAFile), ServerName: "localhost"}, true},
		{"ldaps, client certificate", s.LDAPSURL, false, &tls.Config{RootCAs: caPool(t, s.CAFile), Certificates: []tls.Certificate{client}}, true},
		{"ldaps, wrong CA", s.LDAPSURL, false, &tls.Config{RootCAs: caPool(t, s.WrongCAFile)}, false},
		{"ldaps, system roots", s.LDAPSURL, false, nil, false},
		{"ldaps, wrong server name", s.LDAPSURL, false, &tls.Config{RootCAs: caPool(t, s.CAFile), ServerName: "ldap.example.org"}, false},
		{"StartTLS", s.URL, true, &tls.Config{RootCAs: caPool(t, s.CAFile)}, true},
		{"StartTLS, wrong CA", s.URL, true, &tls.Config{RootCAs: caPool(t, s.WrongCAFile)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, reg := newLDAPStore(t, s, func(o *LDAPUsersOptions) { o.URL, o.StartTLS, o.TLS = tt.url, tt.startTLS, tt.tls })
			u, err := st.CheckPassword(context.Background(), "alice", "alice-password-1")
			if tt.ok {
				if err != nil || u.ID != "alice" {
					t.Fatalf("= %+v, %v", u, err)
				}
				return
			}
			if !errors.Is(err, ErrUsersUnavailable) {
				t.Fatalf("err = %v, want ErrUsersUnavailable", err)
			}
			if n := ldapRequests(t, reg); n != 1 { // the dial alone: no password was sent
				t.Errorf("%d requests, want the refused dial only", n)
			}
			if err := st.Ping(context.Background()); err == nil {
				t.Error("Ping succeeded over a refused certificate")
			}
		})
	}
}

// A directory that stops answering (SIGSTOP) or dies fails closed within
// the timeout, and the store recovers when it is back.
func TestLDAPOutage(t *testing.T) {
	s := testsvc.StartSlapd(t)
	st, reg := newLDAPStore(t, s, func(o *LDAPUsersOptions) { o.Timeout = 300 * time.Millisecond; o.DialTimeout = 300 * time.Millisecond })
	ctx := context.Background()
	if _, err := st.CheckPassword(ctx, "alice", "alice-password-1"); err != nil {
		t.Fatal(err)
	}
	s.Pause(t)
	for _, login := range []string{"alice", "mallory"} {
		start := time.Now()
		_, err := st.CheckPassword(ctx, login, "alice-password-1")
		if !errors.Is(err, ErrUsersUnavailable) {
			t.Fatalf("paused directory, %s: %v, want ErrUsersUnavailable", login, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("paused directory answered after %s", d)
		}
	}
	if _, err := st.LookupUserByID(ctx, "alice"); !errors.Is(err, ErrUsersUnavailable) {
		t.Errorf("LookupUserByID on a paused directory: %v", err)
	}
	s.Resume()
	s.Stop()
	if _, err := st.CheckPassword(ctx, "alice", "alice-password-1"); !errors.Is(err, ErrUsersUnavailable) {
		t.Fatalf("killed directory: %v, want ErrUsersUnavailable", err)
	}
	if ldapCounter(t, reg, "tokengate_ldap_errors_total", "") == 0 {
		t.Error("no directory errors counted")
	}
	s.Restart(t)
	if _, err := st.CheckPassword(ctx, "alice", "alice-password-1"); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

// Pooled connections the server closed are replaced without failing a
// login, and the pool never holds more than MaxConns.
func TestLDAPPoolReusesAndReplaces(t *testing.T) {
	s := testsvc.StartSlapd(t)
	st, reg := newLDAPStore(t, s, func(o *LDAPUsersOptions) { o.MaxConns = 2 })
	ctx := context.Background()
	for range 5 {
		if _, err := st.CheckPassword(ctx, "alice", "alice-password-1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := dials(t, reg); got != 1 {
		t.Errorf("%v dials for five sequential logins, want 1 (reuse)", got)
	}
	s.Restart(t) // every pooled connection is now dead
	if _, err := st.CheckPassword(ctx, "alice", "alice-password-1"); err != nil {
		t.Fatalf("first login after the server restarted: %v", err)
	}
	done := make(chan error, 8)
	for range 8 {
		go func() { _, err := st.CheckPassword(ctx, "bob", "bob-password-1"); done <- err }()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	st.mu.Lock()
	idle := len(st.idle)
	st.mu.Unlock()
	if idle > 2 {
		t.Errorf("%d idle connections, MaxConns 2", idle)
	}
}

func dials(t *testing.T, reg *prometheus.Registry) uint64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "tokengate_ldap_request_duration_seconds" {
			for _, m := range mf.GetMetric() {
				if labelIs(m, "op", "dial") {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// A referral under the base is not followed: the search still answers,
// the reference is counted and nothing dials the referred server.
func TestLDAPReferralsNotFollowed(t *testing.T) {
	s := testsvc.StartSlapd(t)
	st, reg := newLDAPStore(t, s, nil)
	if _, err := st.CheckPassword(context.Background(), "alice", "alice-password-1"); err != nil {
		t.Fatal(err)
	}
	if got := ldapCounter(t, reg, "tokengate_ldap_referrals_ignored_total", ""); got < 1 {
		t.Errorf("referrals ignored = %v, want at least 1 (the directory holds one under the base)", got)
	}
	if got := dials(t, reg); got != 1 {
		t.Errorf("%d dials, want 1", got)
	}
}

// The Authenticator asks a PasswordChecker store, after the malformed-name
// check and the throttle: a throttled or malformed attempt costs the
// directory nothing.
func TestAuthenticatorWithLDAP(t *testing.T) {
	s := testsvc.StartSlapd(t)
	st, reg := newLDAPStore(t, s, nil)
	a := NewAuthenticator(st, AuthenticatorOptions{Throttle: ThrottleOptions{PerUser: 2, Window: time.Minute}})
	ctx := context.Background()
	u, err := a.Authenticate(ctx, "alice", "alice-password-1", "192.0.2.1")
	if err != nil || u.ID != "alice" || !slices.Equal(u.Groups, []string{"finance", "ops"}) {
		t.Fatalf("Authenticate = %+v, %v", u, err)
	}
	if _, err := a.Authenticate(ctx, "dave", "dave-password-1", "192.0.2.1"); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("duplicate entry: %v, want ErrInvalidCredentials", err)
	}
	if _, err := a.Authenticate(ctx, "admin)(|(uid=*", "admin-password-1", "192.0.2.1"); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("injection: %v, want ErrInvalidCredentials", err)
	}
	before := ldapRequests(t, reg)
	if _, err := a.Authenticate(ctx, "admin\x00", "admin-password-1", "192.0.2.1"); !errors.Is(err, ErrMalformedLoginName) {
		t.Errorf("NUL in the name: %v, want ErrMalformedLoginName", err)
	}
	if _, err := a.Authenticate(ctx, "bob", "", "192.0.2.1"); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("empty password: %v", err)
	}
	if n := ldapRequests(t, reg) - before; n != 0 {
		t.Errorf("%d directory requests for a malformed name and an empty password, want 0", n)
	}
	// The empty password above was bob's first failure; this is the second.
	if _, err := a.Authenticate(ctx, "bob", "wrong-password", "192.0.2.1"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	before = ldapRequests(t, reg)
	if _, err := a.Authenticate(ctx, "bob", "bob-password-1", "192.0.2.1"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("past the budget: %v, want ErrThrottled", err)
	}
	if n := ldapRequests(t, reg) - before; n != 0 {
		t.Errorf("%d directory requests for a throttled attempt, want 0", n)
	}
	s.Stop()
	if _, err := a.Authenticate(ctx, "carol", "carol-password-1", "192.0.2.1"); !errors.Is(err, ErrUsersUnavailable) {
		t.Errorf("directory down: %v, want ErrUsersUnavailable", err)
	}
}

// Identities over the directory: a user removed from a group, a disabled
// and a deleted user are seen within the refresh interval without a new
// sign-in; during an outage the last answer serves until max_stale, then
// the answer is ErrUsersUnavailable.
func TestIdentitiesOverLDAP(t *testing.T) {
	s := testsvc.StartSlapd(t)
	st, _ := newLDAPStore(t, s, func(o *LDAPUsersOptions) {
		o.UserFilter = "(&(uid={username})(!(description=disabled)))"
		o.Timeout, o.DialTimeout = 300*time.Millisecond, 300*time.Millisecond
	})
	clock := newTestClock()
	ids, err := NewIdentities(st, IdentitiesOptions{RefreshInterval: time.Minute, MaxStale: 5 * time.Minute, Now: clock.Now, RetryInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ids.Close() })
	ctx := context.Background()
	for _, id := range []string{"alice", "bob", "carol"} {
		if _, err := ids.Identity(ctx, id); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	s.Leavers(t)
	// Within the interval the cached answers stand...
	if u, err := ids.Identity(ctx, "alice"); err != nil || !slices.Equal(u.Groups, []string{"finance", "ops"}) {
		t.Fatalf("alice before the interval: %+v %v", u, err)
	}
	// ...past it, the directory's.
	clock.Advance(time.Minute + time.Second)
	if u, err := ids.Identity(ctx, "alice"); err != nil || !slices.Equal(u.Groups, []string{"finance"}) {
		t.Errorf("alice after leaving ops: %+v %v", u, err)
	}
	for _, id := range []string{"bob", "carol"} {
		if _, err := ids.Identity(ctx, id); !errors.Is(err, ErrUserNotFound) {
			t.Errorf("%s (deleted or disabled): %v, want ErrUserNotFound", id, err)
		}
	}
	s.Stop()
	clock.Advance(2 * time.Minute)
	if u, err := ids.Identity(ctx, "alice"); err != nil || !slices.Equal(u.Groups, []string{"finance"}) {
		t.Errorf("alice during an outage, within max_stale: %+v %v", u, err)
	}
	clock.Advance(4 * time.Minute)
	if _, err := ids.Identity(ctx, "alice"); !errors.Is(err, ErrUsersUnavailable) {
		t.Errorf("alice past max_stale: %v, want ErrUsersUnavailable", err)
	}
}

// A wrong password and an unknown name cost the directory the same number
// of requests (the unknown name's "who am I" stands for the bind), so the
// time does not tell them apart.
func TestLDAPUnknownNameCostsWhatAWrongPasswordCosts(t *testing.T) {
	s := testsvc.StartSlapd(t)
	st, reg := newLDAPStore(t, s, nil)
	ctx := context.Background()
	cost := func(user string) uint64 {
		t.Helper()
		// Start from the same state: one pooled connection bound as the
		// service account (a success leaves it so).
		if _, err := st.CheckPassword(ctx, "carol", "carol-password-1"); err != nil {
			t.Fatal(err)
		}
		before := ldapRequests(t, reg)
		if _, err := st.CheckPassword(ctx, user, "wrong-password"); err == nil {
			t.Fatal("logged in with a wrong password")
		}
		return ldapRequests(t, reg) - before
	}
	known, unknown := cost("alice"), cost("mallory")
	if known != unknown || known < 2 {
		t.Errorf("requests: wrong password %d, unknown name %d; want equal", known, unknown)
	}
}

// Any refusal the directory sends to a user's bind is a wrong password to
// the client (a locked account must not answer 503, which would say the
// name exists); only getting no answer is an outage.
func TestLDAPUserBindOutcome(t *testing.T) {
	st := &LDAPUsers{log: slog.New(slog.DiscardHandler)}
	for _, tt := range []struct {
		err  error
		want error
	}{
		{nil, nil},
		{ldap.NewError(ldap.LDAPResultInvalidCredentials, errors.New("data 52e")), ErrInvalidCredentials},
		{ldap.NewError(ldap.LDAPResultUnwillingToPerform, errors.New("account locked")), ErrInvalidCredentials},
		{ldap.NewError(ldap.LDAPResultConstraintViolation, errors.New("password expired")), ErrInvalidCredentials},
		{ldap.NewError(ldap.ErrorNetwork, errors.New("ldap: connection timed out")), nil},
		{errors.New("read: connection reset"), nil},
	} {
		got := st.userBindOutcome(tt.err)
		if tt.want != nil && !errors.Is(got, tt.want) || tt.want == nil && tt.err != nil && (got == nil || errors.Is(got, ErrInvalidCredentials)) {
			t.Errorf("userBindOutcome(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// A login name longer than any directory holds is refused without a request.
func TestLDAPLongNameNoRequest(t *testing.T) {
	s := testsvc.StartSlapd(t)
	st, reg := newLDAPStore(t, s, nil)
	if _, err := st.CheckPassword(context.Background(), strings.Repeat("a", ldapMaxName+1), "x"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("long name: %v", err)
	}
	if n := ldapRequests(t, reg); n != 0 {
		t.Errorf("%d requests for an over-long name", n)
	}
}
