package authn

import (
	"bytes"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
)

// foreignKeyFormat names the key encoding data looks like, or "" when it
// may be an HS256 secret. A file without a PEM block used to be taken as a
// secret whatever it held, so a public key given in DER, JWK or OpenSSH
// form became an HMAC secret anyone could sign with. A secret made as the
// README says (random bytes, base64 or base64url text) is never mistaken
// for one of these: the checks need structure random bytes do not have.
func foreignKeyFormat(data []byte) string {
	text := bytes.TrimSpace(data)
	switch {
	case len(text) == 0:
		return ""
	case isDERSequence(data) || isDERSequence(bytes.TrimRight(data, "\r\n")):
		return "a DER (ASN.1) key or certificate"
	case (text[0] == '{' || text[0] == '[') && json.Valid(text), bytes.Contains(text, []byte(`"kty"`)):
		return "a JSON Web Key (JSON)"
	case hasAnyPrefix(text, "ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"):
		return "an OpenSSH public key"
	case bytes.Contains(text, []byte("OPENSSH PRIVATE KEY")):
		return "an OpenSSH private key"
	case bytes.Contains(text, []byte("SSH2 PUBLIC KEY")):
		return "an SSH2 (RFC 4716) public key"
	case bytes.HasPrefix(text, []byte("PuTTY-User-Key-File")):
		return "a PuTTY key"
	case bytes.Contains(text, []byte("-----")) || containsAny(text, "BEGIN ", "PUBLIC KEY", "PRIVATE KEY", "CERTIFICATE"):
		return "PEM without a valid block"
	}
	// The base64 or hex text of a DER key (a PEM body without its lines).
	compact := bytes.Join(bytes.Fields(text), nil)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if der, err := enc.DecodeString(string(compact)); err == nil && isDERSequence(der) {
			return "the base64 text of a DER (ASN.1) key"
		}
	}
	if der, err := hex.DecodeString(string(compact)); err == nil && isDERSequence(der) {
		return "the hex text of a DER (ASN.1) key"
	}
	return ""
}

// isDERSequence reports whether b is exactly one ASN.1 SEQUENCE (tag 0x30,
// how every DER key and certificate starts) whose contents are themselves
// complete ASN.1 elements. Random bytes almost never are.
func isDERSequence(b []byte) bool {
	if len(b) < 2 || b[0] != 0x30 {
		return false
	}
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(b, &seq)
	if err != nil || len(rest) != 0 || len(seq.Bytes) == 0 {
		return false
	}
	for inner := seq.Bytes; len(inner) > 0; {
		var v asn1.RawValue
		if inner, err = asn1.Unmarshal(inner, &v); err != nil {
			return false
		}
	}
	return true
}

func hasAnyPrefix(b []byte, prefixes ...string) bool {
	for _, p := range prefixes {
		if bytes.HasPrefix(b, []byte(p)) {
			return true
		}
	}
	return false
}

func containsAny(b []byte, subs ...string) bool {
	for _, s := range subs {
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}
