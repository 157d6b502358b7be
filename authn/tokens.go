package authn

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// TokenOptions configures Tokens. Zero values get the documented defaults.
type TokenOptions struct {
	Issuer        string        // iss; default "tokengate"
	Audience      string        // aud; set and checked only when non-empty
	TTL           time.Duration // default 1h
	RefreshWindow time.Duration // how long after exp VerifyRefreshable accepts; default 0
	Leeway        time.Duration // clock skew on exp/nbf/iat; default 5s; <0 means none
	CacheSize     int           // verified-token cache entries; default 10000; <0 disables
	Now           func() time.Time
	Registerer    prometheus.Registerer // optional: tokengate_token_cache_requests_total
}

// Defaults for TokenOptions.
const (
	DefaultIssuer         = "tokengate"
	DefaultTokenTTL       = time.Hour
	DefaultLeeway         = 5 * time.Second
	DefaultTokenCacheSize = 10000
)

func (o TokenOptions) withDefaults() TokenOptions {
	if o.Issuer == "" {
		o.Issuer = DefaultIssuer
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTokenTTL
	}
	if o.RefreshWindow < 0 {
		o.RefreshWindow = 0
	}
	switch {
	case o.Leeway == 0:
		o.Leeway = DefaultLeeway
	case o.Leeway < 0:
		o.Leeway = 0
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultTokenCacheSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Tokens issues and verifies JWTs. It is safe for concurrent use.
type Tokens struct {
	opts  TokenOptions
	keys  atomic.Pointer[keySet]
	cache *tokenCache // nil when disabled
	door  *doorkeeper // which verified tokens enter cache; nil with it
}

// keySet is one immutable generation of keys, swapped whole by SetKeys.
type keySet struct {
	gen     uint64
	signing *Key
	byID    map[string]*Key
	all     []*Key // signing first, then verification keys, no duplicate kid
	parser  *jwt.Parser
	jwks    []byte // nil when there is no public key

	// The HS256 fast path (hs256.go): the header segments Issue writes for
	// each HS256 key, and the claims validator the parser uses.
	hs256     map[string]*hs256Key
	validator *jwt.Validator
}

// NewTokens signs with signing and verifies with signing plus verification.
func NewTokens(signing *Key, verification []*Key, opts TokenOptions) (*Tokens, error) {
	opts = opts.withDefaults()
	t := &Tokens{opts: opts}
	if opts.CacheSize > 0 {
		c, err := newTokenCache(opts.CacheSize, opts.Registerer)
		if err != nil {
			return nil, err
		}
		t.cache = c
		t.door = newDoorkeeper(opts.CacheSize)
	}
	if err := t.SetKeys(signing, verification); err != nil {
		return nil, err
	}
	return t, nil
}

// SetKeys swaps the keys atomically (reload); the verified-token cache is cleared.
func (t *Tokens) SetKeys(signing *Key, verification []*Key) error {
	ks, err := t.newKeySet(signing, verification)
	if err != nil {
		return err
	}
	if old := t.keys.Load(); old != nil {
		ks.gen = old.gen + 1
	}
	t.keys.Store(ks)
	// Entries carry the generation they were verified under, so an entry a
	// concurrent Verify adds after this purge is still never served.
	if t.cache != nil {
		t.cache.purge()
	}
	return nil
}

func (t *Tokens) newKeySet(signing *Key, verification []*Key) (*keySet, error) {
	if signing == nil {
		return nil, errors.New("authn: no signing key")
	}
	if !signing.CanSign() {
		return nil, fmt.Errorf("authn: signing key %s has no private part", signing.ID)
	}
	if err := CheckVerificationKeys(signing.Algorithm, verification); err != nil {
		return nil, err
	}
	ks := &keySet{signing: signing, byID: make(map[string]*Key)}
	var algs []string
	var jwks jwkSet
	for _, k := range append([]*Key{signing}, verification...) {
		if k == nil {
			return nil, errors.New("authn: nil verification key")
		}
		if err := checkAlgorithm(k.Algorithm); err != nil {
			return nil, err
		}
		if _, dup := ks.byID[k.ID]; dup {
			continue // the same key listed twice
		}
		ks.byID[k.ID] = k
		ks.all = append(ks.all, k)
		if !slices.Contains(algs, k.Algorithm) {
			algs = append(algs, k.Algorithm)
		}
		if k.public != nil {
			m, err := publicJWK(k.public)
			if err != nil {
				return nil, err
			}
			jwks.Keys = append(jwks.Keys, jwk{jwkMembers: m, Kid: k.ID, Alg: k.Algorithm, Use: "sig"})
		}
	}
	if len(jwks.Keys) > 0 {
		ks.jwks = jwks.marshal()
	}
	// The parser accepts only the algorithms of our keys; keyFunc then pins
	// each token to its own key's algorithm.
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(algs),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(t.opts.Issuer),
		jwt.WithLeeway(t.opts.Leeway),
		jwt.WithTimeFunc(t.opts.Now),
		// Canonical base64 only, so one token has exactly one spelling and
		// the cache cannot be filled with variants of it.
		jwt.WithStrictDecoding(),
	}
	if t.opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(t.opts.Audience))
	}
	ks.parser = jwt.NewParser(popts...)
	ks.validator = jwt.NewValidator(popts...)
	if err := ks.initHS256(); err != nil {
		return nil, err
	}
	return ks, nil
}

