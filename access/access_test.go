package access

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

// example is the README's worked example plus a few conditions of each kind.
var example = Config{
	PublicPaths: []string{"/healthz", "/static/"},
	Rules: []Rule{
		{Name: "admin", Paths: []string{"/admin"}, Groups: []string{"ops"}},
		{Name: "reports", Paths: []string{"/reports"}, Groups: []string{"finance", "ops"}, Users: []string{"auditor"}},
		{Name: "landing", Paths: []string{"=/"}, Policy: "public"},
		{Name: "no-delete", Methods: []string{"DELETE"}, Groups: []string{"ops"}},
		{Name: "internal", Hosts: []string{".internal.example.com"}, Policy: "deny"},
		{Name: "office", Paths: []string{"/office"}, Networks: []string{"10.0.0.0/8"}, Policy: "public"},
		{Name: "reads", Paths: []string{"/docs"}, Methods: []string{"GET"}, Policy: "public"},
		{Name: "old", Paths: []string{"/old"}, Policy: "deny"},
	},
}

var (
	anonymous = Identity{}
	alice     = Identity{Authenticated: true, ID: "alice", Groups: []string{"ops"}}
	bob       = Identity{Authenticated: true, ID: "bob", Groups: []string{"finance"}}
	carol     = Identity{Authenticated: true, ID: "carol"}
	auditor   = Identity{Authenticated: true, ID: "auditor", Groups: []string{"staff"}}
)

func mustCompile(t testing.TB, c Config) *Rules {
	t.Helper()
	rs, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// req builds a Request from a request target the way net/http parses it.
func req(t testing.TB, method, target string) *Request {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	return &Request{Host: "app.example.com", Method: method, Path: u.Path, RawPath: u.RawPath}
}

func TestDecide(t *testing.T) {
	rs := mustCompile(t, example)
	tests := []struct {
		method, target string
		id             Identity
		want           Outcome
		rule           string
	}{
		{"GET", "/healthz", anonymous, Allow, NamePublicPaths},
		{"GET", "/healthz/live", anonymous, Allow, NamePublicPaths},
		{"GET", "/static/app.css", anonymous, Allow, NamePublicPaths},
		{"GET", "/healthzX", anonymous, Unauthenticated, NameDefault},
		{"GET", "/admin", anonymous, Unauthenticated, "admin"},
		{"GET", "/admin", alice, Allow, "admin"},
		{"GET", "/admin/users", bob, Forbidden, "admin"},
		{"GET", "/admin", carol, Forbidden, "admin"},
		{"GET", "/administrator", carol, Allow, NameDefault},
		{"GET", "/reports/q1", bob, Allow, "reports"},
		{"GET", "/reports/q1", alice, Allow, "reports"},
		{"GET", "/reports/q1", auditor, Allow, "reports"},
		{"GET", "/reports/q1", carol, Forbidden, "reports"},
		{"GET", "/", anonymous, Allow, "landing"},
		{"GET", "/index.html", anonymous, Unauthenticated, NameDefault},
		{"GET", "/anything", carol, Allow, NameDefault},
		{"DELETE", "/anything", carol, Forbidden, "no-delete"},
		{"delete", "/anything", carol, Forbidden, "no-delete"},
		{"DELETE", "/anything", alice, Allow, "no-delete"},
		{"GET", "/docs/x", anonymous, Allow, "reads"},
		{"HEAD", "/docs/x", anonymous, Allow, "reads"},
		{"POST", "/docs/x", anonymous, Unauthenticated, NameDefault},
		{"GET", "/old", alice, Forbidden, "old"},
		{"GET", "/old", anonymous, Forbidden, "old"},
		{"GET", "/office", anonymous, Unauthenticated, NameDefault}, // no client address
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target+" "+tt.id.ID, func(t *testing.T) {
			d := rs.Decide(req(t, tt.method, tt.target), tt.id)
			if d.Outcome != tt.want || d.Name != tt.rule {
				t.Errorf("Decide = %v by %q (%s), want %v by %q", d.Outcome, d.Name, d.Reason, tt.want, tt.rule)
			}
		})
	}
}

