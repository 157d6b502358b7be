package authn

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// LDAP presets: the user filter and login attribute a directory of that
// kind is searched with when the options leave them empty.
const (
	LDAPPresetOpenLDAP        = "openldap"
	LDAPPresetActiveDirectory = "active_directory"
)

// Active Directory's matching rules: LDAP_MATCHING_RULE_BIT_AND (a disabled
// account has bit 2 of userAccountControl) and LDAP_MATCHING_RULE_IN_CHAIN
// (membership through nested groups).
const (
	adEnabledClause  = "(!(userAccountControl:1.2.840.113556.1.4.803:=2))"
	adInChainMembers = "(member:1.2.840.113556.1.4.1941:={dn})"
)

var ldapPresets = map[string]struct{ userFilter, usernameAttribute string }{
	LDAPPresetOpenLDAP: {"(uid={username})", "uid"},
	// Only enabled person accounts: a disabled user is not found, so it
	// can neither sign in nor keep a session past the refresh interval.
	LDAPPresetActiveDirectory: {"(&(objectCategory=person)(objectClass=user)(sAMAccountName={username})" + adEnabledClause + ")", "sAMAccountName"},
}

// LDAPUsersOptions configure a directory user store (OpenLDAP, Active
// Directory, any LDAP v3 server): search as a service account, bind as the
// user found.
type LDAPUsersOptions struct {
	// URL is ldaps://host[:636] or ldap://host[:389]; required.
	URL string
	// StartTLS upgrades an ldap:// connection before anything is sent.
	StartTLS bool
	// TLS is used for ldaps:// and StartTLS: RootCAs, ServerName (default
	// the URL's host), Certificates (a client certificate). nil: system
	// roots, the URL's host.
	TLS *tls.Config
	// BindDN and BindPassword are the service account's; required.
	BindDN, BindPassword string
	// BaseDN is where users are searched (whole subtree); required.
	BaseDN string
	// Preset fills UserFilter and UsernameAttribute when empty:
	// LDAPPresetOpenLDAP (default) or LDAPPresetActiveDirectory.
	Preset string
	// UserFilter finds one user; {username} is replaced by the login name,
	// escaped (RFC 4515). Default: the preset's ((uid={username}) for
	// OpenLDAP; sAMAccountName, enabled person accounts only, for AD).
	UserFilter string
	// UsernameAttribute holds the login name (the token's name); default
	// the preset's: uid, sAMAccountName.
	UsernameAttribute string
	// IDAttribute is the user id (sub, X-Auth-UserId); default
	// UsernameAttribute. objectGUID is sent in its usual text form
	// (Microsoft's byte order), entryUUID as the directory gives it.
	IDAttribute string
	// GroupsBaseDN is where groups are searched; default BaseDN. With
	// memberOf, only groups under it count (when set).
	GroupsBaseDN string
	// GroupFilter finds the user's groups: {dn} is the user's DN, {username}
	// the login name (both escaped). "" reads memberOf from the user entry
	// (or, with NestedGroups, searches AD's in-chain membership).
	GroupFilter string
	// GroupNameAttribute names a group (the access rules' group); default cn.
	GroupNameAttribute string
	// NestedGroups (Active Directory) counts groups the user is in through
	// other groups, with the LDAP_MATCHING_RULE_IN_CHAIN filter.
	NestedGroups bool
	// DialTimeout bounds connecting (TCP, TLS, StartTLS); default 5s.
	DialTimeout time.Duration
	// Timeout bounds each bind and search; default 5s. A caller's earlier
	// deadline wins, and a cancelled context ends the request.
	Timeout time.Duration
	// MaxConns caps the open connections (the pool); default 8. Callers
	// beyond it wait for one, within their Timeout.
	MaxConns int
	// Registerer gets tokengate_ldap_request_duration_seconds{op} and
	// tokengate_ldap_errors_total{op}; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger gets warnings about entries nobody can log in as (two entries
	// for one name, no id) and ignored referrals; default discard.
	Logger *slog.Logger
	// Now is the clock for the pool's idle limit; default time.Now.
	Now func() time.Time
}