// MaxLifetime is TTL + RefreshWindow + Leeway: how long a user cutoff must be kept.
func (t *Tokens) MaxLifetime() time.Duration {
	return t.opts.TTL + t.opts.RefreshWindow + t.opts.Leeway
}

// Issue signs a token for a new sign-in of the user id subject with login
// name username: IssueSession with AuthTime now.
func (t *Tokens) Issue(subject, username string) (string, Claims, error) {
	return t.IssueSession(Session{Subject: subject, Username: username})
}

// IssueSession signs a new token for s. A zero s.AuthTime is the issue time.
func (t *Tokens) IssueSession(s Session) (string, Claims, error) {
	subject, username := s.Subject, s.Username
	if subject == "" {
		return "", Claims{}, errors.New("authn: issue: empty subject")
	}
	ks := t.keys.Load()
	// UTC and whole microseconds: the claims are exactly what Verify returns.
	now := t.opts.Now().UTC().Truncate(time.Microsecond)
	var id [16]byte
	rand.Read(id[:])
	c := Claims{
		Subject:   subject,
		Username:  username,
		ID:        base64.RawURLEncoding.EncodeToString(id[:]),
		IssuedAt:  now,
		NotBefore: now,
		ExpiresAt: now.Add(t.opts.TTL).Truncate(time.Microsecond),
		AuthTime:  s.AuthTime.UTC().Truncate(time.Microsecond),
		SessionID: s.SessionID,
	}
	if s.AuthTime.IsZero() {
		c.AuthTime = now
	}
	tc := &tokenClaims{
		Issuer:    t.opts.Issuer,
		Subject:   c.Subject,
		ExpiresAt: &numericDate{c.ExpiresAt},
		NotBefore: &numericDate{c.NotBefore},
		IssuedAt:  &numericDate{c.IssuedAt},
		ID:        c.ID,
		Name:      c.Username,
		AuthTime:  &numericDate{c.AuthTime},
		SID:       c.SessionID,
	}
	if t.opts.Audience != "" {
		tc.Audience = jwt.ClaimStrings{t.opts.Audience}
	}
	tok := jwt.NewWithClaims(ks.signing.method(), tc)
	tok.Header["kid"] = ks.signing.ID
	signed, err := tok.SignedString(ks.signing.signingKey())
	if err != nil {
		return "", Claims{}, fmt.Errorf("authn: sign token: %w", err)
	}
	if t.door != nil {
		t.door.remember(hashToken(signed)) // its first use is cached (admission.go)
	}
	return signed, c, nil
}

