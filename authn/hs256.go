package authn

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"hash"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
)

// The HS256 fast path verifies the tokens tokengate issues with an HS256
// key without golang-jwt's per-token work that does not depend on the
// token: decoding the header into a map (it is one of a few known
// strings), looking up the method, and hmac.New (two SHA-256 blocks of key
// setup and five allocations). Profiles of unique tokens showed those as
// a large part of a verification.
//
// It only ever accepts what golang-jwt would accept, and decides nothing
// else itself: the header segment must be byte for byte the one Issue
// writes for a key of ours (so alg is that key's, HS256, and kid is that
// key's), the signature must be that key's HMAC (hmac.Equal), and the
// claims go through golang-jwt's Validator built from the parser's own
// options (exp required, iss, aud, leeway). A token of any other shape, a
// bad signature or claims that do not decode go to the full golang-jwt
// path, which classifies the failure exactly as before.

// hs256SigSegmentLen is the base64url length of an HMAC-SHA-256.
var hs256SigSegmentLen = base64.RawURLEncoding.EncodedLen(sha256.Size)

// strictB64 is the decoding golang-jwt uses with WithStrictDecoding.
var strictB64 = base64.RawURLEncoding.Strict()

// hs256Key is an HS256 key with a pool of ready HMACs: Reset brings a used
// one back to its keyed state without redoing the key setup.
type hs256Key struct {
	key  *Key
	macs sync.Pool // hash.Hash
}

func (k *hs256Key) sum(signingInput string, out *[sha256.Size]byte) {
	mac, _ := k.macs.Get().(hash.Hash)
	if mac == nil {
		mac = hmac.New(sha256.New, k.key.secret)
	}
	// The HMAC only reads the input; hashing the string in place spares a
	// copy of the token.
	mac.Write(unsafe.Slice(unsafe.StringData(signingInput), len(signingInput)))
	mac.Sum(out[:0])
	mac.Reset()
	k.macs.Put(mac)
}

// initHS256 records the header segment Issue writes for each HS256 key.
// It asks golang-jwt for it, so it is the same bytes whatever golang-jwt's
// header encoding.
func (ks *keySet) initHS256() error {
	for _, k := range ks.all {
		if k.Algorithm != AlgHS256 {
			continue
		}
		tok := jwt.NewWithClaims(k.method(), jwt.MapClaims{})
		tok.Header["kid"] = k.ID
		s, err := tok.SigningString()
		if err != nil {
			return err
		}
		header, _, _ := strings.Cut(s, ".")
		if ks.hs256 == nil {
			ks.hs256 = make(map[string]*hs256Key)
		}
		ks.hs256[header] = &hs256Key{key: k}
	}
	return nil
}

// parseHS256 verifies token into tc when it is one of our HS256 tokens with
// a valid signature. handled is false when the full golang-jwt path must
// decide; err is then nil.
func (ks *keySet) parseHS256(token string, tc *tokenClaims) (handled bool, err error) {
	if len(ks.hs256) == 0 {
		return false, nil
	}
	header, rest, ok := strings.Cut(token, ".")
	if !ok {
		return false, nil
	}
	k := ks.hs256[header]
	if k == nil {
		return false, nil
	}
	payload, sigSeg, ok := strings.Cut(rest, ".")
	if !ok || len(sigSeg) != hs256SigSegmentLen {
		return false, nil
	}
	var sig, want [sha256.Size]byte
	if n, err := strictB64.Decode(sig[:], unsafe.Slice(unsafe.StringData(sigSeg), len(sigSeg))); err != nil || n != len(sig) {
		return false, nil
	}
	k.sum(token[:len(header)+1+len(payload)], &want)
	if !hmac.Equal(sig[:], want[:]) {
		return false, nil
	}
	// Signed by our key: from here on only the claims can be wrong.
	raw, err := strictB64.DecodeString(payload)
	if err != nil {
		return false, nil
	}
	if err := decodeClaims(raw, tc); err != nil {
		*tc = tokenClaims{expGrace: tc.expGrace} // the full path decodes afresh
		return false, nil
	}
	if err := ks.validator.Validate(tc); err != nil {
		return true, err
	}
	return true, nil
}

