package authn

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var allAlgorithms = []string{AlgEdDSA, AlgES256, AlgRS256, AlgHS256}

// testKeyFiles caches generated key files: RSA generation is slow under -race.
var testKeyFiles sync.Map // "alg/n" -> []byte

// testKey returns the n-th test key of alg, loaded from a file in a temp dir.
func testKey(t testing.TB, alg string, n int) *Key {
	t.Helper()
	name := fmt.Sprintf("%s/%d", alg, n)
	data, ok := testKeyFiles.Load(name)
	if !ok {
		b, err := generateKeyFile(alg)
		if err != nil {
			t.Fatal(err)
		}
		data, _ = testKeyFiles.LoadOrStore(name, b)
	}
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, data.([]byte), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := LoadSigningKey(path, alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadOrCreateSigningKey(t *testing.T) {
	for _, alg := range allAlgorithms {
		t.Run(alg, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			path := filepath.Join(dir, "signing.key")
			k, err := LoadOrCreateSigningKey(path, alg)
			if err != nil {
				t.Fatal(err)
			}
			if k.Algorithm != alg || !k.CanSign() || k.ID == "" {
				t.Fatalf("key = %s %q CanSign=%v", k.Algorithm, k.ID, k.CanSign())
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("key file mode = %v, want 0600", st.Mode().Perm())
			}
			if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
				t.Errorf("key dir mode = %v, want 0700", st.Mode().Perm())
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("key dir holds %d entries, want only the key (no temp files)", len(entries))
			}
			// A second start loads the same key instead of making another.
			again, err := LoadOrCreateSigningKey(path, alg)
			if err != nil {
				t.Fatal(err)
			}
			if again.ID != k.ID {
				t.Errorf("reloaded kid = %q, want %q", again.ID, k.ID)
			}
			loaded, err := LoadSigningKey(path, alg)
			if err != nil || loaded.ID != k.ID {
				t.Errorf("LoadSigningKey = %v, %v; want kid %q", loaded, err, k.ID)
			}
			if alg == AlgHS256 {
				data, _ := os.ReadFile(path)
				if len(strings.TrimSpace(string(data))) < 43 { // 32 bytes base64url
					t.Errorf("HS256 secret file too short: %d bytes", len(data))
				}
			}
		})
	}
}

func TestLoadSigningKeyNeverCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.key")
	if _, err := LoadSigningKey(path, AlgEdDSA); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadSigningKey created %s", path)
	}
}

func TestLoadSigningKeyErrors(t *testing.T) {
	edPriv := testKey(t, AlgEdDSA, 0)
	ecPriv := testKey(t, AlgES256, 0)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa1024DER, _ := x509.MarshalPKCS8PrivateKey(rsa1024)
	edPubDER, _ := x509.MarshalPKIXPublicKey(edPriv.public)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edPriv.private)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecPriv.private)

	tests := []struct {
		name, alg, path, want string
	}{
		{"Ed25519 key as ES256", AlgES256, writePEM(t, "PRIVATE KEY", edDER), "does not match"},
		{"P-256 key as RS256", AlgRS256, writePEM(t, "PRIVATE KEY", ecDER), "does not match"},
		{"P-256 key as EdDSA", AlgEdDSA, writePEM(t, "PRIVATE KEY", ecDER), "does not match"},
		{"PEM key as HS256 secret", AlgHS256, writePEM(t, "PRIVATE KEY", edDER), "needs a secret"},
		{"secret as EdDSA", AlgEdDSA, writeFile(t, strings.Repeat("s", 40)), "no PEM"},
		{"short HS256 secret", AlgHS256, writeFile(t, "  "+strings.Repeat("s", 31)+"\n"), "at least 32"},
		{"P-384 as ES256", AlgES256, writePEM(t, "PRIVATE KEY", p384DER), "P-256"},
		{"RSA 1024", AlgRS256, writePEM(t, "PRIVATE KEY", rsa1024DER), "at least 2048"},
		{"public key", AlgEdDSA, writePEM(t, "PUBLIC KEY", edPubDER), "private"},
		{"certificate block", AlgEdDSA, writePEM(t, "CERTIFICATE", []byte{1}), "unsupported PEM"},
		{"garbage DER", AlgEdDSA, writePEM(t, "PRIVATE KEY", []byte("nope")), "parse"},
		{"unknown algorithm", "HS512", writeFile(t, strings.Repeat("s", 40)), "unknown algorithm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := LoadSigningKey(tt.path, tt.alg)
			if err == nil {
				t.Fatalf("LoadSigningKey = %s key, want an error", k.Algorithm)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
			if _, err := LoadOrCreateSigningKey(tt.path, tt.alg); err == nil {
				t.Errorf("LoadOrCreateSigningKey accepted it")
			}
		})
	}
}

