package access

import (
	"net/netip"
	"net/url"
	"path"
	"strings"
	"unicode/utf8"
)

// Request is what a decision looks at: the original request as the proxy
// (or an ingress, for verify) received it.
type Request struct {
	Host    string // the Host (with or without port)
	Path    string // decoded (url.URL.Path)
	RawPath string // url.URL.RawPath: set when the client's encoding differed
	Method  string
	// MethodOverrides are the values of X-HTTP-Method-Override,
	// X-HTTP-Method and X-Method-Override (any spelling): each is judged
	// too, and the stricter answer wins.
	MethodOverrides []string
	Client          netip.Addr // after trusted_proxies; the zero value matches no network
	// MethodUnknown: the method could not be read (forward auth, an
	// ingress that named none): the request is judged under every method
	// a rule can name, the strictest answer winning.
	MethodUnknown bool
}

// Identity is who the caller is, as far as the proxy knows.
type Identity struct {
	Authenticated bool     // a valid, unrevoked credential of a user that exists
	ID            string   // the user id (the token's subject)
	Groups        []string // the user's current groups
}

// Outcome is the answer a decision gives.
type Outcome uint8

const (
	// Allow: the request goes through.
	Allow Outcome = iota
	// Unauthenticated: the rule needs a credential the request lacks (401,
	// or the sign-in page for a browser).
	Unauthenticated
	// Forbidden: signed in but not allowed, or a deny rule (403).
	Forbidden
	// BadPath: the path has dot segments, backslashes or control
	// characters (400): no rule is consulted.
	BadPath
)

func (o Outcome) String() string {
	switch o {
	case Allow:
		return "allowed"
	case Unauthenticated:
		return "unauthenticated"
	case Forbidden:
		return "forbidden"
	}
	return "bad_path"
}

// Decision is Decide's answer and the rule that made it.
type Decision struct {
	Outcome Outcome
	// Name is the rule's name (NamePublicPaths, NameDefault, or a
	// configured rule's): the metrics' rule label and the access line.
	Name string
	// Index is the rule's position in Config.Rules; -1 for public_paths,
	// the default and a bad path.
	Index int
	// Source says which configured entry decided: "rules[2] admin",
	// "public_paths[0] /healthz", "default"; "" for a bad path.
	Source string
	Policy Policy
	// Method is the method the decision was made for: the request's, or
	// the override that was stricter.
	Method string
	// Reason says why, in a few words (no rule internals beyond the name).
	Reason string
}

// Reasons a decision gives.
const (
	ReasonBadPath       = "the path has dot segments, backslashes or control characters"
	ReasonPublic        = "public: no credential needed"
	ReasonNeedsSignIn   = "a credential is needed"
	ReasonSignedIn      = "signed in"
	ReasonDeny          = "the rule denies every request"
	ReasonUserListed    = "the user is in the rule's users"
	ReasonGroupListed   = "one of the user's groups is in the rule's groups"
	ReasonNotInAllowLst = "neither the user nor any of their groups is in the rule's allow-list"
)

// Decide judges req for id: the first matching rule's policy, under the
// request's method and each method override, the stricter answer winning.
// It allocates nothing unless the path needs a canonical form or paths
// are case-insensitive.
func (rs *Rules) Decide(req *Request, id Identity) Decision {
	class := ClassifyPath(req.Path, req.RawPath)
	if class == PathHostile {
		return Decision{Outcome: BadPath, Index: -1, Reason: ReasonBadPath, Method: req.Method}
	}
	p := rs.prepare(req, class)
	d := rs.decideMethod(&p, req.Method, id)
	if !rs.usesMethods {
		return d
	}
	for _, m := range req.MethodOverrides {
		m = strings.TrimSpace(m)
		if m == "" || asciiEqualFold(m, req.Method) {
			continue
		}
		if o := rs.decideMethod(&p, m, id); o.Outcome > d.Outcome {
			d = o
		}
	}
	if req.MethodUnknown {
		for _, m := range knownMethods {
			if o := rs.decideMethod(&p, m, id); o.Outcome > d.Outcome {
				d = o
			}
		}
	}
	return d
}

// prepared holds the forms of the path each kind of rule compares.
type prepared struct {
	host      string // lower case, without port or trailing dot; "" unless a rule names hosts
	public    string // what public rules compare; "" when none may match
	canonical string // what the other rules compare
	// decodedAgain is the canonical form after decoding what is still
	// %-encoded (an app that decodes twice reads "/%2561dmin" as /admin);
	// "" when nothing was left to decode. The stricter of the two wins.
	decodedAgain string
	client       netip.Addr
}

func (rs *Rules) prepare(req *Request, class PathClass) prepared {
	p := prepared{client: req.Client.Unmap()}
	if rs.usesHosts {
		p.host = asciiLower(hostOnly(req.Host)) // allocates only for upper case
	}
	canon := Canonical(req.Path)
	if class == PathClean {
		p.public = req.Path
	}
	if rs.foldCase {
		if p.public != "" {
			if isASCII(p.public) {
				p.public = asciiLower(p.public)
			} else {
				p.public = ""
			}
		}
		canon = foldUnicode(canon)
	}
	p.canonical = canon
	if strings.IndexByte(req.Path, '%') >= 0 {
		again := decodeAgain(req.Path)
		if rs.foldCase {
			again = foldUnicode(again)
		}
		if again != canon {
			p.decodedAgain = again
		}
	}
	return p
}

