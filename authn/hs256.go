package authn

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"hash"
	"strings"
	"sync"
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
	if err := json.Unmarshal(raw, tc); err != nil {
		*tc = tokenClaims{expGrace: tc.expGrace} // the full path decodes afresh
		return false, nil
	}
	if err := ks.validator.Validate(tc); err != nil {
		return true, err
	}
	return true, nil
}
