// Package access decides what a caller may reach: rules compiled once from
// configuration, matched against a normalised request (host, path, method,
// client address) and judged for an identity (id, groups). It knows nothing
// of HTTP handlers or user stores: the proxy, forward auth's verify and the
// check-access command all call the same Decide.
//
// # Precedence
//
// The first rule that matches decides; later rules are not looked at:
//
//  1. public_paths, in order, each a public rule named "public_paths";
//  2. access.rules, in order;
//  3. access.default (authenticated unless set to deny), named "default".
//
// A rule matches when every condition it has matches (a condition it does
// not have matches anything); within one condition any listed value may
// match:
//
//   - hosts: the request's host without port and trailing dot, compared
//     without regard to case; "example.com" is that host only,
//     ".example.com" is example.com and every name under it.
//   - paths: "/admin" is a whole-segment prefix (/admin, /admin/, /admin/x,
//     never /adminx); "=/admin" is that one path (with or without a
//     trailing slash).
//   - methods: the request method compared without regard to case; GET
//     also covers HEAD. A method no rule names matches only rules without
//     methods.
//   - networks: the client address (after trusted_proxies) in a CIDR.
//
// # Paths
//
// A path is judged after the normalisation the proxy already applies to
// public paths, so that none of the spellings that fooled other proxies
// reaches what a rule protects:
//
//   - percent-encoding is decoded once ("/%61dmin" is "/admin");
//   - dot segments ("/x/../admin", also "%2e%2e" and "..;") and
//     backslashes or control characters are refused (Outcome BadPath; the
//     proxy answers 400);
//   - an unclean spelling (doubled slashes, an encoded slash "%2f", a "%"
//     left after decoding, a ";parameter") never matches a public rule,
//     and every other rule judges its canonical form: empty segments
//     dropped, ";parameters" cut from each segment ("/admin;x=1/users" is
//     "/admin/users", as Tomcat reads it), trailing slash dropped;
//   - with case_insensitive_paths, rules (other than public ones) compare
//     paths after folding case (also Unicode forms such as "ſ" for "s");
//     a public rule then matches ASCII paths only, compared without
//     regard to ASCII case.
//
// # Method overrides
//
// Some frameworks take the method from X-HTTP-Method-Override,
// X-HTTP-Method or X-Method-Override. The caller passes those values in
// Request.MethodOverrides, and Decide judges the request under its own
// method and under each override, and keeps the stricter answer
// (Forbidden over Unauthenticated over Allow). The headers are not removed:
// forward auth cannot remove them from the request the ingress sends on.
package access

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// Policy is what a rule asks of the caller.
type Policy uint8

const (
	// PolicyAuthenticated: any valid credential.
	PolicyAuthenticated Policy = iota
	// PolicyPublic: no credential needed (a valid one still names the user).
	PolicyPublic
	// PolicyDeny: refused to everyone (403).
	PolicyDeny
	// PolicyAllowList: a valid credential whose user is in Users or has
	// one of Groups.
	PolicyAllowList
)

func (p Policy) String() string {
	switch p {
	case PolicyPublic:
		return "public"
	case PolicyDeny:
		return "deny"
	case PolicyAllowList:
		return "allow-list"
	}
	return "authenticated"
}

// Rule is one configured rule. Empty lists match anything; a rule with no
// condition at all is refused (it would shadow every later rule: use
// Config.Default for that).
type Rule struct {
	Name     string   // shown in check-access, the metrics' rule label and the access line; default "rule_<index>"
	Hosts    []string // exact host, or ".example.com" for the domain and its subdomains
	Paths    []string // whole-segment prefixes; "=/exact" for one path
	Methods  []string // GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, CONNECT, TRACE; GET covers HEAD
	Networks []string // CIDRs or addresses of the client
	Groups   []string // allow-list: any of these groups
	Users    []string // allow-list: any of these user ids (the token's subject)
	Policy   string   // public | authenticated | deny; "" when Groups or Users are set
}

// Config is the rule set before compiling.
type Config struct {
	Default              string   // authenticated (also "") | deny: when no rule matches
	CaseInsensitivePaths bool     // the app treats /ADMIN as /admin
	PublicPaths          []string // public rules placed before Rules
	Rules                []Rule
}

