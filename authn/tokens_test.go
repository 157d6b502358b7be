package authn

import (
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tokengate/internal/testclock"
)

// testClock is an injectable clock tests move by hand.
type testClock = testclock.Clock

func newTestClock() *testClock {
	return testclock.New(time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC))
}

func newTestTokens(t testing.TB, signing *Key, verification []*Key, opts TokenOptions) *Tokens {
	t.Helper()
	tk, err := NewTokens(signing, verification, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// decodeSegment returns the JSON object of a token's header (0) or payload (1).
func decodeSegment(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	for _, alg := range allAlgorithms {
		t.Run(alg, func(t *testing.T) {
			clock := newTestClock()
			key := testKey(t, alg, 0)
			tk := newTestTokens(t, key, nil, TokenOptions{TTL: 30 * time.Minute, Now: clock.Now})
			token, issued, err := tk.Issue("user-42", "marco")
			if err != nil {
				t.Fatal(err)
			}
			got, err := tk.Verify(token)
			if err != nil {
				t.Fatal(err)
			}
			if got != issued {
				t.Errorf("Verify = %+v\nIssue  = %+v", got, issued)
			}
			if got.Subject != "user-42" || got.Username != "marco" ||
				!got.ExpiresAt.Equal(clock.Now().Add(30*time.Minute)) || !got.IssuedAt.Equal(clock.Now()) {
				t.Errorf("claims = %+v", got)
			}
			if id, err := base64.RawURLEncoding.DecodeString(got.ID); err != nil || len(id) != 16 {
				t.Errorf("jti %q is not 128 bits of base64url", got.ID)
			}
			h := decodeSegment(t, token, 0)
			if h["kid"] != key.ID || h["alg"] != alg {
				t.Errorf("header = %v, want kid %q alg %s", h, key.ID, alg)
			}
			p := decodeSegment(t, token, 1)
			if p["iss"] != "tokengate" || p["sub"] != "user-42" || p["name"] != "marco" || p["jti"] != got.ID {
				t.Errorf("payload = %v", p)
			}
			if _, ok := p["aud"]; ok {
				t.Errorf("aud set without an audience: %v", p["aud"])
			}
			if iat := p["iat"].(json.Number).String(); iat != "1893553445.123456" {
				t.Errorf("iat = %s, want 1893553445.123456", iat)
			}
		})
	}
}

func TestIssuedAtSubSecond(t *testing.T) {
	clock := newTestClock()
	tk := newTestTokens(t, testKey(t, AlgEdDSA, 0), nil, TokenOptions{Now: clock.Now})
	a, ca, _ := tk.Issue("u", "u")
	clock.Advance(time.Millisecond)
	b, cb, _ := tk.Issue("u", "u")
	va, _ := tk.Verify(a)
	vb, err := tk.Verify(b)
	if err != nil {
		t.Fatal(err)
	}
	if !vb.IssuedAt.After(va.IssuedAt) || vb.IssuedAt.Sub(va.IssuedAt) != time.Millisecond {
		t.Errorf("iat %v and %v: want 1ms apart", va.IssuedAt, vb.IssuedAt)
	}
	if !va.IssuedAt.Equal(ca.IssuedAt) || !vb.IssuedAt.Equal(cb.IssuedAt) {
		t.Errorf("verified iat differs from issued iat")
	}
	if jwt.TimePrecision != time.Second {
		t.Errorf("jwt.TimePrecision was changed to %v; it is a package global", jwt.TimePrecision)
	}
}

func TestNumericDateJSON(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
	}{
		{"1700000000", time.Unix(1700000000, 0)},
		{"1700000000.5", time.Unix(1700000000, 500000000)},
		{"1700000000.000001", time.Unix(1700000000, 1000)},
		{"1700000000.1234567891", time.Unix(1700000000, 123456789)},
		{"1.7e9", time.Unix(1700000000, 0)},
		{"-1.5", time.Unix(-2, 500000000)},
	}
	for _, tt := range tests {
		var d numericDate
		if err := d.UnmarshalJSON([]byte(tt.in)); err != nil || !d.Equal(tt.want) {
			t.Errorf("%s -> %v, %v; want %v", tt.in, d.Time, err, tt.want)
		}
	}
	for _, bad := range []string{`"1700000000"`, "1e300", "true", "999999999999999"} {
		var d numericDate
		if err := d.UnmarshalJSON([]byte(bad)); err == nil {
			t.Errorf("%s accepted as %v", bad, d.Time)
		}
	}
	for _, tt := range []struct {
		t    time.Time
		want string
	}{
		{time.Unix(1700000000, 0), "1700000000"},
		{time.Unix(1700000000, 120000000), "1700000000.12"},
		{time.Unix(1700000000, 1999), "1700000000.000001"},
	} {
		b, _ := numericDate{tt.t}.MarshalJSON()
		if string(b) != tt.want {
			t.Errorf("marshal %v = %s, want %s", tt.t, b, tt.want)
		}
	}
}

// sign makes a token by hand, as an attacker (or an old issuer) would.
func sign(t *testing.T, method jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyHostileTokens(t *testing.T) {
	clock := newTestClock()
	now := clock.Now()
	ed := testKey(t, AlgEdDSA, 0)
	rs := testKey(t, AlgRS256, 0)
	hs := testKey(t, AlgHS256, 0)
	// HS256 signs and the asymmetric keys verify: the one mix of an HS256
	// secret and public keys that CheckVerificationKeys allows.
	tk := newTestTokens(t, hs, []*Key{ed, rs}, TokenOptions{Audience: "app", Now: clock.Now, CacheSize: -1})
	good, _, err := tk.Issue("alice", "alice")
	if err != nil {
		t.Fatal(err)
	}
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "tokengate", "aud": "app", "sub": "alice", "jti": "j1",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}
	kid := func(k *Key) map[string]any { return map[string]any{"kid": k.ID} }
	edPubDER, _ := x509.MarshalPKIXPublicKey(ed.public)
	edPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: edPubDER})
	rsPubDER, _ := x509.MarshalPKIXPublicKey(rs.public)
	rsPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsPubDER})
	otherEd := testKey(t, AlgEdDSA, 1)
	parts := strings.Split(good, ".")
	tampered := map[string]any{}
	json.Unmarshal(must(base64.RawURLEncoding.DecodeString(parts[1])), &tampered)
	tampered["sub"] = "admin"
	tamperedPayload := base64.RawURLEncoding.EncodeToString(must(json.Marshal(tampered)))

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"tampered payload", parts[0] + "." + tamperedPayload + "." + parts[2], ErrInvalid},
		{"signature removed", parts[0] + "." + parts[1] + ".", ErrInvalid},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid(ed), claims(nil)), ErrInvalid},
		{"alg none without kid", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, claims(nil)), ErrInvalid},
		{"expired", sign(t, jwt.SigningMethodEdDSA, ed.private, kid(ed), claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), ErrExpired},
		{"nbf in the future", sign(t, jwt.SigningMethodEdDSA, ed.private, kid(ed), claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), ErrInvalid},
		{"wrong issuer", sign(t, jwt.SigningMethodEdDSA, ed.private, kid(ed), claims(func(c jwt.MapClaims) { c["iss"] = "evil" })), ErrInvalid},
		{"no issuer", sign(t, jwt.SigningMethodEdDSA, ed.private, kid(ed), claims(func(c jwt.MapClaims) { delete(c, "iss") })), ErrInvalid},
		{"wrong audience", sign(t, jwt.SigningMethodEdDSA, ed.private, kid(ed), claims(func(c jwt.MapClaims) { c["aud"] = "other" })), ErrInvalid},
		{"no audience", sign(t, jwt.SigningMethodEdDSA, ed.private, kid(ed), claims(func(c jwt.MapClaims) { delete(c, "aud") })), ErrInvalid},
		{"missing exp", sign(t, jwt.SigningMethodEdDSA, ed.private, kid(ed), claims(func(c jwt.MapClaims) { delete(c, "exp") })), ErrInvalid},
		{"missing sub", sign(t, jwt.SigningMethodEdDSA, ed.private, kid(ed), claims(func(c jwt.MapClaims) { delete(c, "sub") })), ErrInvalid},
		{"missing jti", sign(t, jwt.SigningMethodEdDSA, ed.private, kid(ed), claims(func(c jwt.MapClaims) { delete(c, "jti") })), ErrInvalid},
		{"exp as string", sign(t, jwt.SigningMethodEdDSA, ed.private, kid(ed), claims(func(c jwt.MapClaims) { c["exp"] = "soon" })), ErrMalformed},
		{"signed by another key, our kid", sign(t, jwt.SigningMethodEdDSA, otherEd.private, kid(ed), claims(nil)), ErrInvalid},
		{"signed by another key, its kid", sign(t, jwt.SigningMethodEdDSA, otherEd.private, kid(otherEd), claims(nil)), ErrInvalid},
		{"signed by another key, no kid", sign(t, jwt.SigningMethodEdDSA, otherEd.private, nil, claims(nil)), ErrInvalid},
		{"HS256 with the EdDSA public key PEM", sign(t, jwt.SigningMethodHS256, edPubPEM, kid(ed), claims(nil)), ErrInvalid},
		{"HS256 with the EdDSA public key bytes", sign(t, jwt.SigningMethodHS256, []byte(ed.public.(ed25519.PublicKey)), kid(ed), claims(nil)), ErrInvalid},
		{"HS256 with the RSA public key PEM", sign(t, jwt.SigningMethodHS256, rsPubPEM, kid(rs), claims(nil)), ErrInvalid},
		{"HS256 with the RSA public key PEM, no kid", sign(t, jwt.SigningMethodHS256, rsPubPEM, nil, claims(nil)), ErrInvalid},
		{"RS256 key under the HS256 kid", sign(t, jwt.SigningMethodRS256, rs.private, kid(hs), claims(nil)), ErrInvalid},
		{"HS512 with our secret", sign(t, jwt.SigningMethodHS512, hs.secret, kid(hs), claims(nil)), ErrInvalid},
		{"unknown kid", sign(t, jwt.SigningMethodEdDSA, ed.private, map[string]any{"kid": "nope"}, claims(nil)), ErrInvalid},
		{"kid not a string", sign(t, jwt.SigningMethodEdDSA, ed.private, map[string]any{"kid": 7}, claims(nil)), ErrInvalid},
		{"over 8 KiB", sign(t, jwt.SigningMethodEdDSA, ed.private, kid(ed), claims(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", MaxTokenBytes) })), ErrMalformed},
		{"garbage", "not a token", ErrMalformed},
		{"empty", "", ErrMalformed},
		{"bad base64", "a.b.c", ErrMalformed},
		{"non-canonical base64 signature", parts[0] + "." + parts[1] + "." + flipLastBits(parts[2]), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tk.Verify(tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %+v, %v; want %v", c, err, tt.want)
			}
			if _, err := tk.VerifyRefreshable(tt.token); err == nil {
				t.Errorf("VerifyRefreshable accepted it")
			}
		})
	}
	// The good token and the same claims signed by each of our keys pass.
	for name, tok := range map[string]string{
		"issued":       good,
		"RS256 key":    sign(t, jwt.SigningMethodRS256, rs.private, kid(rs), claims(nil)),
		"HS256 key":    sign(t, jwt.SigningMethodHS256, hs.secret, kid(hs), claims(nil)),
		"EdDSA no kid": sign(t, jwt.SigningMethodEdDSA, ed.private, nil, claims(nil)),
	} {
		if _, err := tk.Verify(tok); err != nil {
			t.Errorf("%s: Verify = %v, want ok", name, err)
		}
	}
}