// Verify checks a token (cache first) and returns its claims, or an error
// wrapping ErrMalformed, ErrInvalid or ErrExpired.
func (t *Tokens) Verify(token string) (Claims, error) {
	return t.verify(token, 0)
}

// VerifyRefreshable is Verify but also accepts a token whose exp passed less
// than RefreshWindow ago. The signature and every other claim are checked
// as in Verify.
func (t *Tokens) VerifyRefreshable(token string) (Claims, error) {
	return t.verify(token, t.opts.RefreshWindow)
}

func (t *Tokens) verify(token string, grace time.Duration) (Claims, error) {
	if len(token) > MaxTokenBytes {
		return Claims{}, fmt.Errorf("%w: over %d bytes", ErrMalformed, MaxTokenBytes)
	}
	ks := t.keys.Load()
	var sum tokenHash
	if t.cache != nil {
		sum = hashToken(token)
		c, found := t.cache.get(sum, ks.gen)
		if found {
			now := t.opts.Now()
			if now.Before(c.ExpiresAt) {
				return c, nil
			}
			// Never served after exp. Within leeway (or the refresh window)
			// the full check below decides, as it would without a cache.
			t.cache.remove(sum)
			if !now.Before(c.ExpiresAt.Add(t.opts.Leeway + grace)) {
				return Claims{}, fmt.Errorf("%w: exp passed", ErrExpired)
			}
		}
	}
	c, err := t.parse(ks, token, grace)
	if err != nil {
		return Claims{}, err
	}
	if t.cache != nil && t.opts.Now().Before(c.ExpiresAt) && t.door.admit(sum) {
		t.cache.add(sum, ks.gen, c)
	}
	return c, nil
}

// parse is the uncached check: signature with the kid's key and algorithm,
// then exp (required), nbf, iss, aud (when set), sub and jti.
func (t *Tokens) parse(ks *keySet, token string, grace time.Duration) (Claims, error) {
	tc := &tokenClaims{expGrace: grace}
	handled, err := ks.parseHS256(token, tc)
	if !handled {
		_, err = ks.parser.ParseWithClaims(token, tc, ks.keyFunc)
	}
	if err != nil {
		return Claims{}, mapParseError(err)
	}
	if tc.Subject == "" || tc.ID == "" {
		return Claims{}, fmt.Errorf("%w: sub and jti are required", ErrInvalid)
	}
	c := Claims{Subject: tc.Subject, Username: tc.Name, ID: tc.ID, ExpiresAt: tc.ExpiresAt.Time, SessionID: tc.SID}
	if tc.AuthTime != nil {
		c.AuthTime = tc.AuthTime.Time
	}
	if tc.IssuedAt != nil {
		c.IssuedAt = tc.IssuedAt.Time
	}
	if tc.NotBefore != nil {
		c.NotBefore = tc.NotBefore.Time
	}
	return c, nil
}

var errUnknownKey = errors.New("no key for this kid and algorithm")

// keyFunc picks the key named by the header's kid and pins the token to
// that key's algorithm. Without a kid, every key of the header's
// algorithm is tried.
func (ks *keySet) keyFunc(tok *jwt.Token) (any, error) {
	alg := tok.Method.Alg()
	kid, hasKid := tok.Header["kid"]
	if hasKid {
		id, ok := kid.(string)
		if !ok {
			return nil, errUnknownKey
		}
		k := ks.byID[id]
		if k == nil || k.Algorithm != alg {
			return nil, errUnknownKey
		}
		return k.verifyKey(), nil
	}
	var set jwt.VerificationKeySet
	for _, k := range ks.all {
		if k.Algorithm == alg {
			set.Keys = append(set.Keys, k.verifyKey())
		}
	}
	if len(set.Keys) == 0 {
		return nil, errUnknownKey
	}
	return set, nil
}