// Names of the decisions that are not a configured rule.
const (
	NamePublicPaths = "public_paths"
	NameDefault     = "default"
)

// Error is one problem with the configuration: Rule is the index in
// Config.Rules (-1 for the top-level keys), Field the rule's key and Item
// the index in its list (-1 for the key itself).
type Error struct {
	Rule  int
	Field string
	Item  int
	Msg   string
}

// Key is the problem's key below access: "rules[2].paths[0]", "default".
func (e *Error) Key() string {
	k := e.Field
	if e.Rule >= 0 {
		k = fmt.Sprintf("rules[%d]", e.Rule)
		if e.Field != "" {
			k += "." + e.Field
		}
	}
	if e.Item >= 0 {
		k += fmt.Sprintf("[%d]", e.Item)
	}
	return k
}

func (e *Error) Error() string { return "access." + e.Key() + ": " + e.Msg }

// knownMethods are the methods a rule may name; their index is their bit.
var knownMethods = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}

const (
	bitGET  = 1 << 0
	bitHEAD = 1 << 1
	// bitOther stands for every method a rule cannot name.
	bitOther = 1 << len(knownMethods)
)

// methodBit returns m's bit, comparing without regard to case.
func methodBit(m string) uint16 {
	for i, k := range knownMethods {
		if len(m) == len(k) && asciiEqualFold(m, k) {
			return 1 << i
		}
	}
	return bitOther
}

// host is a compiled hosts entry.
type host struct {
	name   string // lower case, no trailing dot, no leading dot
	suffix bool   // ".example.com": the name and every name under it
}

// matches compares with the request's host, already lower-cased.
func (h host) matches(reqHost string) bool {
	if len(reqHost) == len(h.name) {
		return reqHost == h.name
	}
	return h.suffix && len(reqHost) > len(h.name) && reqHost[len(reqHost)-len(h.name)-1] == '.' &&
		reqHost[len(reqHost)-len(h.name):] == h.name
}

// rule is a compiled rule.
type rule struct {
	name     string
	index    int // in Config.Rules; -1 for public_paths and the default
	prefixes []string
	exact    []string
	hosts    []host
	methods  uint16 // 0: any
	networks []netip.Prefix
	groups   []string
	users    []string
	policy   Policy
	// public_paths[i] for a public path, so check-access can say which
	source string
}

// Rules is a compiled rule set; safe for concurrent use.
type Rules struct {
	rules    []rule
	def      rule
	foldCase bool
	// bySegment lists, for each first path segment a rule names, the rules
	// that can match a path starting with it (in order); anySegment those
	// that can match any path (no paths, or "/"). It keeps a decision among
	// many rules to a few comparisons.
	bySegment  map[string][]int32
	anySegment []int32
	// Whether any rule looks at these at all: Decide skips the work when not.
	usesMethods  bool
	usesNetworks bool
	usesHosts    bool
}

