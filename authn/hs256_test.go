package authn

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestHS256FastPathMatchesGolangJWT checks the HS256 fast path against
// golang-jwt's full path on hostile and valid tokens under an HS256 key:
// the same claims and the same outcome (ErrMalformed, ErrInvalid,
// ErrExpired or none), and the fast path really serves our own tokens.
func TestHS256FastPathMatchesGolangJWT(t *testing.T) {
	clock := newTestClock()
	now := clock.Now()
	hs := testKey(t, AlgHS256, 0)
	oldHS := testKey(t, AlgHS256, 1)
	ed := testKey(t, AlgEdDSA, 0)
	tk := newTestTokens(t, hs, []*Key{oldHS, ed}, TokenOptions{Audience: "app", Now: clock.Now, CacheSize: -1})
	good, _, err := tk.Issue("alice", "alice")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "tokengate", "aud": "app", "sub": "alice", "jti": "j1",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}
	kid := func(k *Key) map[string]any { return map[string]any{"kid": k.ID} }
	hsSign := func(edit func(jwt.MapClaims)) string {
		return sign(t, jwt.SigningMethodHS256, hs.secret, kid(hs), claims(edit))
	}
	// resign keeps our header and signs any payload bytes with our secret.
	resign := func(payload []byte) string {
		in := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload)
		sig, err := jwt.SigningMethodHS256.Sign(in, hs.secret)
		if err != nil {
			t.Fatal(err)
		}
		return in + "." + base64.RawURLEncoding.EncodeToString(sig)
	}

	tests := []struct {
		name  string
		token string
		want  error // nil: valid
		fast  bool  // the fast path decides it
	}{
		{"issued", good, nil, true},
		{"signed by the helper", hsSign(nil), nil, true},
		{"old HS256 key", sign(t, jwt.SigningMethodHS256, oldHS.secret, kid(oldHS), claims(nil)), nil, true},
		{"EdDSA key", sign(t, jwt.SigningMethodEdDSA, ed.private, kid(ed), claims(nil)), nil, false},
		{"HS256 without kid", sign(t, jwt.SigningMethodHS256, hs.secret, nil, claims(nil)), nil, false},
		{"expired", hsSign(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }), ErrExpired, true},
		{"within leeway", hsSign(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Second).Unix() }), nil, true},
		{"nbf in the future", hsSign(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }), ErrInvalid, true},
		{"wrong issuer", hsSign(func(c jwt.MapClaims) { c["iss"] = "evil" }), ErrInvalid, true},
		{"wrong audience", hsSign(func(c jwt.MapClaims) { c["aud"] = "other" }), ErrInvalid, true},
		{"no audience", hsSign(func(c jwt.MapClaims) { delete(c, "aud") }), ErrInvalid, true},
		{"missing exp", hsSign(func(c jwt.MapClaims) { delete(c, "exp") }), ErrInvalid, true},
		{"missing sub", hsSign(func(c jwt.MapClaims) { delete(c, "sub") }), ErrInvalid, true},
		{"exp as string", hsSign(func(c jwt.MapClaims) { c["exp"] = "soon" }), ErrMalformed, false},
		{"payload not JSON", resign([]byte("not json")), ErrMalformed, false},
		{"payload JSON array", resign([]byte("[1,2]")), ErrMalformed, false},
		{"tampered payload", parts[0] + "." + hsSign(func(c jwt.MapClaims) { c["sub"] = "admin" })[len(parts[0])+1:strings.LastIndexByte(hsSign(nil), '.')] + "." + parts[2], ErrInvalid, false},
		{"signature removed", parts[0] + "." + parts[1] + ".", ErrInvalid, false},
		{"signature of another token", parts[0] + "." + parts[1] + "." + strings.Split(hsSign(nil), ".")[2], ErrInvalid, false},
		{"non-canonical base64 signature", parts[0] + "." + parts[1] + "." + flipLastBits(parts[2]), ErrMalformed, false},
		{"padded signature", good + "=", ErrMalformed, false},
		{"signature too long", good + "AAAA", ErrInvalid, false},
		{"non-canonical base64 payload", parts[0] + "." + flipLastBits(parts[1]) + "." + parts[2], ErrMalformed, false},
		{"extra segment", good + ".x", ErrMalformed, false},
		{"two segments", parts[0] + "." + parts[1], ErrMalformed, false},
		{"alg none under our kid", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid(hs), claims(nil)), ErrInvalid, false},
		{"HS512 with our secret", sign(t, jwt.SigningMethodHS512, hs.secret, kid(hs), claims(nil)), ErrInvalid, false},
		{"HS256 with another secret, our kid", sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("k", 32)), kid(hs), claims(nil)), ErrInvalid, false},
		{"HS256 with the EdDSA kid", sign(t, jwt.SigningMethodHS256, hs.secret, kid(ed), claims(nil)), ErrInvalid, false},
	}
	ks := tk.keys.Load()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tk.Verify(tt.token)
			if !sameOutcome(err, tt.want) {
				t.Fatalf("Verify = %+v, %v; want %v", got, err, tt.want)
			}
			// golang-jwt alone, as before the fast path.
			tc := &tokenClaims{}
			_, slowErr := ks.parser.ParseWithClaims(tt.token, tc, ks.keyFunc)
			if slowErr != nil {
				slowErr = mapParseError(slowErr)
			} else if tc.Subject == "" || tc.ID == "" {
				slowErr = ErrInvalid
			}
			if !sameOutcome(err, slowErr) {
				t.Fatalf("fast path: %v; golang-jwt: %v", err, slowErr)
			}
			if err == nil && (got.Subject != tc.Subject || got.ID != tc.ID || !got.ExpiresAt.Equal(tc.ExpiresAt.Time)) {
				t.Errorf("claims %+v, golang-jwt read %+v", got, tc)
			}
			handled, _ := ks.parseHS256(tt.token, &tokenClaims{})
			if handled != tt.fast {
				t.Errorf("fast path handled = %v, want %v", handled, tt.fast)
			}
		})
	}
}

