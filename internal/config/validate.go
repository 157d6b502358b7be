package config

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"tokengate/access"
)

// Limits Validate enforces.
const (
	minHeaderBytes    = 4 << 10
	maxHeaderBytes    = 1 << 20
	minBodyBytes      = 1 << 10
	maxBodyBytes      = 1 << 20
	maxMaxStaleness   = time.Minute
	minPasswordLength = 8  // NIST SP 800-63B floor
	bcryptMaxPassword = 72 // bcrypt ignores (x/crypto: refuses) longer passwords

	// Token lifetimes are bounded so that every instant derived from them
	// (exp, a cutoff's retention, a revocation's TTL) stays far inside
	// time.Duration and UnixNano range: an absurd ttl once made logout
	// answer 204 while storing nothing.
	maxTokenTTL      = 366 * 24 * time.Hour
	maxRefreshWindow = 366 * 24 * time.Hour
	maxLeeway        = 5 * time.Minute
)

// Validate checks every key and reports every problem (errors.Join), each
// naming its dotted key and, when known, the line or variable it came from.
// It has no side effects: it touches no file and no network; check-config
// loads the files afterwards.
func (c Config) Validate() error {
	v := &validator{origin: c.origin}

	v.listenAddr("listen", c.Listen)
	v.listenAddr("admin_listen", c.AdminListen)
	if sameListener(c.Listen, c.AdminListen) {
		v.fail("admin_listen", "must differ from listen (%s)", c.Listen)
	}
	v.upstream(c.Upstream)
	v.positive("upstream_timeout", c.UpstreamTimeout)
	v.identityHeader(c.IdentityHeader)
	seen := map[string]bool{}
	public := make([]string, 0, len(c.PublicPaths))
	for i, p := range c.PublicPaths {
		key := fmt.Sprintf("public_paths[%d]", i)
		// A trailing slash names the same segment prefix ("/static/" is
		// "/static"), as the proxy matches it.
		seg := p
		if len(seg) > 1 && strings.HasSuffix(seg, "/") && !strings.HasSuffix(seg, "//") {
			seg = strings.TrimSuffix(seg, "/")
		}
		if v.urlPath(key, seg) {
			if seen[seg] {
				v.fail(key, "%s is listed twice", seg)
			}
			seen[seg] = true
			public = append(public, seg)
		}
	}
	for i, p := range c.TrustedProxies {
		if !validPrefix(p) {
			v.fail(fmt.Sprintf("trusted_proxies[%d]", i), "%q is neither a CIDR (10.0.0.0/8) nor an IP address", p)
		}
	}
	if c.Upstream == "" && c.Routes.Verify != "" && len(c.TrustedProxies) == 0 {
		// verify reads the original request only from trusted_proxies:
		// without one every path would be private, every method unknown,
		// and the ingress's own (public paths, redirects) never honoured.
		v.failHint("trusted_proxies", `list the ingress's addresses, or set routes.verify: "" for a token service without forward auth`,
			`auth-server mode (upstream: "") needs the ingress's addresses here: verify honours the original request's headers only from trusted_proxies`)
	}
	v.oneOf("log_format", c.LogFormat, "json", "text")
	v.oneOf("log_level", c.LogLevel, "debug", "info", "warn", "error")

	s := c.Server
	v.positive("server.read_header_timeout", s.ReadHeaderTimeout)
	v.nonNegative("server.read_timeout", s.ReadTimeout)
	v.nonNegative("server.write_timeout", s.WriteTimeout)
	v.positive("server.idle_timeout", s.IdleTimeout)
	v.inRange("server.max_header_bytes", int64(s.MaxHeaderBytes), minHeaderBytes, maxHeaderBytes)
	v.inRange("server.max_body_bytes", s.MaxBodyBytes, minBodyBytes, maxBodyBytes)
	v.nonNegative("server.shutdown_delay", s.ShutdownDelay)
	v.positive("server.shutdown_grace", s.ShutdownGrace)

	t := c.Tokens
	v.nonEmpty("tokens.issuer", t.Issuer)
	if v.positive("tokens.ttl", t.TTL) {
		v.atMost("tokens.ttl", t.TTL, maxTokenTTL)
	}
	if v.nonNegative("tokens.refresh_window", t.RefreshWindow) {
		v.atMost("tokens.refresh_window", t.RefreshWindow, maxRefreshWindow)
	}
	if v.nonNegative("tokens.leeway", t.Leeway) && v.atMost("tokens.leeway", t.Leeway, maxLeeway) &&
		t.TTL > 0 && t.Leeway >= t.TTL {
		v.fail("tokens.leeway", "must be shorter than tokens.ttl (%s)", t.TTL)
	}
	v.oneOf("tokens.algorithm", t.Algorithm, "EdDSA", "ES256", "RS256", "HS256")
	v.nonEmpty("tokens.signing_key_file", t.SigningKeyFile)
	for i, f := range t.VerificationKeyFiles {
		v.nonEmpty(fmt.Sprintf("tokens.verification_key_files[%d]", i), f)
	}
	v.positiveInt("tokens.cache_size", t.CacheSize)

	v.users(c.Users)

	l := c.LoginThrottle
	v.nonNegativeInt("login_throttle.per_user", l.PerUser)
	v.nonNegativeInt("login_throttle.per_address", l.PerAddress)
	if l.PerUser > 0 || l.PerAddress > 0 {
		v.positive("login_throttle.window", l.Window)
	}

	v.revocation(c.Revocation)
	routes := c.Routes
	if c.OIDC.Issuer == "" {
		// Not served: neither checked nor in the way of another route.
		routes.OIDCSignIn, routes.OIDCCallback, routes.BackchannelLogout = "", "", ""
	}
	v.routes(routes, public)
	v.browser(c.Browser, c.Routes)
	v.oidc(c.OIDC, c.Routes)
	v.access(c)
	if r := c.Tracing.SamplerRatio; !(r >= 0 && r <= 1) {
		v.fail("tracing.sampler_ratio", "must be between 0 and 1 (a fraction of new traces), got %v", r)
	}
	return errors.Join(v.errs...)
}