func TestDecideHostsAndNetworks(t *testing.T) {
	rs := mustCompile(t, example)
	tests := []struct {
		host   string
		client string
		path   string
		want   Outcome
		rule   string
	}{
		{"internal.example.com", "", "/x", Forbidden, "internal"},
		{"API.Internal.Example.com:8443", "", "/x", Forbidden, "internal"},
		{"api.internal.example.com.", "", "/x", Forbidden, "internal"},
		{"notinternal.example.com", "", "/x", Unauthenticated, NameDefault},
		{"internal.example.com.evil", "", "/x", Unauthenticated, NameDefault},
		{"app.example.com", "10.1.2.3", "/office", Allow, "office"},
		{"app.example.com", "::ffff:10.1.2.3", "/office", Allow, "office"},
		{"app.example.com", "192.168.1.1", "/office", Unauthenticated, NameDefault},
	}
	for _, tt := range tests {
		t.Run(tt.host+" "+tt.client, func(t *testing.T) {
			r := &Request{Host: tt.host, Method: "GET", Path: tt.path}
			if tt.client != "" {
				r.Client = netip.MustParseAddr(tt.client)
			}
			d := rs.Decide(r, anonymous)
			if d.Outcome != tt.want || d.Name != tt.rule {
				t.Errorf("Decide = %v by %q, want %v by %q", d.Outcome, d.Name, tt.want, tt.rule)
			}
		})
	}
}

// TestPathConfusions: every spelling of a protected path that some server
// reads as /admin is judged by the admin rule (or refused), never by a
// more lenient one; unclean spellings never match a public rule.
func TestPathConfusions(t *testing.T) {
	rs := mustCompile(t, example)
	tests := []struct {
		target string
		want   Outcome // for carol, signed in but not in ops
		rule   string
	}{
		{"/%61dmin", Forbidden, "admin"},
		{"/%61%64%6d%69%6e/users", Forbidden, "admin"},
		{"//admin", Forbidden, "admin"},
		{"/admin//users", Forbidden, "admin"},
		{"/admin/", Forbidden, "admin"},
		{"/admin;x=1/users", Forbidden, "admin"},
		{"/admin;jsessionid=1", Forbidden, "admin"},
		{"/admin%3bx/users", Forbidden, "admin"},
		{"/x/..;/admin", Forbidden, ""},
		{"/x/../admin", Forbidden, ""},
		{"/x/%2e%2e/admin", Forbidden, ""},
		{"/static%2f..%2fadmin", Forbidden, ""},
		{"/static/..%5cadmin", Forbidden, ""},
		{"/%2561dmin", Forbidden, "admin"},          // an app decoding twice reads /admin
		{"/x/%252e%252e/admin", Forbidden, "admin"}, // and resolves the dot segments
		{"/x%255c..%255cadmin", Forbidden, "admin"}, // IIS: backslashes are slashes
		{"/healthz%2fadmin", Forbidden, "admin"},    // never public, judged as /healthz/admin... by admin? no: see below
		{"/static;x/../admin", Forbidden, ""},       // dot segment
		{"/static//x", Allow, NameDefault},          // unclean: not public, carol is signed in
		{"/healthz;x", Allow, NameDefault},          // not public either
		{"/%2561dmin%2f", Forbidden, "admin"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			r := req(t, "GET", tt.target)
			d := rs.Decide(r, carol)
			wantOutcome := tt.want
			if tt.rule == "" {
				wantOutcome = BadPath
			}
			if tt.target == "/healthz%2fadmin" {
				// Decoded: /healthz/admin, under no rule but public_paths,
				// which an unclean spelling never matches.
				if d.Outcome != Allow || d.Name != NameDefault {
					t.Errorf("Decide = %v by %q, want the default rule", d.Outcome, d.Name)
				}
				return
			}
			if d.Outcome != wantOutcome || d.Name != tt.rule {
				t.Errorf("Decide = %v by %q (%s), want %v by %q", d.Outcome, d.Name, d.Reason, wantOutcome, tt.rule)
			}
			if a := rs.Decide(r, anonymous); a.Outcome == Allow {
				t.Errorf("anonymous allowed by %q", a.Name)
			}
		})
	}
}