// flipLastBits changes the unused low bits of the last base64 character, a
// different string that a lax decoder reads as the same bytes.
func flipLastBits(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[i^1])
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestVerifyLeeway(t *testing.T) {
	clock := newTestClock()
	key := testKey(t, AlgES256, 0)
	tk := newTestTokens(t, key, nil, TokenOptions{TTL: time.Minute, Leeway: 5 * time.Second, Now: clock.Now})
	tok, _, _ := tk.Issue("u", "u")
	clock.Advance(time.Minute + 4*time.Second)
	if _, err := tk.Verify(tok); err != nil {
		t.Fatalf("within leeway after exp: %v", err)
	}
	clock.Advance(time.Second)
	if _, err := tk.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("past leeway: %v, want ErrExpired", err)
	}
	// nbf slightly in the future (a peer's clock ahead) is within leeway.
	ahead := newTestClock()
	ahead.Advance(3 * time.Second)
	issuer := newTestTokens(t, key, nil, TokenOptions{Now: ahead.Now})
	verifier := newTestTokens(t, key, nil, TokenOptions{Now: newTestClock().Now})
	early, _, _ := issuer.Issue("u", "u")
	if _, err := verifier.Verify(early); err != nil {
		t.Errorf("nbf 3s ahead, leeway 5s: %v", err)
	}
	ahead.Advance(3 * time.Second)
	tooEarly, _, _ := issuer.Issue("u", "u")
	if _, err := verifier.Verify(tooEarly); !errors.Is(err, ErrInvalid) {
		t.Errorf("nbf 6s ahead, leeway 5s: %v, want ErrInvalid", err)
	}
}