type validator struct {
	origin map[string]string
	errs   []error
}

func (v *validator) fail(key, format string, args ...any) {
	v.failHint(key, "", format, args...)
}

func (v *validator) failHint(key, hint, format string, args ...any) {
	origin := v.origin[key]
	if origin == "" {
		// an element without a line of its own is reported at its list
		origin = v.origin[strings.TrimRight(strings.TrimRight(key, "]0123456789"), "[")]
	}
	if origin == "" && strings.HasPrefix(key, "access.rules[") {
		// a key a rule lacks (policy) is reported at the rule
		if i := strings.IndexByte(key, ']'); i > 0 {
			origin = v.origin[key[:i+1]]
		}
	}
	v.errs = append(v.errs, &fieldError{Key: key, Origin: origin, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

func (v *validator) oneOf(key, val string, allowed ...string) bool {
	for _, a := range allowed {
		if val == a {
			return true
		}
	}
	v.fail(key, "must be one of %s (got %q)", strings.Join(allowed, ", "), val)
	return false
}

func (v *validator) nonEmpty(key, val string) bool {
	if strings.TrimSpace(val) == "" {
		v.fail(key, "must not be empty")
		return false
	}
	return true
}

func (v *validator) positive(key string, d time.Duration) bool {
	if d <= 0 {
		v.fail(key, "must be a positive duration (got %s)", d)
		return false
	}
	return true
}

func (v *validator) atMost(key string, d, limit time.Duration) bool {
	if d > limit {
		v.fail(key, "must be at most %s (got %s)", limit, d)
		return false
	}
	return true
}

func (v *validator) nonNegative(key string, d time.Duration) bool {
	if d < 0 {
		v.fail(key, "must not be negative (got %s)", d)
		return false
	}
	return true
}

func (v *validator) positiveInt(key string, n int) {
	if n <= 0 {
		v.fail(key, "must be positive (got %d)", n)
	}
}

func (v *validator) nonNegativeInt(key string, n int) {
	if n < 0 {
		v.failHint(key, "0 disables", "must not be negative (got %d)", n)
	}
}

func (v *validator) inRange(key string, n, lo, hi int64) {
	if n < lo || n > hi {
		v.fail(key, "must be between %d and %d (got %d)", lo, hi, n)
	}
}

// listenAddr checks host:port; an empty host listens on every interface and
// port 0 picks a free port.
func (v *validator) listenAddr(key, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.fail(key, "invalid address %q: want host:port, e.g. 127.0.0.1:8081", addr)
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		v.fail(key, "invalid port %q in %q: want a number 0-65535", port, addr)
	}
	if host != "" && !validHost(host) {
		v.fail(key, "invalid host %q in %q", host, addr)
	}
}

// sameListener reports whether two valid listen addresses would collide.
func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil {
		return false // reported already
	}
	na, errA := strconv.ParseUint(pa, 10, 16)
	nb, errB := strconv.ParseUint(pb, 10, 16)
	if errA != nil || errB != nil || na == 0 || nb == 0 || na != nb {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return strings.EqualFold(ha, hb) || wildcard(ha) || wildcard(hb)
}

func validHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func (v *validator) upstream(raw string) {
	const key = "upstream"
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		// auth-server mode: tokengate only answers an ingress's verify
	case err != nil:
		v.fail(key, "invalid URL") // the text may hold a password: not echoed
	case u.User != nil:
		v.fail(key, "must not carry credentials")
	case u.Scheme != "http" && u.Scheme != "https":
		v.fail(key, "scheme must be http or https (got %q)", raw)
	case u.Opaque != "" || u.Hostname() == "":
		v.fail(key, "must name a host, e.g. http://127.0.0.1:8080 (got %q)", raw)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		v.fail(key, "must have no query or fragment (got %q)", raw)
	case !validHost(u.Hostname()):
		v.fail(key, "invalid host %q", u.Hostname())
	case u.Port() != "":
		if n, err := strconv.ParseUint(u.Port(), 10, 16); err != nil || n == 0 {
			v.fail(key, "invalid port %q", u.Port())
		}
	}
}

// reservedHeaders may not be the identity header: the proxy or the
// transport own them, or they carry credentials.
var reservedHeaders = []string{
	"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "Host",
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Content-Length", "Content-Type",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
}

func (v *validator) identityHeader(h string) {
	const key = "identity_header"
	if h == "" {
		v.fail(key, "must not be empty")
		return
	}
	for _, r := range h {
		if !isTokenChar(r) {
			v.failHint(key, "use letters, digits and !#$%&'*+-.^_`|~", "%q is not a valid header name", h)
			return
		}
	}
	norm := strings.ReplaceAll(h, "_", "-")
	for _, r := range reservedHeaders {
		if strings.EqualFold(norm, r) {
			v.failHint(key, "choose a header of your own such as X-Auth-UserId", "%s is reserved", h)
			return
		}
	}
}

// isTokenChar reports whether r may appear in a header name (RFC 9110 tchar).
func isTokenChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}