// Compile checks and compiles c. Every problem is reported (errors.Join of
// *Error), so configuration validation can name each key.
func Compile(c Config) (*Rules, error) {
	var errs []error
	bad := func(ruleIdx int, field string, item int, format string, args ...any) {
		errs = append(errs, &Error{Rule: ruleIdx, Field: field, Item: item, Msg: fmt.Sprintf(format, args...)})
	}
	rs := &Rules{foldCase: c.CaseInsensitivePaths}
	switch c.Default {
	case "", "authenticated":
		rs.def = rule{name: NameDefault, index: -1, policy: PolicyAuthenticated}
	case "deny":
		rs.def = rule{name: NameDefault, index: -1, policy: PolicyDeny}
	default:
		bad(-1, "default", -1, "must be authenticated or deny (got %q)", c.Default)
	}
	for i, p := range c.PublicPaths {
		clean, err := CleanPrefix(p)
		if err != nil {
			errs = append(errs, &Error{Rule: -1, Field: "public_paths", Item: i, Msg: fmt.Sprintf("%q %v", p, err)})
			continue
		}
		rs.rules = append(rs.rules, rule{
			name: NamePublicPaths, index: -1, policy: PolicyPublic,
			prefixes: []string{rs.foldPattern(clean, true)},
			source:   fmt.Sprintf("public_paths[%d] %s", i, p),
		})
	}
	names := map[string]int{}
	for i, r := range c.Rules {
		cr := rule{name: r.Name, index: i}
		if cr.name == "" {
			cr.name = fmt.Sprintf("rule_%d", i)
		}
		switch {
		case !validName(cr.name):
			bad(i, "name", -1, "%q must be 1-64 letters, digits, '_', '-' or '.'", r.Name)
		case cr.name == NameDefault || cr.name == NamePublicPaths:
			bad(i, "name", -1, "%q is reserved", cr.name)
		default:
			if prev, dup := names[cr.name]; dup {
				bad(i, "name", -1, "%q is also the name of rules[%d]; names must differ (they label metrics)", cr.name, prev)
			}
			names[cr.name] = i
		}
		if len(r.Hosts)+len(r.Paths)+len(r.Methods)+len(r.Networks) == 0 {
			bad(i, "", -1, "matches every request: give hosts, paths, methods or networks (access.default decides what no rule matches)")
		}
		switch r.Policy {
		case "":
			if len(r.Groups)+len(r.Users) == 0 {
				bad(i, "policy", -1, "missing: give policy (public, authenticated or deny) or groups/users")
			}
			cr.policy = PolicyAllowList
		case "public", "authenticated", "deny":
			if len(r.Groups)+len(r.Users) > 0 {
				bad(i, "policy", -1, "%q cannot be combined with groups or users (they are an allow-list policy of their own)", r.Policy)
			}
			cr.policy = map[string]Policy{"public": PolicyPublic, "authenticated": PolicyAuthenticated, "deny": PolicyDeny}[r.Policy]
		default:
			bad(i, "policy", -1, "unknown policy %q: want public, authenticated or deny", r.Policy)
		}
		for j, h := range r.Hosts {
			ch, ok := compileHost(h)
			if !ok {
				bad(i, "hosts", j, "%q must be a host name (app.example.com) or a suffix (.example.com), without scheme or port", h)
				continue
			}
			cr.hosts = append(cr.hosts, ch)
		}
		for j, p := range r.Paths {
			exact := strings.HasPrefix(p, "=")
			clean, err := CleanPrefix(strings.TrimPrefix(p, "="))
			if err != nil {
				bad(i, "paths", j, "%q %v", p, err)
				continue
			}
			clean = rs.foldPattern(clean, cr.policy == PolicyPublic)
			if exact {
				cr.exact = append(cr.exact, clean)
			} else {
				cr.prefixes = append(cr.prefixes, clean)
			}
		}
		for j, m := range r.Methods {
			bit := methodBit(m)
			if bit == bitOther || m != strings.ToUpper(m) {
				bad(i, "methods", j, "unknown method %q: want one of %s", m, strings.Join(knownMethods[:], ", "))
				continue
			}
			cr.methods |= bit
			if bit == bitGET {
				cr.methods |= bitHEAD // HEAD is a GET without the body
			}
		}
		for j, n := range r.Networks {
			p, err := netip.ParsePrefix(n)
			if err != nil {
				a, aerr := netip.ParseAddr(n)
				if aerr != nil || a.Zone() != "" {
					bad(i, "networks", j, "%q is neither a CIDR (10.0.0.0/8) nor an IP address", n)
					continue
				}
				p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			}
			cr.networks = append(cr.networks, netip.PrefixFrom(p.Addr().Unmap(), unmappedBits(p)).Masked())
		}
		for j, g := range r.Groups {
			if !validMember(g) {
				bad(i, "groups", j, "%q must be a group name: no comma, control character or leading/trailing space", g)
			}
		}
		for j, u := range r.Users {
			if !validMember(u) {
				bad(i, "users", j, "%q must be a user id: no comma, control character or leading/trailing space", u)
			}
		}
		cr.groups, cr.users = r.Groups, r.Users
		rs.usesMethods = rs.usesMethods || cr.methods != 0
		rs.usesNetworks = rs.usesNetworks || len(cr.networks) > 0
		rs.usesHosts = rs.usesHosts || len(cr.hosts) > 0
		cr.source = fmt.Sprintf("rules[%d] %s", i, cr.name)
		rs.rules = append(rs.rules, cr)
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	rs.index()
	return rs, nil
}

// index fills bySegment and anySegment.
func (rs *Rules) index() {
	rs.bySegment = map[string][]int32{}
	segs := make([][]string, len(rs.rules))
	for i, r := range rs.rules {
		for _, p := range append(append([]string(nil), r.prefixes...), r.exact...) {
			if p == "/" && !contains(r.exact, p) {
				segs[i] = nil // a "/" prefix: any path
				break
			}
			segs[i] = append(segs[i], firstSegment(p))
		}
		if len(r.prefixes)+len(r.exact) == 0 {
			segs[i] = nil
		}
		for _, s := range segs[i] {
			rs.bySegment[s] = nil
		}
	}
	for i := range rs.rules {
		if segs[i] == nil {
			rs.anySegment = append(rs.anySegment, int32(i))
			for s := range rs.bySegment {
				rs.bySegment[s] = append(rs.bySegment[s], int32(i))
			}
			continue
		}
		for _, s := range segs[i] {
			if l := rs.bySegment[s]; len(l) == 0 || l[len(l)-1] != int32(i) {
				rs.bySegment[s] = append(l, int32(i))
			}
		}
	}
}

// unmappedBits keeps an IPv4-mapped prefix's length meaningful for IPv4.
func unmappedBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return max(p.Bits()-96, 0)
	}
	return p.Bits()
}