func TestHS256SecretTrimmed(t *testing.T) {
	secret := strings.Repeat("k", 32)
	a, err := LoadSigningKey(writeFile(t, "\n  "+secret+"\t\n"), AlgHS256)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadSigningKey(writeFile(t, secret), AlgHS256)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.secret) != secret || a.ID != b.ID {
		t.Errorf("secret %q kid %q, want %q and kid %q", a.secret, a.ID, secret, b.ID)
	}
	if strings.Contains(a.ID, secret[:8]) || len(a.ID) != 16 {
		t.Errorf("HS256 kid %q: want 16 characters not derived visibly from the secret", a.ID)
	}
}

func TestLoadVerificationKey(t *testing.T) {
	for _, alg := range []string{AlgEdDSA, AlgES256, AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			priv := testKey(t, alg, 0)
			privDER, _ := x509.MarshalPKCS8PrivateKey(priv.private)
			pubDER, _ := x509.MarshalPKIXPublicKey(priv.public)
			for _, path := range []string{writePEM(t, "PRIVATE KEY", privDER), writePEM(t, "PUBLIC KEY", pubDER)} {
				k, err := LoadVerificationKey(path)
				if err != nil {
					t.Fatal(err)
				}
				if k.Algorithm != alg || k.ID != priv.ID {
					t.Errorf("key = %s %q, want %s %q", k.Algorithm, k.ID, alg, priv.ID)
				}
				if k.CanSign() {
					t.Errorf("a verification key keeps its private part")
				}
			}
		})
	}
	t.Run("legacy encodings", func(t *testing.T) {
		ec := testKey(t, AlgES256, 0)
		sec1, _ := x509.MarshalECPrivateKey(ec.private.(*ecdsa.PrivateKey))
		rs := testKey(t, AlgRS256, 0)
		pkcs1 := x509.MarshalPKCS1PrivateKey(rs.private.(*rsa.PrivateKey))
		pkcs1Pub := x509.MarshalPKCS1PublicKey(rs.public.(*rsa.PublicKey))
		for _, c := range []struct {
			path string
			want *Key
		}{
			{writePEM(t, "EC PRIVATE KEY", sec1), ec},
			{writePEM(t, "RSA PRIVATE KEY", pkcs1), rs},
			{writePEM(t, "RSA PUBLIC KEY", pkcs1Pub), rs},
		} {
			k, err := LoadVerificationKey(c.path)
			if err != nil || k.ID != c.want.ID {
				t.Errorf("LoadVerificationKey = %v, %v; want kid %q", k, err, c.want.ID)
			}
		}
	})
	t.Run(AlgHS256, func(t *testing.T) {
		secret := strings.Repeat("v", 40)
		k, err := LoadVerificationKey(writeFile(t, secret+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if k.Algorithm != AlgHS256 || k.ID != secretKeyID([]byte(secret)) {
			t.Errorf("key = %s %q", k.Algorithm, k.ID)
		}
		if _, err := LoadVerificationKey(writeFile(t, "short")); err == nil {
			t.Error("short secret accepted")
		}
	})
}

// RFC 7638 section 3.1 and RFC 8037 appendix A.3 give thumbprints of
// example keys; the kid must be exactly that.
func TestThumbprintVectors(t *testing.T) {
	tests := []struct {
		name string
		jwk  jwkMembers
		want string
	}{
		{"RFC 7638 RSA", jwkMembers{Kty: "RSA", E: "AQAB", N: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"},
			"NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"},
		{"RFC 8037 Ed25519", jwkMembers{Kty: "OKP", Crv: "Ed25519", X: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
			"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := thumbprint(tt.jwk); got != tt.want {
				t.Errorf("thumbprint = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestKidStable(t *testing.T) {
	for _, alg := range allAlgorithms {
		t.Run(alg, func(t *testing.T) {
			a, b := testKey(t, alg, 0), testKey(t, alg, 0)
			other := testKey(t, alg, 1)
			if a.ID != b.ID {
				t.Errorf("same key, kids %q and %q", a.ID, b.ID)
			}
			if a.ID == other.ID {
				t.Errorf("different keys share kid %q", a.ID)
			}
		})
	}
	// An Ed25519 key built from a fixed seed always has the same kid.
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	k, err := LoadSigningKey(writePEM(t, "PRIVATE KEY", der), AlgEdDSA)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := publicJWK(priv.Public())
	if k.ID != thumbprint(m) || k.ID == "" {
		t.Errorf("kid %q, want the thumbprint %q", k.ID, thumbprint(m))
	}
}