// LDAPUsers is a read-only UserStore over a directory. It never follows
// referrals: a search continuation is logged and ignored.
type LDAPUsers struct {
	opts        LDAPUsersOptions
	addr        string // host:port
	ldaps       bool
	tls         *tls.Config
	userFilter  string
	anyFilter   string // userFilter matching every user (for id lookups)
	nameAttr    string
	idAttr      string
	groupsBase  string
	groupFilter string // "" = memberOf
	groupAttr   string
	log         *slog.Logger
	now         func() time.Time
	metrics     *ldapMetrics

	slots   chan struct{} // one per open (or opening) connection
	mu      sync.Mutex
	idle    []*ldapConn
	closed  bool
	closing sync.WaitGroup // background closes of broken connections
}

var (
	_ UserStore       = (*LDAPUsers)(nil)
	_ PasswordChecker = (*LDAPUsers)(nil)
)

// Entries nobody can log in as are answered like an unknown name (never a
// store failure, which would say the name exists). All wrap ErrUserNotFound.
var (
	errLDAPManyEntries = fmt.Errorf("%w: ldap: more than one entry matches this login name", ErrUserNotFound)
	errLDAPNoID        = fmt.Errorf("%w: ldap: the entry has no single value of the id attribute", ErrUserNotFound)
	errLDAPNoName      = fmt.Errorf("%w: ldap: the entry has no value of the username attribute", ErrUserNotFound)
)

// ldapMaxGroups bounds the groups read for one user.
const ldapMaxGroups = 1000

// ldapMaxName bounds a login name sent to the directory (AD's
// userPrincipalName, the longest usual login attribute, is 1024).
const ldapMaxName = 1024

// ldapIdleLimit retires pooled connections idle this long (servers and
// firewalls drop idle connections; a fresh dial beats a failed request).
const ldapIdleLimit = time.Minute

