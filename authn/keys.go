package authn

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"

	"github.com/golang-jwt/jwt/v5"
)

// Signing algorithms tokengate supports.
const (
	AlgEdDSA = "EdDSA" // Ed25519
	AlgES256 = "ES256" // ECDSA P-256, SHA-256
	AlgRS256 = "RS256" // RSA PKCS#1 v1.5, SHA-256, at least 2048 bits
	AlgHS256 = "HS256" // HMAC-SHA-256 with a shared secret
)

const (
	minHS256SecretBytes = 32
	minRSABits          = 2048
	// maxKeyFileBytes bounds what is read from a key file: a 4096-bit RSA
	// key in PEM is about 3.3 KiB.
	maxKeyFileBytes = 64 << 10
	// hs256KidPrefix separates the kid hash from any other use of the secret.
	hs256KidPrefix = "tokengate-hs256-kid:"
)

// Key is one signing or verification key with its pinned algorithm and kid.
// Keys are immutable once loaded.
type Key struct {
	Algorithm string // EdDSA | ES256 | RS256 | HS256
	ID        string // kid: RFC 7638 thumbprint, or for HS256 a hash of the secret

	private any    // ed25519.PrivateKey, *ecdsa.PrivateKey, *rsa.PrivateKey; nil for a public-only key
	public  any    // ed25519.PublicKey, *ecdsa.PublicKey, *rsa.PublicKey; nil for HS256
	secret  []byte // HS256 only
	file    string // the file it was loaded from, for error messages; "" if none
}

// CanSign reports whether the key holds a private part (or an HS256 secret).
func (k *Key) CanSign() bool { return k.private != nil || k.secret != nil }

// method is the golang-jwt signing method for the key's algorithm.
func (k *Key) method() jwt.SigningMethod { return jwt.GetSigningMethod(k.Algorithm) }

// signingKey is what golang-jwt's SignedString wants for this algorithm.
func (k *Key) signingKey() any {
	if k.Algorithm == AlgHS256 {
		return k.secret
	}
	return k.private
}

// verifyKey is what golang-jwt's Verify wants for this algorithm. Its type
// is what each method checks, so an HS256 token can never be verified with
// a public key (HS256 insists on []byte).
func (k *Key) verifyKey() any {
	if k.Algorithm == AlgHS256 {
		return k.secret
	}
	return k.public
}

// LoadOrCreateSigningKey reads the PEM PKCS#8 private key (or HS256 secret)
// at path, creating it (mode 0600, parent dir 0700) when absent.
func LoadOrCreateSigningKey(path, algorithm string) (*Key, error) {
	if err := checkAlgorithm(algorithm); err != nil {
		return nil, err
	}
	k, err := LoadSigningKey(path, algorithm)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	data, err := generateKeyFile(algorithm)
	if err != nil {
		return nil, err
	}
	if err := writeNewFile(path, data); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		// Another process created it first: use theirs.
	}
	return LoadSigningKey(path, algorithm)
}

// LoadSigningKey reads an existing signing key; it never creates one. The
// key's type must match algorithm.
func LoadSigningKey(path, algorithm string) (*Key, error) {
	if err := checkAlgorithm(algorithm); err != nil {
		return nil, err
	}
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	if algorithm == AlgHS256 {
		if isPEM(data) {
			return nil, fmt.Errorf("authn: %s: algorithm HS256 needs a secret, but the file holds a PEM key", path)
		}
		return newSecretKey(path, data)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("authn: %s: no PEM private key for algorithm %s", path, algorithm)
	}
	k, err := parsePEMKey(block)
	if err != nil {
		return nil, fmt.Errorf("authn: %s: %w", path, err)
	}
	if k.private == nil {
		return nil, fmt.Errorf("authn: %s: a signing key must be a private key, found %s", path, block.Type)
	}
	if k.Algorithm != algorithm {
		return nil, fmt.Errorf("authn: %s: algorithm %s does not match the key, which is for %s", path, algorithm, k.Algorithm)
	}
	return k, nil
}

