package proxy

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"
)

// sealer encrypts and authenticates small values that the browser carries
// for tokengate but must neither read nor forge: the OpenID Connect sign-in
// state (state, nonce, PKCE verifier, rd) and the provider's ID token kept
// for RP-initiated logout. AES-256-GCM under a key every replica shares
// (cmd/tokengate derives it from the signing key); the cookie's purpose is
// the additional data, so one kind of sealed cookie never opens as another.
type sealer struct{ aead cipher.AEAD }

const sealKeyBytes = 32

func newSealer(key []byte) (sealer, error) {
	if len(key) != sealKeyBytes {
		return sealer{}, errors.New("the key must be 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return sealer{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return sealer{}, err
	}
	return sealer{aead: aead}, nil
}

// sealedValue is what a sealed cookie holds: its payload and when it stops
// being accepted (a cookie's Max-Age is only a request to the browser).
type sealedValue[T any] struct {
	Exp     int64 `json:"exp"` // Unix seconds
	Payload T     `json:"p"`
}

func seal[T any](s sealer, purpose string, v T, exp time.Time) (string, error) {
	plain, err := json.Marshal(sealedValue[T]{Exp: exp.Unix(), Payload: v})
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	_, _ = rand.Read(nonce) // never fails since Go 1.24
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(purpose))), nil
}

var errSealed = errors.New("sealed value: malformed, forged or expired")

// unseal opens a value sealed for purpose that has not expired at now.
func unseal[T any](s sealer, purpose, value string, now time.Time) (T, error) {
	var zero T
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return zero, errSealed
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(purpose))
	if err != nil {
		return zero, errSealed
	}
	var v sealedValue[T]
	if err := json.Unmarshal(plain, &v); err != nil || now.Unix() > v.Exp {
		return zero, errSealed
	}
	return v.Payload, nil
}