func TestVerifyRefreshable(t *testing.T) {
	clock := newTestClock()
	tk := newTestTokens(t, testKey(t, AlgEdDSA, 0), nil, TokenOptions{
		TTL: time.Hour, RefreshWindow: 10 * time.Minute, Leeway: time.Second, Now: clock.Now})
	tok, _, _ := tk.Issue("u", "u")
	if _, err := tk.VerifyRefreshable(tok); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	clock.Advance(time.Hour + 5*time.Minute)
	if _, err := tk.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Errorf("Verify 5m after exp = %v, want ErrExpired", err)
	}
	c, err := tk.VerifyRefreshable(tok)
	if err != nil || c.Subject != "u" {
		t.Errorf("VerifyRefreshable 5m after exp = %+v, %v; want ok", c, err)
	}
	clock.Advance(6 * time.Minute)
	if _, err := tk.VerifyRefreshable(tok); !errors.Is(err, ErrExpired) {
		t.Errorf("VerifyRefreshable 11m after exp = %v, want ErrExpired", err)
	}
	// Inside the window, the signature still counts.
	clock2 := newTestClock()
	tk2 := newTestTokens(t, testKey(t, AlgEdDSA, 0), nil, TokenOptions{TTL: time.Hour, RefreshWindow: 10 * time.Minute, Now: clock2.Now})
	tok2, _, _ := tk2.Issue("u", "u")
	clock2.Advance(time.Hour + time.Minute)
	parts := strings.Split(tok2, ".")
	forged := parts[0] + "." + parts[1] + "." + strings.Split(tok, ".")[2]
	if _, err := tk2.VerifyRefreshable(forged); !errors.Is(err, ErrInvalid) {
		t.Errorf("expired token with a bad signature: %v, want ErrInvalid", err)
	}
	if got := tk.MaxLifetime(); got != time.Hour+10*time.Minute+time.Second {
		t.Errorf("MaxLifetime = %v", got)
	}
}