// NewLDAPUsers checks the options and returns the store; it does not
// connect (a directory outage at start must not keep tokengate down: logins
// answer 503 until it is back). Ping tries the service bind.
func NewLDAPUsers(opts LDAPUsersOptions) (*LDAPUsers, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Hostname() == "" {
		return nil, errors.New("authn: ldap url must be ldap://host[:port] or ldaps://host[:port]")
	}
	if u.Scheme == "ldaps" && opts.StartTLS {
		return nil, errors.New("authn: ldap start_tls is for ldap:// URLs (ldaps:// is TLS already)")
	}
	if opts.BindDN == "" || opts.BindPassword == "" {
		return nil, errors.New("authn: ldap needs a bind DN and a bind password (service account)")
	}
	if opts.BaseDN == "" {
		return nil, errors.New("authn: ldap needs a base DN")
	}
	preset, ok := ldapPresets[cmpOr(opts.Preset, LDAPPresetOpenLDAP)]
	if !ok {
		return nil, fmt.Errorf("authn: ldap preset %q: want %s or %s", opts.Preset, LDAPPresetOpenLDAP, LDAPPresetActiveDirectory)
	}
	s := &LDAPUsers{
		opts:       opts,
		ldaps:      u.Scheme == "ldaps",
		userFilter: cmpOr(opts.UserFilter, preset.userFilter),
		nameAttr:   cmpOr(opts.UsernameAttribute, preset.usernameAttribute),
		groupsBase: cmpOr(opts.GroupsBaseDN, opts.BaseDN),
		groupAttr:  cmpOr(opts.GroupNameAttribute, "cn"),
		log:        opts.Logger,
		now:        opts.Now,
	}
	s.idAttr = cmpOr(opts.IDAttribute, s.nameAttr)
	if !strings.Contains(s.userFilter, "{username}") {
		return nil, errors.New("authn: ldap user filter must contain {username}")
	}
	for _, f := range []string{s.userFilter, strings.ReplaceAll(s.userFilter, "{username}", "x")} {
		if _, err := ldap.CompileFilter(f); err != nil {
			return nil, fmt.Errorf("authn: ldap user filter %q: %v", s.userFilter, err)
		}
	}
	s.anyFilter = strings.ReplaceAll(s.userFilter, "{username}", "*")
	switch {
	case opts.GroupFilter != "":
		s.groupFilter = opts.GroupFilter
	case opts.NestedGroups:
		s.groupFilter = adInChainMembers
	}
	if s.groupFilter != "" {
		f := strings.NewReplacer("{dn}", "x", "{username}", "x").Replace(s.groupFilter)
		if _, err := ldap.CompileFilter(f); err != nil {
			return nil, fmt.Errorf("authn: ldap group filter %q: %v", s.groupFilter, err)
		}
	}
	port := u.Port()
	if port == "" {
		port = "389"
		if s.ldaps {
			port = "636"
		}
	}
	s.addr = net.JoinHostPort(u.Hostname(), port)
	if s.ldaps || opts.StartTLS {
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		if opts.TLS != nil {
			s.tls = opts.TLS.Clone()
		}
		if s.tls.ServerName == "" {
			s.tls.ServerName = u.Hostname()
		}
	}
	if s.opts.DialTimeout <= 0 {
		s.opts.DialTimeout = 5 * time.Second
	}
	if s.opts.Timeout <= 0 {
		s.opts.Timeout = 5 * time.Second
	}
	if s.opts.MaxConns <= 0 {
		s.opts.MaxConns = 8
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.slots = make(chan struct{}, s.opts.MaxConns)
	s.metrics = newLDAPMetrics(opts.Registerer)
	return s, nil
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// LookupUser implements UserStore: the user and groups, no password hash
// (the directory keeps it; see CheckPassword).
func (s *LDAPUsers) LookupUser(ctx context.Context, username string) (User, error) {
	if len(username) > ldapMaxName {
		return User{}, ErrUserNotFound
	}
	var u User
	err := s.withConn(ctx, func(c *ldapConn) error {
		e, err := s.findUser(c, username)
		if err != nil {
			return err
		}
		u, err = s.userFrom(c, e, username)
		return err
	})
	return u, s.outcome(err)
}

// LookupUserByID finds the user whose id (the token's sub) is id, for the
// identity refresh: a deleted user, or one the user filter no longer
// matches (an AD account disabled), is ErrUserNotFound.
func (s *LDAPUsers) LookupUserByID(ctx context.Context, id string) (User, error) {
	value, ok := s.idFilterValue(id)
	if !ok {
		return User{}, ErrUserNotFound
	}
	filter := "(&(" + s.idAttr + "=" + value + ")" + s.anyFilter + ")"
	var u User
	err := s.withConn(ctx, func(c *ldapConn) error {
		e, err := s.searchOne(c, filter)
		if err != nil {
			return err
		}
		u, err = s.userFrom(c, e, "")
		if err == nil && !strings.EqualFold(u.ID, id) {
			return ErrUserNotFound // matched by the directory's rules, not ours
		}
		return err
	})
	return u, s.outcome(err)
}

// CheckPassword implements PasswordChecker: search the login name as the
// service account, bind as the entry found with password, then read the
// groups. An empty password is refused before any request (a simple bind
// with a name and no password is an anonymous "success" on many servers).
// A wrong password is ErrInvalidCredentials; an unknown name, or one that
// matches several entries, is ErrUserNotFound; a directory that cannot
// answer is ErrUsersUnavailable.
func (s *LDAPUsers) CheckPassword(ctx context.Context, username, password string) (User, error) {
	if password == "" {
		return User{}, ErrInvalidCredentials
	}
	if len(username) > ldapMaxName {
		return User{}, ErrUserNotFound // no directory holds such a name; not worth a request
	}
	var u User
	err := s.withConn(ctx, func(c *ldapConn) error {
		e, err := s.findUser(c, username)
		if errors.Is(err, ErrUserNotFound) {
			// One more round trip, as a bind would take, so the time
			// does not tell unknown names from wrong passwords.
			if werr := s.timed(c, "whoami", func() error { _, err := c.c.WhoAmI(nil); return err }); werr != nil {
				return werr
			}
			return err
		}
		if err != nil {
			return err
		}
		c.bound = false // whatever happens, the connection is no longer the service's
		err = s.timed(c, "bind_user", func() error { return c.c.Bind(e.DN, password) })
		if err = s.userBindOutcome(err); err != nil {
			return err
		}
		if err := s.bindService(c); err != nil {
			return err
		}
		u, err = s.userFrom(c, e, username)
		return err
	})
	return u, s.outcome(err)
}

// userBindOutcome judges the answer to a user's bind: any refusal the
// directory sends (invalid credentials, and a locked or expired account or
// a password policy, which some servers answer with other codes) is
// ErrInvalidCredentials, since a 503 would say the name exists; only a
// failure to get an answer stays an error.
func (s *LDAPUsers) userBindOutcome(err error) error {
	var le *ldap.Error
	switch {
	case err == nil:
		return nil
	case ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials):
		return ErrInvalidCredentials
	case errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork:
		s.log.Warn("ldap: the directory refused a user's bind", "result_code", le.ResultCode, "error", le.Err)
		return ErrInvalidCredentials
	}
	return err
}

// Ping checks that the directory answers the service account, through the
// pool (a new connection binds first, so a wrong DN or password, an
// unreachable server or a refused certificate is an error naming the
// cause). For check-config --probe and tokengate_dependency_up; never for
// readiness.
func (s *LDAPUsers) Ping(ctx context.Context) error {
	return s.withConn(ctx, func(c *ldapConn) error {
		return s.timed(c, "whoami", func() error { _, err := c.c.WhoAmI(nil); return err })
	})
}

// Close closes the pooled connections; later calls fail.
func (s *LDAPUsers) Close() {
	s.mu.Lock()
	s.closed = true
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	for _, c := range idle {
		c.c.Close()
	}
	s.closing.Wait()
}

// outcome turns what a request ended with into the store's answer: a
// directory failure wraps ErrUsersUnavailable (the proxy's 503), the
// user-level outcomes stay as they are.
func (s *LDAPUsers) outcome(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrUserNotFound), errors.Is(err, ErrInvalidCredentials):
		if errors.Is(err, ErrUserNotFound) && err != ErrUserNotFound {
			s.log.Warn("ldap: refused a login name the directory cannot resolve to one account", "error", err)
		}
		return err
	case errors.Is(err, ErrUsersUnavailable):
		return err
	}
	return fmt.Errorf("%w: ldap: %v", ErrUsersUnavailable, err)
}