func TestCaseInsensitivePaths(t *testing.T) {
	c := example
	c.CaseInsensitivePaths = true
	rs := mustCompile(t, c)
	for _, target := range []string{"/ADMIN", "/Admin/users", "/%41DMIN", "/adm%C4%B1n", "/ADM%C4%B0N"} {
		d := rs.Decide(req(t, "GET", target), carol)
		if target == "/ADM%C4%B0N" {
			// İ (dotted capital I) lower-cases to "i̇", not "i": not /admin
			// for Go, .NET or IIS either.
			continue
		}
		if d.Outcome != Forbidden || d.Name != "admin" {
			t.Errorf("%s: Decide = %v by %q, want forbidden by admin", target, d.Outcome, d.Name)
		}
	}
	if d := rs.Decide(req(t, "GET", "/HEALTHZ"), anonymous); d.Outcome != Allow {
		t.Errorf("/HEALTHZ: %v, want public", d.Outcome)
	}
	if d := rs.Decide(req(t, "GET", "/%C5%BFtatic/x"), anonymous); d.Outcome == Allow {
		t.Errorf("/ſtatic: public by %q; a non-ASCII spelling must never be public", d.Name)
	}
	// Case-sensitive by default.
	rs = mustCompile(t, example)
	if d := rs.Decide(req(t, "GET", "/ADMIN"), carol); d.Name != NameDefault {
		t.Errorf("case-sensitive /ADMIN decided by %q", d.Name)
	}
}

func TestMethodOverrides(t *testing.T) {
	rs := mustCompile(t, example)
	r := req(t, "POST", "/anything")
	r.MethodOverrides = []string{" delete "}
	if d := rs.Decide(r, carol); d.Outcome != Forbidden || d.Name != "no-delete" || d.Method != "delete" {
		t.Errorf("POST overridden to DELETE: %v by %q for %q, want forbidden by no-delete", d.Outcome, d.Name, d.Method)
	}
	if d := rs.Decide(r, alice); d.Outcome != Allow {
		t.Errorf("alice: %v, want allowed", d.Outcome)
	}
	// A public GET whose override is a POST needs a credential.
	r = req(t, "GET", "/docs/x")
	r.MethodOverrides = []string{"POST"}
	if d := rs.Decide(r, anonymous); d.Outcome != Unauthenticated {
		t.Errorf("GET /docs overridden to POST: %v, want unauthenticated", d.Outcome)
	}
}

// TestMethodUnknown: a request whose method is unknown is judged under
// every method, the strictest answer winning.
func TestMethodUnknown(t *testing.T) {
	rs := mustCompile(t, example)
	r := req(t, "UNKNOWN", "/anything")
	r.MethodUnknown = true
	if d := rs.Decide(r, carol); d.Outcome != Forbidden || d.Name != "no-delete" {
		t.Errorf("unknown method: %v by %q, want forbidden by no-delete", d.Outcome, d.Name)
	}
	r = req(t, "UNKNOWN", "/docs/x")
	r.MethodUnknown = true
	if d := rs.Decide(r, anonymous); d.Outcome == Allow {
		t.Errorf("unknown method on a GET-only public rule: allowed by %q", d.Name)
	}
}

func TestDefaultDeny(t *testing.T) {
	rs := mustCompile(t, Config{Default: "deny", Rules: []Rule{{Name: "app", Paths: []string{"/app"}, Policy: "authenticated"}}})
	if d := rs.Decide(req(t, "GET", "/app/x"), carol); d.Outcome != Allow {
		t.Errorf("/app: %v", d.Outcome)
	}
	if d := rs.Decide(req(t, "GET", "/other"), alice); d.Outcome != Forbidden || d.Name != NameDefault {
		t.Errorf("/other: %v by %q, want forbidden by default", d.Outcome, d.Name)
	}
}