func TestRotation(t *testing.T) {
	clock := newTestClock()
	oldKey, newKey := testKey(t, AlgEdDSA, 0), testKey(t, AlgES256, 0)
	before := newTestTokens(t, oldKey, nil, TokenOptions{Now: clock.Now})
	oldTok, _, _ := before.Issue("u", "u")

	after := newTestTokens(t, newKey, []*Key{oldKey}, TokenOptions{Now: clock.Now})
	if _, err := after.Verify(oldTok); err != nil {
		t.Errorf("old token with the old key kept for verification: %v", err)
	}
	newTok, _, _ := after.Issue("u", "u")
	if h := decodeSegment(t, newTok, 0); h["kid"] != newKey.ID {
		t.Errorf("new token signed with kid %v, want %q", h["kid"], newKey.ID)
	}
	doc, ok := after.JWKS()
	if !ok {
		t.Fatal("JWKS not ok")
	}
	var set struct{ Keys []map[string]string }
	json.Unmarshal(doc, &set)
	if len(set.Keys) != 2 || set.Keys[0]["kid"] != newKey.ID || set.Keys[1]["kid"] != oldKey.ID {
		t.Errorf("JWKS = %s, want the new then the old key", doc)
	}

	// SetKeys on a live Tokens: dropping the old key kills its tokens at
	// once, even though the verified-token cache had them.
	if err := before.SetKeys(newKey, []*Key{oldKey}); err != nil {
		t.Fatal(err)
	}
	before.Verify(oldTok) // cached now
	if err := before.SetKeys(newKey, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := before.Verify(oldTok); !errors.Is(err, ErrInvalid) {
		t.Errorf("token of a removed key: %v, want ErrInvalid", err)
	}
	if before.cache.len() != 0 {
		t.Errorf("cache holds %d entries after SetKeys", before.cache.len())
	}
	if err := before.SetKeys(nil, nil); err == nil {
		t.Error("SetKeys(nil) accepted")
	}
	if _, err := before.Verify(newTok); err != nil {
		t.Errorf("a failed SetKeys must keep the keys: %v", err)
	}
}

func TestNewTokensErrors(t *testing.T) {
	pubOnly, err := LoadVerificationKey(writePEM(t, "PUBLIC KEY", must(x509.MarshalPKIXPublicKey(testKey(t, AlgEdDSA, 0).public))))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		signing *Key
		verify  []*Key
	}{
		"no signing key":       {nil, nil},
		"public signing key":   {pubOnly, nil},
		"nil verification key": {testKey(t, AlgEdDSA, 0), []*Key{nil}},
	} {
		if _, err := NewTokens(c.signing, c.verify, TokenOptions{}); err == nil {
			t.Errorf("%s: NewTokens accepted it", name)
		}
	}
}