// foldPattern lower-cases a rule's path when paths are case-insensitive:
// ASCII only for a public rule, every case form for the others.
func (rs *Rules) foldPattern(p string, public bool) string {
	if !rs.foldCase {
		return p
	}
	if public {
		return asciiLower(p)
	}
	return foldUnicode(p)
}

func compileHost(h string) (host, bool) {
	suffix := strings.HasPrefix(h, ".")
	name := strings.ToLower(strings.TrimPrefix(h, "."))
	if name == "" || len(name) > 253 || strings.HasSuffix(name, ".") {
		return host{}, false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return host{}, false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return host{}, false
			}
		}
	}
	return host{name: name, suffix: suffix}, true
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validMember accepts a group name or user id that can travel in a
// comma-separated header: the user stores' rule for group names (valid
// UTF-8, no control character, no comma, no leading or trailing space;
// "Domain Admins" is fine).
func validMember(s string) bool {
	if s == "" || len(s) > 256 || !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == ',' {
			return false
		}
	}
	return true
}

// joinErrors is errors.Join, kept as a list type so callers can range
// over the *Error values with errors.As or Unwrap() []error.
func joinErrors(errs []error) error { return errList(errs) }

type errList []error

func (l errList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

func (l errList) Unwrap() []error { return l }

// Len is the number of compiled rules, public_paths included.
func (rs *Rules) Len() int { return len(rs.rules) }

// Names lists every name a decision can carry, once each, in order
// (public_paths when there are public paths, the rules', then default):
// the metrics pre-create one counter per name.
func (rs *Rules) Names() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range rs.rules {
		if !seen[r.name] {
			seen[r.name] = true
			out = append(out, r.name)
		}
	}
	return append(out, NameDefault)
}

// Configured reports whether the rules can refuse a valid credential:
// some configured rule, or access.default deny. Without, only public paths
// and "any valid credential" remain.
func (rs *Rules) Configured() bool {
	return rs.def.policy == PolicyDeny || len(rs.rules) > 0 && rs.rules[len(rs.rules)-1].index >= 0
}

// UsesMethods reports whether any rule names methods: only then do method
// overrides change a decision.
func (rs *Rules) UsesMethods() bool { return rs.usesMethods }

// UsesNetworks reports whether any rule names networks: only then does the
// caller need to work out the client address.
func (rs *Rules) UsesNetworks() bool { return rs.usesNetworks }