func validPrefix(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	ip, err := netip.ParseAddr(s)
	return err == nil && ip.Zone() == ""
}

// urlPath checks a public path or route: absolute, clean (no dot-segments,
// no empty segments, no trailing slash), decoded, no query.
func (v *validator) urlPath(key, p string) bool {
	switch {
	case !strings.HasPrefix(p, "/"):
		v.fail(key, "%q must start with /", p)
	case strings.ContainsAny(p, "?#"):
		v.fail(key, "%q must be a path without query or fragment", p)
	case strings.Contains(p, "%"):
		v.fail(key, "%q must be written decoded (no %%-escapes)", p)
	case strings.IndexFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		v.fail(key, "%q must not contain spaces or control characters", p)
	case path.Clean(p) != p:
		v.failHint(key, fmt.Sprintf("did you mean %q?", path.Clean(p)), "%q must be a clean path (no . or .. segments, no //, no trailing /)", p)
	default:
		return true
	}
	return false
}

// underPath reports whether p is prefix or below it, by whole segments.
func underPath(p, prefix string) bool {
	return p == prefix || prefix == "/" || strings.HasPrefix(p, prefix+"/")
}

func (v *validator) routes(r RoutesConfig, public []string) {
	byPath := map[string]string{}
	for _, route := range []struct{ key, path string }{
		{"routes.login", r.Login},
		{"routes.logout", r.Logout},
		{"routes.logout_all", r.LogoutAll},
		{"routes.session", r.Session},
		{"routes.users", r.Users},
		{"routes.jwks", r.JWKS},
		{"routes.sign_in", r.SignIn},
		{"routes.sign_out", r.SignOut},
		{"routes.verify", r.Verify},
		{"routes.oidc_sign_in", r.OIDCSignIn},
		{"routes.oidc_callback", r.OIDCCallback},
		{"routes.backchannel_logout", r.BackchannelLogout},
	} {
		if route.path == "" {
			continue // disabled
		}
		if !v.urlPath(route.key, route.path) {
			continue
		}
		if route.path == "/" {
			v.failHint(route.key, `use "" to disable a route`, "must not be / (it would take every request)")
			continue
		}
		if other, ok := byPath[route.path]; ok {
			// Report it at the key the user set, which has a line.
			at, was := route.key, other
			if v.origin[at] == "" && v.origin[was] != "" {
				at, was = was, at
			}
			v.fail(at, "%s is also %s; routes must differ", route.path, was)
			continue
		}
		byPath[route.path] = route.key
		for _, p := range public {
			if strings.HasPrefix(p, "/") && underPath(route.path, p) {
				v.fail(route.key, "%s is under public path %s", route.path, p)
				break
			}
		}
	}
}