// maxDecodes bounds how many more times a path is decoded.
const maxDecodes = 3

// decodeAgain decodes a decoded path until nothing is left to decode (or
// maxDecodes), reads backslashes as slashes (as IIS does), resolves dot
// segments and returns the canonical form.
func decodeAgain(p string) string {
	for range maxDecodes {
		d, err := url.PathUnescape(p)
		if err != nil || d == p {
			break
		}
		p = d
	}
	p = strings.ReplaceAll(p, "\\", "/")
	return Canonical(path.Clean("/" + p))
}

func (rs *Rules) decideMethod(p *prepared, method string, id Identity) Decision {
	bit := uint16(0)
	if rs.usesMethods {
		bit = methodBit(method)
	}
	d := rs.first(p, p.canonical, bit).judge(id, method)
	if p.decodedAgain != "" {
		if o := rs.first(p, p.decodedAgain, bit).judge(id, method); o.Outcome > d.Outcome {
			d = o
		}
	}
	return d
}

// first is the first rule matching p with canonical as its canonical path.
// Only the rules that can match the path's first segment are tried.
func (rs *Rules) first(p *prepared, canonical string, bit uint16) *rule {
	candidates, ok := rs.bySegment[firstSegment(canonical)]
	if !ok {
		candidates = rs.anySegment
	}
	for _, i := range candidates {
		r := &rs.rules[i]
		if r.matches(p, canonical, bit) {
			return r
		}
	}
	return &rs.def
}

// firstSegment is "admin" for "/admin/x", "" for "/".
func firstSegment(p string) string {
	if len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	if i := strings.IndexByte(p, '/'); i >= 0 {
		p = p[:i]
	}
	return p
}

func (r *rule) matches(p *prepared, canonical string, bit uint16) bool {
	if r.methods != 0 && r.methods&bit == 0 {
		return false
	}
	if len(r.hosts) > 0 && !anyHost(r.hosts, p.host) {
		return false
	}
	if len(r.networks) > 0 && !anyNetwork(r.networks, p.client) {
		return false
	}
	if len(r.prefixes) == 0 && len(r.exact) == 0 {
		return true
	}
	path := canonical
	if r.policy == PolicyPublic {
		path = p.public
		if path == "" {
			return false // an unclean spelling is never public
		}
	}
	for _, pre := range r.prefixes {
		if UnderPrefix(path, pre) {
			return true
		}
	}
	if len(r.exact) > 0 {
		trimmed := path
		if len(trimmed) > 1 && trimmed[len(trimmed)-1] == '/' {
			trimmed = trimmed[:len(trimmed)-1] // a public path keeps it; the canonical form has none
		}
		for _, e := range r.exact {
			if trimmed == e {
				return true
			}
		}
	}
	return false
}

func (r *rule) judge(id Identity, method string) Decision {
	d := Decision{Name: r.name, Index: r.index, Source: r.source, Policy: r.policy, Method: method}
	if d.Source == "" {
		d.Source = r.name
	}
	switch r.policy {
	case PolicyPublic:
		d.Outcome, d.Reason = Allow, ReasonPublic
	case PolicyDeny:
		d.Outcome, d.Reason = Forbidden, ReasonDeny
	case PolicyAuthenticated:
		if !id.Authenticated {
			d.Outcome, d.Reason = Unauthenticated, ReasonNeedsSignIn
		} else {
			d.Outcome, d.Reason = Allow, ReasonSignedIn
		}
	case PolicyAllowList:
		switch {
		case !id.Authenticated:
			d.Outcome, d.Reason = Unauthenticated, ReasonNeedsSignIn
		case contains(r.users, id.ID):
			d.Outcome, d.Reason = Allow, ReasonUserListed
		case intersects(r.groups, id.Groups):
			d.Outcome, d.Reason = Allow, ReasonGroupListed
		default:
			d.Outcome, d.Reason = Forbidden, ReasonNotInAllowLst
		}
	}
	return d
}

func contains(list []string, s string) bool {
	if s == "" {
		return false
	}
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func intersects(allowed, have []string) bool {
	for _, g := range have {
		if contains(allowed, g) {
			return true
		}
	}
	return false
}

func anyHost(hosts []host, h string) bool {
	for _, c := range hosts {
		if c.matches(h) {
			return true
		}
	}
	return false
}

func anyNetwork(nets []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// hostOnly drops the port and a trailing dot: "App.example.com.:443" is
// compared as "App.example.com" (without regard to case).
func hostOnly(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".")
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s) // ASCII input: ToLower only maps A-Z
		}
	}
	return s
}

// foldUnicode maps every case form of a letter to one: "ſ" (long s) and
// "S" to "s", "K" (Kelvin sign) to "k", "ı" (dotless i) to "i", as an app
// comparing upper-cased paths would.
func foldUnicode(s string) string {
	if isASCII(s) {
		return asciiLower(s)
	}
	return strings.ToLower(strings.ToUpper(s))
}