// decodeClaims fills tc from the payload of a token whose signature is
// already verified (only a holder of our key can reach it). Tokens Issue
// writes are a flat object of plain ASCII strings and numbers without
// whitespace; those are read here without reflection. Anything else (an
// escape, whitespace, null, a duplicate or unknown key, aud, a number
// encoding/json would reject) goes to encoding/json, so the result is
// always what json.Unmarshal gives.
func decodeClaims(raw []byte, tc *tokenClaims) error {
	if decodeFlatClaims(raw, tc) {
		return nil
	}
	*tc = tokenClaims{expGrace: tc.expGrace}
	return json.Unmarshal(raw, tc)
}

func decodeFlatClaims(b []byte, tc *tokenClaims) bool {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return false
	}
	b = b[1 : len(b)-1]
	var (
		seen  uint8
		dates *[3]numericDate
	)
	for len(b) > 0 {
		k, rest, ok := flatString(b)
		if !ok || len(rest) == 0 || rest[0] != ':' {
			return false
		}
		b = rest[1:]
		key := string(k) // no allocation: only compared
		var bit uint8
		switch key {
		case "iss", "sub", "jti", "name":
			var v []byte
			if v, b, ok = flatString(b); !ok {
				return false
			}
			s := string(v)
			switch key {
			case "iss":
				bit, tc.Issuer = 1, s
			case "sub":
				bit, tc.Subject = 2, s
			case "jti":
				bit, tc.ID = 4, s
			default:
				bit, tc.Name = 8, s
			}
		case "exp", "nbf", "iat":
			n := jsonNumberLen(b)
			if n == 0 {
				return false
			}
			if dates == nil {
				dates = new([3]numericDate) // one allocation for the three
			}
			var d *numericDate
			switch key {
			case "exp":
				bit, d = 16, &dates[0]
				tc.ExpiresAt = d
			case "nbf":
				bit, d = 32, &dates[1]
				tc.NotBefore = d
			default:
				bit, d = 64, &dates[2]
				tc.IssuedAt = d
			}
			if !flatNumericDate(b[:n], d) {
				return false
			}
			b = b[n:]
		default:
			return false
		}
		if seen&bit != 0 {
			return false // encoding/json keeps the last; not worth copying
		}
		seen |= bit
		if len(b) > 0 {
			if b[0] != ',' || len(b) == 1 {
				return false
			}
			b = b[1:]
		}
	}
	return true
}

// flatString reads a JSON string of printable ASCII without escapes and
// returns its contents.
func flatString(b []byte) (s, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return b[1:i], b[i+1:], true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// jsonNumberLen is the length of the non-negative JSON number b starts
// with, in the forms Issue writes (int, or int.frac), or 0.
func jsonNumberLen(b []byte) int {
	i := 0
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		return 0
	}
	if i < len(b) && b[i] == '.' {
		j := i + 1
		for j < len(b) && '0' <= b[j] && b[j] <= '9' {
			j++
		}
		if j == i+1 {
			return 0
		}
		i = j
	}
	if i < len(b) && b[i] != ',' {
		return 0 // an exponent or garbage: encoding/json decides
	}
	return i
}

// flatNumericDate reads what jsonNumberLen accepted as numericDate's
// UnmarshalJSON would, without its allocations. Forms UnmarshalJSON reads
// otherwise (more than 12 integer digits) are left to it.
func flatNumericDate(b []byte, d *numericDate) bool {
	intPart, frac, _ := bytes.Cut(b, []byte{'.'})
	if len(intPart) > 12 {
		return false
	}
	var sec, nsec int64
	for _, c := range intPart {
		sec = sec*10 + int64(c-'0')
	}
	for i := range 9 {
		nsec *= 10
		if i < len(frac) {
			nsec += int64(frac[i] - '0')
		}
	}
	if sec > maxNumericDateSeconds {
		return false
	}
	d.Time = time.Unix(sec, nsec).UTC()
	return true
}