// LoadVerificationKey reads an older key kept for rotation: a PEM private or
// public key (algorithm inferred from the key type), or an HS256 secret.
// A file without a PEM block is a secret only if it does not look like a key
// in another encoding (DER, JWK, OpenSSH, broken PEM, ...): taken as a
// secret, public key material would let anyone sign tokens. Only the public
// part of a private key is kept. CheckVerificationKeys says whether the key
// may be used with a given signing algorithm.
func LoadVerificationKey(path string) (*Key, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	if !isPEM(data) {
		return newSecretKey(path, data)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("authn: %s: broken PEM block", path)
	}
	k, err := parsePEMKey(block)
	if err != nil {
		return nil, fmt.Errorf("authn: %s: %w", path, err)
	}
	k.private = nil
	k.file = path
	return k, nil
}

// CheckVerificationKeys refuses an HS256 secret among the verification keys
// when tokens are signed with an asymmetric algorithm. Such a secret is
// never needed there (tokengate signs with one algorithm at a time) and is
// what a public key listed in the wrong format becomes: a client would HMAC
// a token with the published key and be accepted as anyone. There is no
// option to allow it; moving from HS256 to an asymmetric algorithm means the
// HS256 tokens stop working at the switch.
func CheckVerificationKeys(signingAlgorithm string, verification []*Key) error {
	if signingAlgorithm == AlgHS256 {
		return nil
	}
	var errs []error
	for _, k := range verification {
		if k != nil && k.Algorithm == AlgHS256 {
			name := k.file
			if name == "" {
				name = "key " + k.ID
			}
			errs = append(errs, fmt.Errorf("authn: %s: an HS256 secret cannot be a verification key when tokens are signed with %s "+
				"(a public key in a non-PEM file would become a signing secret); list PEM keys only", name, signingAlgorithm))
		}
	}
	return errors.Join(errs...)
}

func checkAlgorithm(alg string) error {
	switch alg {
	case AlgEdDSA, AlgES256, AlgRS256, AlgHS256:
		return nil
	}
	return fmt.Errorf("authn: unknown algorithm %q (want EdDSA, ES256, RS256 or HS256)", alg)
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("authn: read key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("authn: read key %s: %w", path, err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("authn: %s: key file over %d bytes", path, maxKeyFileBytes)
	}
	return data, nil
}

func isPEM(data []byte) bool {
	return bytes.Contains(data, []byte("-----BEGIN "))
}

func newSecretKey(path string, data []byte) (*Key, error) {
	if format := foreignKeyFormat(data); format != "" {
		return nil, fmt.Errorf("authn: %s: the file looks like %s, not an HS256 secret; "+
			"give a key as PEM (PUBLIC KEY or PRIVATE KEY), for example converted with openssl pkey", path, format)
	}
	secret := bytes.TrimSpace(data)
	if len(secret) < minHS256SecretBytes {
		return nil, fmt.Errorf("authn: %s: HS256 secret is %d bytes, want at least %d", path, len(secret), minHS256SecretBytes)
	}
	secret = bytes.Clone(secret)
	return &Key{Algorithm: AlgHS256, ID: secretKeyID(secret), secret: secret, file: path}, nil
}

// secretKeyID names an HS256 secret without revealing it: the first 16
// characters (96 bits) of base64url(SHA-256("tokengate-hs256-kid:" + secret)).
func secretKeyID(secret []byte) string {
	h := sha256.New()
	h.Write([]byte(hs256KidPrefix))
	h.Write(secret)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))[:16]
}