func TestCompileErrors(t *testing.T) {
	_, err := Compile(Config{
		Default: "allow",
		Rules: []Rule{
			{Name: "a", Paths: []string{"admin"}, Policy: "public"},       // 0: no leading /
			{Name: "b", Paths: []string{"/a/../b"}, Policy: "deny"},       // 1: dot segments
			{Name: "c", Groups: []string{"ops"}},                          // 2: matches everything
			{Name: "d", Paths: []string{"/d"}, Policy: "allow"},           // 3: unknown policy
			{Name: "e", Paths: []string{"/e"}, Methods: []string{"GETT"}}, // 4: unknown method, no policy
			{Name: "f", Paths: []string{"/f"}, Policy: "public", Groups: []string{"x"}},
			{Name: "a", Paths: []string{"/g"}, Policy: "deny"},
			{Name: "h", Hosts: []string{"https://x"}, Networks: []string{"10.0.0.0/33"}, Policy: "deny"},
			{Name: "default", Paths: []string{"/i"}, Policy: "deny"},
		},
	})
	if err == nil {
		t.Fatal("Compile accepted malformed rules")
	}
	want := []string{
		"access.default: must be authenticated or deny",
		"access.rules[0].paths[0]:",
		"access.rules[1].paths[0]:",
		"access.rules[2]: matches every request",
		"access.rules[3].policy: unknown policy",
		"access.rules[4].methods[0]: unknown method",
		"access.rules[4].policy: missing",
		"access.rules[5].policy: \"public\" cannot be combined",
		"access.rules[6].name: \"a\" is also the name of rules[0]",
		"access.rules[7].hosts[0]",
		"access.rules[7].networks[0]",
		"access.rules[8].name: \"default\" is reserved",
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("errors lack %q:\n%v", w, err)
		}
	}
	var e *Error
	if !errors.As(err, &e) || e.Key() != "default" {
		t.Errorf("first error is not an *Error for default: %#v", e)
	}
}

func TestShadowed(t *testing.T) {
	rs := mustCompile(t, Config{
		PublicPaths: []string{"/healthz"},
		Rules: []Rule{
			{Name: "admin", Paths: []string{"/admin"}, Groups: []string{"ops"}},
			{Name: "admin-users", Paths: []string{"/admin/users"}, Policy: "deny"},                     // shadowed by admin
			{Name: "health-deep", Paths: []string{"=/healthz/deep"}, Policy: "deny"},                   // shadowed by public_paths
			{Name: "admin-get", Paths: []string{"/admin"}, Methods: []string{"GET"}, Policy: "public"}, // shadowed
			{Name: "deletes", Methods: []string{"DELETE", "POST"}, Policy: "deny"},
			{Name: "delete-x", Paths: []string{"/x"}, Methods: []string{"DELETE"}, Policy: "deny"}, // shadowed by deletes
			{Name: "put-x", Paths: []string{"/x"}, Methods: []string{"PUT", "DELETE"}, Policy: "deny"},
			{Name: "corp", Hosts: []string{".corp.example.com"}, Policy: "deny"},
			{Name: "a-corp", Hosts: []string{"a.corp.example.com"}, Paths: []string{"/y"}, Policy: "public"}, // shadowed
			{Name: "reports", Paths: []string{"/reports"}, Groups: []string{"finance"}},
		},
	})
	var got []string
	for _, s := range rs.Shadowed() {
		got = append(got, fmt.Sprintf("%s<-%s", s.Name, s.By))
	}
	want := []string{
		"admin-users<-rules[0] admin",
		"health-deep<-public_paths[0] /healthz",
		"admin-get<-rules[0] admin",
		"delete-x<-rules[4] deletes",
		"a-corp<-rules[7] corp",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Shadowed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if g := rs.Groups(); len(g) != 2 || g[0].Group != "ops" || g[1].Group != "finance" || g[1].Index != 9 {
		t.Errorf("Groups = %+v", g)
	}
}

// TestDecideAllocations: a clean path under a case-sensitive rule set
// costs no allocation.
func TestDecideAllocations(t *testing.T) {
	rs := mustCompile(t, example)
	r := req(t, "GET", "/reports/q1")
	n := testing.AllocsPerRun(100, func() { rs.Decide(r, bob) })
	if n != 0 {
		t.Errorf("Decide allocates %v times, want 0", n)
	}
}

// FuzzSpellings: a path decides alike however it is spelled. Encoding
// letters changes nothing; doubled slashes, ";parameters" and a trailing
// slash may only make the answer stricter (they are never public), and
// then the rule that decided the plain path still decides, unless it was
// a public one.
func FuzzSpellings(f *testing.F) {
	for _, s := range []string{"/admin", "/admin/users", "/reports/q1", "/healthz", "/static/a.css", "/", "/docs/x", "/old/y"} {
		f.Add(s, uint64(0x5a5a))
	}
	rs := mustCompile(f, example)
	f.Fuzz(func(t *testing.T, p string, seed uint64) {
		if !IsCleanPath(p) || strings.ContainsAny(p, "?# ") {
			return
		}
		plain := &Request{Host: "app.example.com", Method: "GET", Path: p}
		for _, id := range []Identity{anonymous, carol, alice, bob} {
			want := rs.Decide(plain, id)
			for variant := range 4 {
				spelled := spell(p, seed, variant)
				u, err := url.ParseRequestURI(spelled)
				if err != nil {
					t.Fatalf("%q spelled %q does not parse: %v", p, spelled, err)
				}
				got := rs.Decide(&Request{Host: "app.example.com", Method: "GET", Path: u.Path, RawPath: u.RawPath}, id)
				if got.Outcome == BadPath {
					continue // refused outright: never more lenient
				}
				if variant == 0 {
					if got.Outcome != want.Outcome || got.Name != want.Name {
						t.Fatalf("%q spelled %q: %v by %q, plain %v by %q", p, spelled, got.Outcome, got.Name, want.Outcome, want.Name)
					}
					continue
				}
				if got.Outcome < want.Outcome {
					t.Fatalf("%q spelled %q: %v by %q is more lenient than %v by %q", p, spelled, got.Outcome, got.Name, want.Outcome, want.Name)
				}
				if want.Policy != PolicyPublic && got.Name != want.Name {
					t.Fatalf("%q spelled %q: decided by %q, plain by %q", p, spelled, got.Name, want.Name)
				}
			}
		}
	})
}

// spell writes p another way: 0 percent-encodes some bytes, 1 doubles
// slashes, 2 adds ";x=1" to segments, 3 adds a trailing slash and an
// encoded letter.
func spell(p string, seed uint64, variant int) string {
	var b strings.Builder
	bit := func() bool { seed = seed*6364136223846793005 + 1442695040888963407; return seed>>63 == 1 }
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case variant == 0 && c != '/' && bit():
			fmt.Fprintf(&b, "%%%02X", c)
		case variant == 1 && c == '/' && bit():
			b.WriteString("//")
		case variant == 2 && c == '/' && i > 0 && bit():
			b.WriteString(";x=1/")
		default:
			b.WriteByte(c)
		}
	}
	s := b.String()
	if variant == 3 && len(s) > 1 {
		s = "/%" + fmt.Sprintf("%02X", s[1]) + s[2:] + "/"
	}
	if variant == 2 && !strings.HasSuffix(s, "/") {
		s += ";y"
	}
	return s
}