func sameOutcome(a, b error) bool {
	for _, sentinel := range []error{ErrMalformed, ErrInvalid, ErrExpired} {
		if errors.Is(a, sentinel) != errors.Is(b, sentinel) {
			return false
		}
	}
	return (a == nil) == (b == nil)
}

// TestHS256FastPathRefreshable: the refresh window reaches the fast path's
// validator as it reaches golang-jwt's.
func TestHS256FastPathRefreshable(t *testing.T) {
	clock := newTestClock()
	hs := testKey(t, AlgHS256, 0)
	tk := newTestTokens(t, hs, nil, TokenOptions{TTL: time.Minute, RefreshWindow: time.Hour, Leeway: -1, Now: clock.Now})
	tok, _, err := tk.Issue("alice", "alice")
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	if _, err := tk.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("Verify after exp = %v, want ErrExpired", err)
	}
	if c, err := tk.VerifyRefreshable(tok); err != nil || c.Subject != "alice" {
		t.Fatalf("VerifyRefreshable within the window = %+v, %v", c, err)
	}
	clock.Advance(2 * time.Hour)
	if _, err := tk.VerifyRefreshable(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("VerifyRefreshable past the window = %v, want ErrExpired", err)
	}
}

// TestHS256ConcurrentVerify shares the pooled HMACs between goroutines
// (run with -race): every token verifies, a forged one never does.
func TestHS256ConcurrentVerify(t *testing.T) {
	hs := testKey(t, AlgHS256, 0)
	tk := newTestTokens(t, hs, nil, TokenOptions{CacheSize: -1})
	good, _, err := tk.Issue("alice", "alice")
	if err != nil {
		t.Fatal(err)
	}
	// Change the signature's first character: its last one carries bits
	// base64 decoding may drop, so changing it can leave the bytes alone.
	i := strings.LastIndexByte(good, '.') + 1
	flip := byte('A')
	if good[i] == 'A' {
		flip = 'B'
	}
	forged := good[:i] + string(flip) + good[i+1:]
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 200 {
				if _, err := tk.Verify(good); err != nil {
					errs <- err
					return
				}
				if _, err := tk.Verify(forged); err == nil {
					errs <- errors.New("forged token accepted")
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// claimsDecodingCases are payloads around the shape Issue writes.
var claimsDecodingCases = []string{
	`{"iss":"tokengate","sub":"alice","exp":1795324684.235462,"nbf":1795321084.235462,"iat":1795321084,"jti":"bicAPF8Bi8_VwHKZ0f35oQ","name":"alice"}`,
	`{"sub":"a","exp":0,"jti":"j"}`,
	`{"sub":"a","exp":1.5,"jti":"j"}`,
	`{"sub":"a","exp":1.1234567891,"jti":"j"}`,
	`{}`,
	`{"sub":"a","sub":"b"}`,
	`{"SUB":"a"}`,
	`{"sub":"a\u0062"}`,
	`{"sub":"a\"b"}`,
	`{"sub":"é"}`,
	`{"sub":"a","aud":"app"}`,
	`{"sub":"a","aud":["app"]}`,
	`{"sub":"a","pad":"x"}`,
	`{ "sub":"a"}`,
	`{"sub": "a"}`,
	`{"sub":null}`,
	`{"exp":null}`,
	`{"exp":"1"}`,
	`{"exp":01}`,
	`{"exp":1.}`,
	`{"exp":-1}`,
	`{"exp":1e9}`,
	`{"exp":1E9}`,
	`{"exp":1234567890123}`,
	`{"exp":100000000001}`,
	`{"exp":99999999999.999999999}`,
	`{"sub":"a",}`,
	`{,"sub":"a"}`,
	`{"sub":"a"}}`,
	`{"sub":"a"`,
	`{"sub"}`,
	`{"sub":}`,
	`{"sub":"a"
}`,
	`[]`,
	`null`,
	``,
	`{"name":"x","iss":"y","iat":7,"nbf":8}`,
}

// TestDecodeClaimsMatchesEncodingJSON: whatever the flat reader accepts, it
// reads exactly as encoding/json; everything else goes to encoding/json.
func TestDecodeClaimsMatchesEncodingJSON(t *testing.T) {
	flat := 0
	for _, in := range claimsDecodingCases {
		t.Run(in, func(t *testing.T) {
			if checkDecodeClaims(t, []byte(in)) {
				flat++
			}
		})
	}
	if flat < 5 {
		t.Errorf("the flat reader took only %d cases: it is not exercised", flat)
	}
}

func FuzzDecodeClaims(f *testing.F) {
	for _, in := range claimsDecodingCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) { checkDecodeClaims(t, in) })
}

// checkDecodeClaims compares decodeClaims with json.Unmarshal on in and
// reports whether the flat reader decided.
func checkDecodeClaims(t *testing.T, in []byte) bool {
	t.Helper()
	var want tokenClaims
	wantErr := json.Unmarshal(in, &want)
	var got tokenClaims
	gotErr := decodeClaims(in, &got)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("decodeClaims(%q) error %v; encoding/json %v", in, gotErr, wantErr)
	}
	tookFlat := decodeFlatClaims(in, &tokenClaims{})
	if tookFlat && wantErr != nil {
		t.Fatalf("the flat reader accepted %q, which encoding/json refuses: %v", in, wantErr)
	}
	if wantErr != nil {
		return tookFlat
	}
	dates := func(c *tokenClaims) [3]string {
		var out [3]string
		for i, d := range []*numericDate{c.ExpiresAt, c.NotBefore, c.IssuedAt} {
			if d != nil {
				out[i] = d.Format(time.RFC3339Nano) + " " + d.Location().String()
			}
		}
		return out
	}
	if got.Issuer != want.Issuer || got.Subject != want.Subject || got.ID != want.ID || got.Name != want.Name ||
		!slices.Equal(got.Audience, want.Audience) || dates(&got) != dates(&want) {
		t.Fatalf("decodeClaims(%q) = %+v %v; encoding/json %+v %v", in, got, dates(&got), want, dates(&want))
	}
	return tookFlat
}