func (v *validator) users(u UsersConfig) {
	v.ldapSecretInFile(u.LDAP)
	if !v.oneOf("users.backend", u.Backend, "file", "bolt", "postgres", "ldap") {
		return
	}
	switch u.Backend {
	case "file":
		v.nonEmpty("users.file", u.File)
		v.positive("users.reload_interval", u.ReloadInterval)
	case "bolt":
		v.nonEmpty("users.path", u.Path)
	case "postgres":
		if v.nonEmpty("users.postgres_url", u.PostgresURL) && strings.Contains(u.PostgresURL, "://") {
			if pu, err := url.Parse(u.PostgresURL); err != nil || (pu.Scheme != "postgres" && pu.Scheme != "postgresql") {
				v.fail("users.postgres_url", "must be a postgres:// URL or a key=value connection string")
			}
		}
		if u.Query == "" && !validSQLName(u.Table) {
			v.fail("users.table", "%q must be a table name: letters, digits and _, optionally schema.table", u.Table)
		}
		if u.Query != "" && u.Migrate {
			v.failHint("users.migrate", "set it to false", "has no effect with users.query (the legacy table is yours)")
		}
	case "ldap":
		v.ldap(u.LDAP, u.Registration)
	}
	if u.Query != "" && u.Backend != "postgres" {
		v.fail("users.query", "is only used with users.backend postgres (backend is %q)", u.Backend)
	}
	if u.IDQuery != "" && (u.Backend != "postgres" || u.Query == "") {
		v.fail("users.id_query", "is only used with users.query (legacy mode of users.backend postgres)")
	}
	v.identities(u)
	if v.oneOf("users.registration", u.Registration, "off", "open", "authenticated") && u.Registration != "off" && u.Backend != "ldap" {
		writable := u.Backend == "bolt" || (u.Backend == "postgres" && u.Query == "")
		if !writable {
			v.fail("users.registration", "%q needs a users backend that can store users: bolt, or postgres without users.query (backend is %q)", u.Registration, u.Backend)
		}
	}
	v.oneOf("users.password_hash", u.PasswordHash, "bcrypt", "argon2id")
	if u.MinPasswordLength < minPasswordLength {
		v.fail("users.min_password_length", "must be at least %d (got %d)", minPasswordLength, u.MinPasswordLength)
	} else if u.PasswordHash == "bcrypt" && u.MinPasswordLength > bcryptMaxPassword {
		v.fail("users.min_password_length", "must be at most %d with bcrypt, which refuses longer passwords (got %d)", bcryptMaxPassword, u.MinPasswordLength)
	}
	v.inRange("users.bcrypt_cost", int64(u.BcryptCost), 4, 31)
}

// Bounds of the identity refresh keys.
const (
	minRefreshInterval = time.Second
	maxRefreshInterval = time.Hour
	maxMaxStale        = 24 * time.Hour
	maxGroupNameBytes  = 256 // authn.MaxGroupNameBytes
)