func TestJWKS(t *testing.T) {
	hsOnly := newTestTokens(t, testKey(t, AlgHS256, 0), nil, TokenOptions{})
	if doc, ok := hsOnly.JWKS(); ok || doc != nil {
		t.Errorf("HS256-only JWKS = %s, %v; want nothing", doc, ok)
	}
	ed, ec, rs, hs := testKey(t, AlgEdDSA, 0), testKey(t, AlgES256, 0), testKey(t, AlgRS256, 0), testKey(t, AlgHS256, 0)
	clock := newTestClock()
	tk := newTestTokens(t, hs, []*Key{ed, ec, rs, ed}, TokenOptions{Now: clock.Now})
	doc, ok := tk.JWKS()
	if !ok {
		t.Fatal("JWKS not ok with public verification keys")
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		ed.ID: {"OKP", "EdDSA", "crv", "x"},
		ec.ID: {"EC", "ES256", "crv", "x", "y"},
		rs.ID: {"RSA", "RS256", "n", "e"},
	}
	if len(set.Keys) != len(want) {
		t.Fatalf("JWKS has %d keys, want %d: %s", len(set.Keys), len(want), doc)
	}
	for _, k := range set.Keys {
		w, ok := want[k["kid"].(string)]
		if !ok || k["kty"] != w[0] || k["alg"] != w[1] || k["use"] != "sig" {
			t.Errorf("JWK %v, want kty %v", k, w)
			continue
		}
		for _, m := range w[2:] {
			if k[m] == "" || k[m] == nil {
				t.Errorf("JWK %s lacks %s", k["kid"], m)
			}
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("JWK %s publishes private member %q", k["kid"], private)
			}
		}
	}
	if strings.Contains(string(doc), string(hs.secret)) || strings.Contains(string(doc), hs.ID) {
		t.Errorf("JWKS mentions the HS256 key: %s", doc)
	}
	// A relying party can verify with the published Ed25519 key alone.
	for _, k := range set.Keys {
		if k["kty"] != "OKP" {
			continue
		}
		pub := ed25519.PublicKey(must(base64.RawURLEncoding.DecodeString(k["x"].(string))))
		tok := sign(t, jwt.SigningMethodEdDSA, ed.private, nil, jwt.MapClaims{"sub": "x"})
		if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return pub, nil }); err != nil {
			t.Errorf("token does not verify with the JWKS key: %v", err)
		}
	}
	// The RSA JWK round-trips to the same public key.
	for _, k := range set.Keys {
		if k["kty"] == "RSA" {
			n := must(base64.RawURLEncoding.DecodeString(k["n"].(string)))
			if pub := rs.public.(*rsa.PublicKey); string(pub.N.Bytes()) != string(n) {
				t.Error("JWKS n differs from the key's modulus")
			}
		}
	}
}