// findUser searches the one entry for a login name.
func (s *LDAPUsers) findUser(c *ldapConn, username string) (*ldap.Entry, error) {
	filter := strings.ReplaceAll(s.userFilter, "{username}", ldap.EscapeFilter(username))
	return s.searchOne(c, filter)
}

// searchOne returns the only entry under the base DN matching filter:
// none or several is ErrUserNotFound (several is refused, never "the
// first one"). Search continuations (referrals) are not followed.
func (s *LDAPUsers) searchOne(c *ldapConn, filter string) (*ldap.Entry, error) {
	attrs := []string{s.nameAttr, s.idAttr}
	if s.groupFilter == "" {
		attrs = append(attrs, "memberOf")
	}
	// Size limit 2: enough to see a second entry, no more.
	req := ldap.NewSearchRequest(s.opts.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2, s.timeLimit(c), false, filter, attrs, nil)
	var res *ldap.SearchResult
	err := s.timed(c, "search_user", func() error {
		var err error
		res, err = c.c.Search(req)
		return err
	})
	if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		return nil, errLDAPManyEntries
	}
	if err != nil {
		return nil, err
	}
	s.noteReferrals(res)
	switch len(res.Entries) {
	case 0:
		return nil, ErrUserNotFound
	case 1:
		return res.Entries[0], nil
	}
	return nil, errLDAPManyEntries
}

func (s *LDAPUsers) noteReferrals(res *ldap.SearchResult) {
	if len(res.Referrals) > 0 {
		s.metrics.referrals.Add(float64(len(res.Referrals)))
		s.log.Info("ldap: search continuation references ignored (referrals are not followed)", "count", len(res.Referrals))
	}
}

// timeLimit is the server-side time limit of a search, in whole seconds.
func (s *LDAPUsers) timeLimit(c *ldapConn) int {
	return max(1, int((c.timeout+time.Second-1)/time.Second))
}