// identities checks the keys that bound how current a user's groups are.
func (v *validator) identities(u UsersConfig) {
	if v.positive("users.refresh_interval", u.RefreshInterval) {
		if u.RefreshInterval < minRefreshInterval {
			v.fail("users.refresh_interval", "must be at least %s (got %s)", minRefreshInterval, u.RefreshInterval)
		}
		v.atMost("users.refresh_interval", u.RefreshInterval, maxRefreshInterval)
	}
	if v.positive("users.max_stale", u.MaxStale) && v.atMost("users.max_stale", u.MaxStale, maxMaxStale) &&
		u.RefreshInterval > 0 && u.MaxStale < u.RefreshInterval {
		v.fail("users.max_stale", "must be at least users.refresh_interval (%s; got %s)", u.RefreshInterval, u.MaxStale)
	}
	seen := map[string]int{}
	for i, g := range u.DefaultGroups {
		key := fmt.Sprintf("users.default_groups[%d]", i)
		if msg := groupNameProblem(g); msg != "" {
			v.fail(key, "%q %s", g, msg)
		} else if j, dup := seen[g]; dup {
			v.fail(key, "%q is listed twice (also users.default_groups[%d])", g, j)
		}
		seen[g] = i
	}
	if len(u.DefaultGroups) > 0 && (u.Backend == "file" || u.Backend == "ldap" || u.Query != "") {
		v.failHint("users.default_groups", "remove it", "has no effect: this users backend is read-only, nobody is created through tokengate (give groups in the users file or your table)")
	}
}

// groupNameProblem mirrors authn.CheckGroupName: "" when g can be a group name.
func groupNameProblem(g string) string {
	switch {
	case g == "":
		return "is empty"
	case len(g) > maxGroupNameBytes:
		return fmt.Sprintf("is longer than %d bytes", maxGroupNameBytes)
	case !utf8.ValidString(g):
		return "is not valid UTF-8"
	case strings.ContainsFunc(g, func(r rune) bool { return r < 0x20 || (0x7f <= r && r < 0xa0) }):
		return "contains a control character"
	case strings.Contains(g, ","):
		return "contains a comma (the groups header's separator)"
	case strings.TrimFunc(g, unicode.IsSpace) != g:
		return "starts or ends with a space"
	}
	return ""
}

func validSQLName(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 63 || p[0] >= '0' && p[0] <= '9' {
			return false
		}
		for _, r := range p {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
				return false
			}
		}
	}
	return true
}

func (v *validator) revocation(r RevocationConfig) {
	if v.oneOf("revocation.backend", r.Backend, "memory", "bolt", "redis") {
		switch r.Backend {
		case "bolt":
			v.nonEmpty("revocation.path", r.Path)
		case "redis":
			v.redis(r)
		}
	}
	v.positiveInt("revocation.cache_size", r.CacheSize)
	if v.positive("revocation.max_staleness", r.MaxStaleness) && r.MaxStaleness > maxMaxStaleness {
		v.failHint("revocation.max_staleness", "it bounds how long a revoked token may still pass", "must be at most %s (got %s)", maxMaxStaleness, r.MaxStaleness)
	}
	v.oneOf("revocation.on_store_error", r.OnStoreError, "deny", "allow")
}

// maxRedisMinReplicas bounds revocation.redis_min_replicas: more replicas
// than that per primary is not a deployment anyone runs; a typo is likelier.
const maxRedisMinReplicas = 16

func (v *validator) redis(r RevocationConfig) {
	v.inRange("revocation.redis_min_replicas", int64(r.RedisMinReplicas), 0, maxRedisMinReplicas)
	if len(r.RedisPrefix) > 128 || strings.ContainsFunc(r.RedisPrefix, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		v.fail("revocation.redis_prefix", "must be at most 128 characters without spaces or control characters")
	}
	if len(r.RedisAddrs) > 0 {
		for i, a := range r.RedisAddrs {
			key := fmt.Sprintf("revocation.redis_addrs[%d]", i)
			host, port, err := net.SplitHostPort(a)
			if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || n == 0 || !validHost(host) {
				v.fail(key, "invalid address %q: want host:port", a)
			}
		}
		return
	}
	if r.RedisMasterName != "" {
		v.fail("revocation.redis_master_name", "needs revocation.redis_addrs (the sentinels)")
	}
	if r.RedisURL == "" {
		v.fail("revocation.redis_url", "must be set (or revocation.redis_addrs) with backend redis")
		return
	}
	u, err := url.Parse(r.RedisURL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
		v.fail("revocation.redis_url", "must be a redis://, rediss:// or unix:// URL")
	}
}