func FuzzVerify(f *testing.F) {
	key := testKey(f, AlgEdDSA, 0)
	hs := testKey(f, AlgHS256, 0)
	clock := newTestClock()
	tk, err := NewTokens(hs, []*Key{key}, TokenOptions{Now: clock.Now})
	if err != nil {
		f.Fatal(err)
	}
	valid, _, _ := newTestTokens(f, key, nil, TokenOptions{Now: clock.Now}).Issue("u", "u")
	validHS, _, _ := tk.Issue("u", "u")
	f.Add(valid)
	f.Add(validHS)
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := tk.Verify(token)
		if err == nil && token != valid && token != validHS {
			t.Fatalf("accepted a token we never issued: %q -> %+v", token, c)
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired) {
			t.Fatalf("error %v wraps none of ErrMalformed, ErrInvalid, ErrExpired", err)
		}
		if _, err := tk.VerifyRefreshable(token); err == nil && token != valid && token != validHS {
			t.Fatalf("VerifyRefreshable accepted a token we never issued: %q", token)
		}
	})
}

// A renewal carries the sign-in's auth_time and sid; a new sign-in's
// auth_time is its issue time; Verify returns both exactly.
func TestIssueSessionAuthTime(t *testing.T) {
	clock := newTestClock()
	tk := newTestTokens(t, testKey(t, AlgEdDSA, 0), nil, TokenOptions{Now: clock.Now})

	_, first, err := tk.Issue("u1", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !first.AuthTime.Equal(first.IssuedAt) || first.SessionID != "" {
		t.Fatalf("new sign-in: auth_time %v, iat %v, sid %q; want auth_time = iat, no sid", first.AuthTime, first.IssuedAt, first.SessionID)
	}
	signedIn := first.AuthTime
	clock.Advance(40 * time.Minute)
	tok, renewed, err := tk.IssueSession(Session{Subject: "u1", Username: "alice", AuthTime: signedIn, SessionID: "idp-s1"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := tk.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !got.AuthTime.Equal(signedIn) || got.SessionID != "idp-s1" || !got.IssuedAt.After(signedIn) {
		t.Fatalf("renewal verified as auth_time %v sid %q iat %v; want auth_time %v sid idp-s1, later iat", got.AuthTime, got.SessionID, got.IssuedAt, signedIn)
	}
	if !renewed.SignedInAt().Equal(signedIn) || !(Claims{IssuedAt: clock.Now()}).SignedInAt().Equal(clock.Now()) {
		t.Fatal("SignedInAt must be auth_time, or iat without it")
	}
}