// userFrom builds the User of an entry: the login name (the value equal
// to typed, ignoring case, else the first), the id, the groups.
func (s *LDAPUsers) userFrom(c *ldapConn, e *ldap.Entry, typed string) (User, error) {
	names := e.GetEqualFoldAttributeValues(s.nameAttr)
	if len(names) == 0 {
		return User{}, errLDAPNoName
	}
	name := names[0]
	for _, n := range names {
		if typed != "" && foldName(n) == foldName(typed) {
			name = n
			break
		}
	}
	id, ok := s.idOf(e)
	if !ok {
		return User{}, errLDAPNoID
	}
	groups, err := s.groupsOf(c, e, name)
	if err != nil {
		return User{}, err
	}
	return User{ID: id, Username: name, Groups: groups}, nil
}

// idOf is the entry's id: the single value of the id attribute, objectGUID
// in its text form.
func (s *LDAPUsers) idOf(e *ldap.Entry) (string, bool) {
	raw := e.GetEqualFoldRawAttributeValues(s.idAttr)
	if len(raw) != 1 || len(raw[0]) == 0 {
		return "", false
	}
	if strings.EqualFold(s.idAttr, "objectGUID") {
		return formatGUID(raw[0])
	}
	return string(raw[0]), true
}

// idFilterValue is id as an assertion value for the id attribute (escaped);
// false when no entry can have it (not a GUID for objectGUID).
func (s *LDAPUsers) idFilterValue(id string) (string, bool) {
	if id == "" {
		return "", false
	}
	if strings.EqualFold(s.idAttr, "objectGUID") {
		b, ok := parseGUID(id)
		if !ok {
			return "", false
		}
		var sb strings.Builder
		for _, c := range b {
			fmt.Fprintf(&sb, "\\%02x", c)
		}
		return sb.String(), true
	}
	return ldap.EscapeFilter(id), true
}

// guidOrder is where each byte of an objectGUID goes in its text form:
// the first three fields are little-endian (Microsoft's GUID layout).
var guidOrder = [16]int{3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15}

// formatGUID writes a 16-byte objectGUID as AD tools show it:
// 00112233-4455-6677-8899-aabbccddeeff.
func formatGUID(b []byte) (string, bool) {
	if len(b) != 16 {
		return "", false
	}
	var ordered [16]byte
	for i, j := range guidOrder {
		ordered[i] = b[j]
	}
	h := hex.EncodeToString(ordered[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], true
}

// parseGUID is formatGUID's inverse (any case).
func parseGUID(s string) ([]byte, bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return nil, false
	}
	ordered, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:])
	if err != nil {
		return nil, false
	}
	b := make([]byte, 16)
	for i, j := range guidOrder {
		b[j] = ordered[i]
	}
	return b, true
}

// groupsOf reads the user's groups: memberOf (under the groups base DN),
// or the group search. Sorted, no duplicates; nil for none.
func (s *LDAPUsers) groupsOf(c *ldapConn, e *ldap.Entry, username string) ([]string, error) {
	var groups []string
	if s.groupFilter == "" {
		base, err := ldap.ParseDN(s.groupsBase)
		if err != nil {
			return nil, fmt.Errorf("groups base DN: %v", err)
		}
		memberOf := e.GetEqualFoldAttributeValues("memberOf")
		for _, v := range memberOf[:min(len(memberOf), ldapMaxGroups)] {
			dn, err := ldap.ParseDN(v)
			if err != nil || len(dn.RDNs) == 0 || (s.opts.GroupsBaseDN != "" && !base.AncestorOfFold(dn)) {
				continue
			}
			name, err := s.groupName(c, dn, v)
			if err != nil {
				return nil, err
			}
			if name != "" {
				groups = append(groups, name)
			}
		}
	} else {
		filter := strings.NewReplacer("{dn}", ldap.EscapeFilter(e.DN), "{username}", ldap.EscapeFilter(username)).Replace(s.groupFilter)
		req := ldap.NewSearchRequest(s.groupsBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, ldapMaxGroups, s.timeLimit(c), false, filter, []string{s.groupAttr}, nil)
		var res *ldap.SearchResult
		err := s.timed(c, "search_groups", func() error {
			var err error
			res, err = c.c.Search(req)
			return err
		})
		if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			return nil, err
		}
		s.noteReferrals(res)
		for _, g := range res.Entries {
			if v := g.GetEqualFoldAttributeValue(s.groupAttr); v != "" {
				groups = append(groups, v)
			}
		}
	}
	slices.Sort(groups)
	return slices.Compact(groups), nil
}

