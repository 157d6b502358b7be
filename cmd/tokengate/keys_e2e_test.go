package main

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerificationKeyFilesRefused: check-config and serve refuse a public key
// listed in verification_key_files in a non-PEM form (it used to become an
// HS256 secret anyone holding the public key could sign with), and an HS256
// secret next to an asymmetric signing key, naming the key and the file.
// serve leaves no signing key behind.
func TestVerificationKeyFilesRefused(t *testing.T) {
	dir := newDir(t, "http://127.0.0.1:1")
	pub := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"old.der":  der,
		"old.jwk":  []byte(`{"kty":"OKP","crv":"Ed25519","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`),
		"old.raw":  pub, // raw bytes: no format to detect, but an HS256 secret next to EdDSA
		"old.pem":  []byte("-----BEGIN PUBLIC KEY-----\n" + base64.StdEncoding.EncodeToString(der) + "\n-----END PUBLIC KEY-----\n"),
		"hs.token": []byte(strings.Repeat("k", 40)),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg, _ := os.ReadFile(cfgPath)
	withKeys := func(list string) {
		t.Helper()
		c := strings.Replace(string(cfg), "  signing_key_file: signing.key\n",
			"  signing_key_file: signing.key\n  verification_key_files: ["+list+"]\n", 1)
		if err := os.WriteFile(cfgPath, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	withKeys("old.pem, old.der, old.jwk, old.raw, hs.token")
	out, err := exec.Command(binPath, "check-config", "--config", cfgPath).CombinedOutput()
	if code := exitCode(err); code != 2 {
		t.Fatalf("check-config exit %d, want 2:\n%s", code, out)
	}
	for _, want := range []string{
		"tokens.verification_key_files[1]", filepath.Join(dir, "old.der"), "DER",
		"tokens.verification_key_files[2]", "JSON Web Key",
		"tokens.verification_key_files[3]", filepath.Join(dir, "old.raw"), "HS256 secret cannot be a verification key when tokens are signed with EdDSA",
		"tokens.verification_key_files[4]",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check-config output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "verification_key_files[0]") {
		t.Errorf("the PEM public key was refused:\n%s", out)
	}

	for _, list := range []string{"old.der", "old.raw"} {
		withKeys(list)
		out, err := exec.Command(binPath, "serve", "--config", cfgPath).CombinedOutput()
		if code := exitCode(err); code == 0 || !strings.Contains(string(out), "tokens.verification_key_files[0]") {
			t.Fatalf("serve with %s: exit %d\n%s", list, code, out)
		}
		if _, err := os.Stat(filepath.Join(dir, "signing.key")); err == nil {
			t.Fatalf("serve with %s refused to start but created signing.key", list)
		}
	}

	// A PEM public key is fine.
	withKeys("old.pem")
	if out, err := exec.Command(binPath, "check-config", "--config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("PEM verification key: %v\n%s", err, out)
	}
}