// parsePEMKey accepts PKCS#8 private keys, PKIX public keys and, for
// convenience, the older SEC 1 / PKCS#1 encodings openssl still writes.
func parsePEMKey(block *pem.Block) (*Key, error) {
	var (
		raw any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		raw, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		raw, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		raw, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PUBLIC KEY":
		raw, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		raw, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q (want PRIVATE KEY or PUBLIC KEY)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	k := &Key{}
	switch key := raw.(type) {
	case ed25519.PrivateKey:
		k.Algorithm, k.private, k.public = AlgEdDSA, key, key.Public()
	case ed25519.PublicKey:
		k.Algorithm, k.public = AlgEdDSA, key
	case *ecdsa.PrivateKey:
		k.Algorithm, k.private, k.public = AlgES256, key, &key.PublicKey
	case *ecdsa.PublicKey:
		k.Algorithm, k.public = AlgES256, key
	case *rsa.PrivateKey:
		k.Algorithm, k.private, k.public = AlgRS256, key, &key.PublicKey
	case *rsa.PublicKey:
		k.Algorithm, k.public = AlgRS256, key
	default:
		return nil, fmt.Errorf("unsupported key type %T (want Ed25519, ECDSA P-256 or RSA)", raw)
	}
	switch pub := k.public.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("ECDSA curve %s is not supported (want P-256 for ES256)", pub.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key is %d bits, want at least %d", pub.N.BitLen(), minRSABits)
		}
	}
	jwk, err := publicJWK(k.public)
	if err != nil {
		return nil, err
	}
	k.ID = thumbprint(jwk)
	return k, nil
}

// jwkMembers are the required public members of a JWK (RFC 7517/7518/8037).
// Field order is the lexicographic order RFC 7638 asks for, so marshalling
// the struct gives the canonical thumbprint input (empty members omitted).
type jwkMembers struct {
	Crv string `json:"crv,omitempty"`
	E   string `json:"e,omitempty"`
	Kty string `json:"kty"`
	N   string `json:"n,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

func publicJWK(pub any) (jwkMembers, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		return jwkMembers{Kty: "OKP", Crv: "Ed25519", X: b64(pub)}, nil
	case *ecdsa.PublicKey:
		ec, err := pub.ECDH()
		if err != nil {
			return jwkMembers{}, fmt.Errorf("ECDSA public key: %w", err)
		}
		point := ec.Bytes() // 0x04 || X || Y, each 32 bytes for P-256
		return jwkMembers{Kty: "EC", Crv: "P-256", X: b64(point[1:33]), Y: b64(point[33:])}, nil
	case *rsa.PublicKey:
		return jwkMembers{Kty: "RSA", N: b64(pub.N.Bytes()), E: b64(big.NewInt(int64(pub.E)).Bytes())}, nil
	}
	return jwkMembers{}, fmt.Errorf("unsupported public key type %T", pub)
}

// thumbprint is the RFC 7638 JWK thumbprint: base64url(SHA-256(canonical JWK)).
func thumbprint(m jwkMembers) string {
	canonical, _ := json.Marshal(m) // cannot fail: strings only
	sum := sha256.Sum256(canonical)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// generateKeyFile makes a new key in its file format: PEM PKCS#8 for the
// asymmetric algorithms, base64url text of 32 random bytes for HS256.
func generateKeyFile(alg string) ([]byte, error) {
	var (
		priv any
		err  error
	)
	switch alg {
	case AlgHS256:
		secret := make([]byte, minHS256SecretBytes)
		rand.Read(secret)
		return []byte(base64.RawURLEncoding.EncodeToString(secret) + "\n"), nil
	case AlgEdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case AlgES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgRS256:
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	}
	if err != nil {
		return nil, fmt.Errorf("authn: generate %s key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("authn: encode %s key: %w", alg, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeNewFile writes data to path atomically with mode 0600: a temporary
// file in the same directory, synced, then hard-linked into place so an
// existing file is never overwritten (fs.ErrExist). The parent directory is
// created with mode 0700.
func writeNewFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("authn: create key directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tokengate-key-*")
	if err != nil {
		return fmt.Errorf("authn: create key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("authn: create key: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("authn: write key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("authn: write key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("authn: write key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("authn: create key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the new name durable; best effort
		d.Close()
	}
	return nil
}
