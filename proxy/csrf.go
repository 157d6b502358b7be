package proxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
)

// CSRF protection of the sign-in and sign-out forms: a double submit bound
// to the browser. The browser holds a random value in the CSRF cookie
// (HttpOnly, host-only); the form carries HMAC(key, purpose, value). A
// cross-site page can make the browser post the form, but it can neither
// read the cookie nor compute the HMAC without the key, so it cannot fill
// in the field. This also stops login CSRF: signing a victim in as the
// attacker.

// csrfSigner computes and checks form tokens.
type csrfSigner struct{ key []byte }

// CSRF purposes: a token for one form is no good for the other.
const (
	csrfSignIn  = "sign_in"
	csrfSignOut = "sign_out"
)

const csrfField = "csrf" // the form field

const csrfValueBytes = 32

func (s csrfSigner) token(purpose, value string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("tokengate csrf v1\x00"))
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// valid reports whether field is the token for value, in constant time.
func (s csrfSigner) valid(purpose, value, field string) bool {
	if value == "" || field == "" {
		return false
	}
	return hmac.Equal([]byte(s.token(purpose, value)), []byte(field))
}

// csrfValue returns the browser's CSRF cookie value, or "" when it has
// none (or a malformed one).
func (b *browser) csrfValue(r *http.Request) string {
	cs := r.CookiesNamed(b.csrfCookie)
	if len(cs) != 1 {
		return ""
	}
	v := cs[0].Value
	if raw, err := base64.RawURLEncoding.DecodeString(v); err != nil || len(raw) != csrfValueBytes {
		return ""
	}
	return v
}

// ensureCSRF returns the browser's CSRF cookie value, setting a new cookie
// when it has none, and the form token for purpose.
func (b *browser) ensureCSRF(w http.ResponseWriter, r *http.Request, purpose string) string {
	v := b.csrfValue(r)
	if v == "" {
		var raw [csrfValueBytes]byte
		_, _ = rand.Read(raw[:]) // never fails since Go 1.24
		v = base64.RawURLEncoding.EncodeToString(raw[:])
		// A browser-session cookie: no Max-Age. Host-only and Path=/ (the
		// __Host- prefix requires both); Strict would be fine too, but Lax
		// keeps it when a user follows a link to the page.
		http.SetCookie(w, &http.Cookie{
			Name:     b.csrfCookie,
			Value:    v,
			Path:     "/",
			Secure:   b.secure,
			HttpOnly: true,
			SameSite: http.SameSiteLaxMode,
		})
	}
	return b.csrf.token(purpose, v)
}

// checkCSRF reports whether the posted form carries the token for purpose
// bound to this browser's CSRF cookie.
func (b *browser) checkCSRF(r *http.Request, purpose, field string) bool {
	return b.csrf.valid(purpose, b.csrfValue(r), field)
}