func (v *validator) browser(b BrowserConfig, r RoutesConfig) {
	if r.SignOut != "" && r.SignIn == "" {
		v.fail("routes.sign_out", "needs routes.sign_in (browser sign-in is off); set both or neither")
	}
	name := strings.ToLower(b.CookieName)
	switch {
	case b.CookieName == "":
		v.fail("browser.cookie_name", "must not be empty")
	case strings.IndexFunc(b.CookieName, func(r rune) bool { return !isTokenChar(r) }) >= 0:
		v.fail("browser.cookie_name", "%q must be a cookie name (letters, digits, !#$%%&'*+-.^_`|~)", b.CookieName)
	case strings.HasPrefix(name, "__host-") || strings.HasPrefix(name, "__secure-"):
		v.fail("browser.cookie_name", "%q must not carry a __Host- or __Secure- prefix (tokengate sets the attributes itself)", b.CookieName)
	}
	if d := b.CookieDomain; d != "" {
		c := http.Cookie{Name: "x", Value: "x", Domain: d}
		if c.Valid() != nil || strings.ContainsAny(d, ":/") {
			v.fail("browser.cookie_domain", "%q is not a cookie domain (a host name such as example.com, no scheme or port)", d)
		}
	}
	v.nonEmpty("browser.title", b.Title)
	for i, p := range b.QueryTokenPaths {
		// Segment prefixes like public_paths: "/ws/" is "/ws".
		if len(p) > 1 && strings.HasSuffix(p, "/") && !strings.HasSuffix(p, "//") {
			p = strings.TrimSuffix(p, "/")
		}
		v.urlPath(fmt.Sprintf("browser.query_token_paths[%d]", i), p)
	}
	for i, h := range b.AllowedRedirectHosts {
		if d := strings.TrimPrefix(h, "."); d == "" || !validHost(d) || strings.ContainsAny(d, ":[]_") || strings.HasSuffix(d, ".") {
			v.fail(fmt.Sprintf("browser.allowed_redirect_hosts[%d]", i), "%q must be a host name (app.example.com) or a suffix (.example.com), without scheme or port", h)
		}
	}
}

// AccessRules is the rule set the proxy and check-access judge with:
// public_paths first, then access.rules, then access.default.
func (c Config) AccessRules() access.Config {
	ac := access.Config{
		Default:              c.Access.Default,
		CaseInsensitivePaths: c.Access.CaseInsensitivePaths,
		PublicPaths:          c.PublicPaths,
	}
	for _, r := range c.Access.Rules {
		ac.Rules = append(ac.Rules, access.Rule(r))
	}
	return ac
}

func (v *validator) access(c Config) {
	a := c.Access
	if h := a.GroupsHeader; h != "" {
		const key = "access.groups_header"
		norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "-")) }
		switch {
		case strings.IndexFunc(h, func(r rune) bool { return !isTokenChar(r) }) >= 0:
			v.failHint(key, "use letters, digits and !#$%&'*+-.^_`|~", "%q is not a valid header name", h)
		case norm(h) == norm(c.IdentityHeader):
			v.fail(key, "%s is also identity_header", h)
		default:
			for _, r := range reservedHeaders {
				if norm(h) == norm(r) {
					v.failHint(key, "choose a header of your own such as X-Auth-Groups", "%s is reserved", h)
				}
			}
		}
	}
	_, err := access.Compile(c.AccessRules())
	if err == nil {
		return
	}
	list, ok := err.(interface{ Unwrap() []error })
	if !ok {
		v.fail("access", "%v", err)
		return
	}
	for _, e := range list.Unwrap() {
		ae, ok := e.(*access.Error)
		if !ok {
			v.fail("access", "%v", e)
			continue
		}
		if ae.Field == "public_paths" {
			continue // reported by the public_paths checks
		}
		v.fail("access."+ae.Key(), "%s", ae.Msg)
	}
}
