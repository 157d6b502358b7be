package authn

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/ssh"
)

// TestVerificationKeyForeignFormats: a key file in another encoding than PEM
// is refused with its file and its format named, never taken as an HS256
// secret (issue 13: a public key in DER, JWK or OpenSSH form became an HMAC
// secret anyone could sign tokens with). The same holds for an HS256 signing
// key file.
func TestVerificationKeyForeignFormats(t *testing.T) {
	ed := testKey(t, AlgEdDSA, 0)
	rs := testKey(t, AlgRS256, 0)
	ec := testKey(t, AlgES256, 0)
	edPub := ed.public.(ed25519.PublicKey)
	edPubDER := must(x509.MarshalPKIXPublicKey(edPub))
	rsPubDER := must(x509.MarshalPKIXPublicKey(rs.public))
	ecPubDER := must(x509.MarshalPKIXPublicKey(ec.public))
	edPrivDER := must(x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(make([]byte, 32))))
	jwkDoc, _ := json.MarshalIndent(map[string]string{"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(edPub)}, "", "  ")
	jwksDoc, _ := json.Marshal(map[string]any{"keys": []json.RawMessage{jwkDoc}})
	sshEd := must(ssh.NewPublicKey(edPub))
	sshEC := must(ssh.NewPublicKey(ec.public))
	sshRSA := must(ssh.NewPublicKey(rs.public))
	pemBody := base64.StdEncoding.EncodeToString(edPubDER)

	tests := []struct {
		name, content, format string
	}{
		{"DER Ed25519 public key", string(edPubDER), "DER"},
		{"DER RSA public key", string(rsPubDER), "DER"},
		{"DER ECDSA public key", string(ecPubDER), "DER"},
		{"DER PKCS#8 private key", string(edPrivDER), "DER"},
		{"DER with a trailing newline", string(edPubDER) + "\n", "DER"},
		{"JWK", string(jwkDoc), "JSON Web Key"},
		{"JWK set", string(jwksDoc), "JSON Web Key"},
		{"OpenSSH Ed25519 public key", string(ssh.MarshalAuthorizedKey(sshEd)), "OpenSSH public key"},
		{"OpenSSH ECDSA public key", string(ssh.MarshalAuthorizedKey(sshEC)), "OpenSSH public key"},
		{"OpenSSH RSA public key", string(ssh.MarshalAuthorizedKey(sshRSA)), "OpenSSH public key"},
		{"OpenSSH private key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n", ""},
		{"SSH2 public key", "---- BEGIN SSH2 PUBLIC KEY ----\n" + base64.StdEncoding.EncodeToString(sshEd.Marshal()) + "\n---- END SSH2 PUBLIC KEY ----\n", "SSH2"},
		{"PEM body without its armour", pemBody + "\n", "base64 text of a DER"},
		{"PEM body in lines", pemBody[:30] + "\n" + pemBody[30:] + "\n", "base64 text of a DER"},
		{"base64url of DER", base64.RawURLEncoding.EncodeToString(rsPubDER), "base64 text of a DER"},
		{"hex of DER", hex.EncodeToString(edPubDER), "hex text of a DER"},
		{"armour with four dashes", "----BEGIN PUBLIC KEY----\n" + pemBody + "\n----END PUBLIC KEY----\n", "PEM without a valid block"},
		{"armour without dashes", "BEGIN PUBLIC KEY\n" + pemBody + "\nEND PUBLIC KEY\n", "PEM without a valid block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.content)
			for what, load := range map[string]func() (*Key, error){
				"verification key":  func() (*Key, error) { return LoadVerificationKey(path) },
				"HS256 signing key": func() (*Key, error) { return LoadSigningKey(path, AlgHS256) },
			} {
				k, err := load()
				if err == nil {
					t.Fatalf("%s: accepted as %s %s", what, k.Algorithm, k.ID)
				}
				if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.format) {
					t.Errorf("%s: error %q should name the file and %q", what, err, tt.format)
				}
			}
		})
	}
}

// TestHS256SecretsStillAccepted: secrets made the ways the README shows
// (and plain binary or passphrase secrets) are never mistaken for a key.
func TestHS256SecretsStillAccepted(t *testing.T) {
	rng := mrand.New(mrand.NewChaCha8([32]byte{13}))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	check := func(kind, secret string) {
		t.Helper()
		if format := foreignKeyFormat([]byte(secret)); format != "" {
			t.Fatalf("%s secret %q taken for %s", kind, secret, format)
		}
	}
	for range 5000 {
		check("generated", base64.RawURLEncoding.EncodeToString(random(32))+"\n")   // what tokengate creates
		check("openssl/base64", base64.StdEncoding.EncodeToString(random(48))+"\n") // head -c 48 /dev/urandom | base64
		check("hex", hex.EncodeToString(random(32))+"\n")                           // openssl rand -hex 32
		check("binary", string(random(32+rng.IntN(32))))                            // head -c 32 /dev/urandom
	}
	check("passphrase", "correct horse battery staple, and then some more words")
	secret := strings.Repeat("s", 40)
	if k, err := LoadVerificationKey(writeFile(t, secret)); err != nil || k.Algorithm != AlgHS256 {
		t.Errorf("plain secret: %v, %v", k, err)
	}
}

// TestHS256VerificationKeyWithAsymmetricSigning: an HS256 secret is never a
// verification key next to an asymmetric signing key, so the public key's
// raw bytes (which no format check can tell from a secret) cannot become
// one: a client HMACing a token with them is refused because such a
// configuration is refused.
func TestHS256VerificationKeyWithAsymmetricSigning(t *testing.T) {
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			signing := testKey(t, alg, 0)
			// A fixed key whose raw bytes start and end with no whitespace,
			// so all 32 count as a secret.
			edPub := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)
			path := writeFile(t, string(edPub)) // 32 raw bytes: indistinguishable from a binary secret
			raw, err := LoadVerificationKey(path)
			if err != nil || raw.Algorithm != AlgHS256 {
				t.Fatalf("raw bytes load as %v, %v; want an HS256 secret (to check what NewTokens does with it)", raw, err)
			}
			err = CheckVerificationKeys(alg, []*Key{raw})
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), alg) {
				t.Errorf("CheckVerificationKeys = %v, want a refusal naming %s and %s", err, path, alg)
			}
			// The attack: HS256 with the public key's bytes as the secret.
			now := time.Now()
			forged := sign(t, jwt.SigningMethodHS256, []byte(edPub), map[string]any{"kid": raw.ID}, jwt.MapClaims{
				"iss": "tokengate", "sub": "admin", "jti": "j", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
			if mixed, err := NewTokens(signing, []*Key{raw}, TokenOptions{}); err == nil {
				c, verr := mixed.Verify(forged)
				t.Fatalf("NewTokens accepted an HS256 verification key next to %s; the forged token then gives %+v, %v", alg, c, verr)
			}
			tk := newTestTokens(t, signing, nil, TokenOptions{})
			if err := tk.SetKeys(signing, []*Key{raw}); err == nil {
				t.Error("SetKeys (reload) accepted it")
			}
			if _, err := tk.Verify(forged); !errors.Is(err, ErrInvalid) {
				t.Errorf("forged HS256 token: %v, want ErrInvalid", err)
			}
		})
	}
	// HS256 signing with older asymmetric keys (rotating to HS256) stays allowed.
	if err := CheckVerificationKeys(AlgHS256, []*Key{testKey(t, AlgEdDSA, 0), testKey(t, AlgHS256, 1)}); err != nil {
		t.Errorf("HS256 signing: %v", err)
	}
}