// BenchmarkAccess decides with 100 rules, the request matching the last.
// The unindexed case has 100 host rules without paths, all tried in turn.
func BenchmarkAccess(b *testing.B) {
	b.Run("paths", benchmarkAccessPaths)
	b.Run("hosts-unindexed", func(b *testing.B) {
		c := Config{}
		for i := range 99 {
			c.Rules = append(c.Rules, Rule{Name: fmt.Sprintf("r%d", i), Hosts: []string{fmt.Sprintf(".h%d.example.com", i)}, Groups: []string{"g"}})
		}
		c.Rules = append(c.Rules, Rule{Name: "last", Hosts: []string{"app.example.com"}, Groups: []string{"finance"}})
		benchDecide(b, mustCompile(b, c))
	})
}

func benchmarkAccessPaths(b *testing.B) {
	c := Config{PublicPaths: []string{"/healthz"}}
	for i := range 99 {
		r := Rule{Name: fmt.Sprintf("r%d", i), Paths: []string{fmt.Sprintf("/area%d", i)}, Groups: []string{fmt.Sprintf("g%d", i)}}
		switch i % 4 {
		case 1:
			r.Methods = []string{"POST", "DELETE"}
		case 2:
			r.Hosts = []string{fmt.Sprintf(".h%d.example.com", i)}
		case 3:
			r.Paths = append(r.Paths, fmt.Sprintf("=/exact%d", i))
		}
		c.Rules = append(c.Rules, r)
	}
	c.Rules = append(c.Rules, Rule{Name: "last", Paths: []string{"/reports"}, Groups: []string{"finance"}})
	benchDecide(b, mustCompile(b, c))
}

func benchDecide(b *testing.B, rs *Rules) {
	r := &Request{Host: "app.example.com", Method: "GET", Path: "/reports/2026/q1", Client: netip.MustParseAddr("10.0.0.1")}
	id := Identity{Authenticated: true, ID: "bob", Groups: []string{"staff", "finance"}}
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		if d := rs.Decide(r, id); d.Outcome != Allow {
			b.Fatal(d)
		}
	}
	// CPU time per decision: on a shared, loaded machine wall time per op
	// includes the time other processes had the CPU.
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// processCPU is the process's user plus system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