// groupName is a memberOf group's name: its first RDN's value when that
// is the group name attribute (cn=ops,... is "ops"), else read from the
// group entry.
func (s *LDAPUsers) groupName(c *ldapConn, dn *ldap.DN, raw string) (string, error) {
	for _, a := range dn.RDNs[0].Attributes {
		if strings.EqualFold(a.Type, s.groupAttr) {
			return a.Value, nil
		}
	}
	req := ldap.NewSearchRequest(raw, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, s.timeLimit(c), false, "(objectClass=*)", []string{s.groupAttr}, nil)
	var res *ldap.SearchResult
	err := s.timed(c, "search_groups", func() error {
		var err error
		res, err = c.c.Search(req)
		return err
	})
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if len(res.Entries) == 0 {
		return "", nil
	}
	return res.Entries[0].GetEqualFoldAttributeValue(s.groupAttr), nil
}

// bindService binds c as the service account.
func (s *LDAPUsers) bindService(c *ldapConn) error {
	err := s.timed(c, "bind_service", func() error { return c.c.Bind(s.opts.BindDN, s.opts.BindPassword) })
	if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		// The operator's mistake, not the user's: never a 401.
		return errors.New("the service account's bind was refused (invalid credentials): check users.ldap.bind_dn and its password")
	}
	if err != nil {
		return err
	}
	c.bound = true
	return nil
}

// timed runs one request on c, within the request's timeout, and records
// its duration and whether it failed (a directory error, not a user's
// wrong password or an unknown name).
func (s *LDAPUsers) timed(c *ldapConn, op string, do func() error) error {
	c.c.SetTimeout(c.timeout)
	start := time.Now()
	err := do()
	s.metrics.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !ldap.IsErrorAnyOf(err, ldap.LDAPResultInvalidCredentials, ldap.LDAPResultSizeLimitExceeded, ldap.LDAPResultNoSuchObject) {
		s.metrics.errors.WithLabelValues(op).Inc()
	}
	if err != nil && brokenConn(err) {
		c.broken = true
	}
	return err
}

// brokenConn reports whether err leaves the connection unusable: a network
// error or a timeout (the answer may still come, out of turn), as opposed
// to an LDAP result the server sent.
func brokenConn(err error) bool {
	var le *ldap.Error
	if !errors.As(err, &le) {
		return true
	}
	return le.ResultCode >= ldap.ErrorNetwork
}

type ldapMetrics struct {
	duration  *prometheus.HistogramVec
	errors    *prometheus.CounterVec
	referrals prometheus.Counter
}

func newLDAPMetrics(reg prometheus.Registerer) *ldapMetrics {
	m := &ldapMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokengate_ldap_request_duration_seconds",
			Help:    "Time of each directory request (op: dial, bind_service, search_user, bind_user, whoami, search_groups), failures included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokengate_ldap_errors_total",
			Help: "Directory requests that failed (unreachable, timed out, refused the service account); a wrong user password is not an error.",
		}, []string{"op"}),
		referrals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokengate_ldap_referrals_ignored_total",
			Help: "Search continuation references (referrals) the directory returned and tokengate did not follow.",
		}),
	}
	// Every series exists from the start, so a rate over errors is 0, not
	// absent, before the first failure.
	for _, op := range []string{"dial", "bind_service", "search_user", "bind_user", "whoami", "search_groups"} {
		m.duration.WithLabelValues(op)
		m.errors.WithLabelValues(op)
	}
	if reg != nil {
		reg.MustRegister(m.duration, m.errors, m.referrals)
	}
	return m
}
