package authn

import "encoding/json"

// jwk is one public key as published in the JWKS (RFC 7517): the public
// members only; a private part or an HS256 secret has no field here.
type jwk struct {
	jwkMembers
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

type jwkSet struct {
	Keys []jwk `json:"keys"`
}

func (s jwkSet) marshal() []byte {
	b, _ := json.Marshal(s) // cannot fail: strings only
	return b
}

// JWKS returns the JSON Web Key Set of the public keys (signing and
// verification); ok is false when there are only HS256 keys. The document
// is built when the keys are set; callers must not modify it.
func (t *Tokens) JWKS() (doc []byte, ok bool) {
	ks := t.keys.Load()
	return ks.jwks, ks.jwks != nil
}