// mapParseError turns golang-jwt's errors into our three outcomes. Claims
// are validated only after the signature, so ErrExpired always means a
// genuine token of ours.
func mapParseError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid),
		errors.Is(err, jwt.ErrTokenUnverifiable),
		errors.Is(err, jwt.ErrTokenNotValidYet),
		errors.Is(err, jwt.ErrTokenUsedBeforeIssued),
		errors.Is(err, jwt.ErrTokenInvalidIssuer),
		errors.Is(err, jwt.ErrTokenInvalidAudience),
		errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Errorf("%w: %w", ErrExpired, err)
	}
	return fmt.Errorf("%w: %w", ErrInvalid, err)
}

// tokenClaims is the JWT payload. It is our own type rather than
// jwt.RegisteredClaims so times keep sub-second precision without touching
// golang-jwt's package-global TimePrecision (see numericDate).
type tokenClaims struct {
	Issuer    string           `json:"iss,omitempty"`
	Subject   string           `json:"sub,omitempty"`
	Audience  jwt.ClaimStrings `json:"aud,omitempty"`
	ExpiresAt *numericDate     `json:"exp,omitempty"`
	NotBefore *numericDate     `json:"nbf,omitempty"`
	IssuedAt  *numericDate     `json:"iat,omitempty"`
	ID        string           `json:"jti,omitempty"`
	Name      string           `json:"name,omitempty"`
	AuthTime  *numericDate     `json:"auth_time,omitempty"`
	SID       string           `json:"sid,omitempty"`

	// expGrace moves the exp golang-jwt's validator sees later: the refresh
	// window for VerifyRefreshable, 0 otherwise. Never serialised.
	expGrace time.Duration
}

var _ jwt.Claims = (*tokenClaims)(nil)

func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) {
	if c.ExpiresAt == nil {
		return nil, nil
	}
	return &jwt.NumericDate{Time: c.ExpiresAt.Add(c.expGrace)}, nil
}

func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error) { return c.IssuedAt.jwt(), nil }
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error) {
	return c.NotBefore.jwt(), nil
}
func (c *tokenClaims) GetIssuer() (string, error)             { return c.Issuer, nil }
func (c *tokenClaims) GetSubject() (string, error)            { return c.Subject, nil }
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error) { return c.Audience, nil }

// numericDate is an RFC 7519 NumericDate with microsecond precision: it is
// written as seconds with up to six decimals and read exactly (no float
// rounding) from integer or decimal JSON numbers.
type numericDate struct{ time.Time }

func (d *numericDate) jwt() *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &jwt.NumericDate{Time: d.Time}
}

func (d numericDate) MarshalJSON() ([]byte, error) {
	us := d.Truncate(time.Microsecond).UnixMicro()
	sec, frac := us/1e6, us%1e6
	if frac < 0 {
		sec, frac = sec-1, frac+1e6
	}
	b := strconv.AppendInt(make([]byte, 0, 20), sec, 10)
	if frac != 0 {
		f := strconv.AppendInt(nil, frac+1e6, 10) // "1" + six digits
		b = append(b, '.')
		b = append(b, bytes.TrimRight(f[1:], "0")...)
	}
	return b, nil
}

// maxNumericDateSeconds bounds accepted dates (year ~5138) so arithmetic
// on them cannot overflow.
const maxNumericDateSeconds = 1e11

func (d *numericDate) UnmarshalJSON(b []byte) error {
	s := string(b)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	intPart, fracPart, hasFrac := strings.Cut(s, ".")
	if isDigits(intPart) && (!hasFrac || isDigits(fracPart)) && len(intPart) <= 12 {
		sec, _ := strconv.ParseInt(intPart, 10, 64)
		var nsec int64
		if hasFrac {
			digits := (fracPart + "000000000")[:9]
			nsec, _ = strconv.ParseInt(digits, 10, 64)
		}
		if sec > maxNumericDateSeconds {
			return errors.New("NumericDate out of range")
		}
		if neg {
			sec, nsec = -sec, -nsec
		}
		d.Time = time.Unix(sec, nsec).UTC()
		return nil
	}
	// Exponent forms such as 1.7e9 are valid JSON numbers; float precision
	// is good enough for them.
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > maxNumericDateSeconds {
		return errors.New("NumericDate is not a number in range")
	}
	sec, frac := math.Modf(f)
	d.Time = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
