package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// credentials are a login name and password from a login or users body.
type credentials struct {
	username string
	password string
}

// readBody reads at most h.maxBody bytes of the request body.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	if r.ContentLength > h.maxBody {
		return nil, &errTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, &errTooLarge
		}
		return nil, &errMalformedRequest
	}
	return body, nil
}

// readCredentials parses {"username", "password"} ("email" is accepted as
// the login name too) from JSON, form or multipart bodies, as httpie, curl
// and browsers send them. Any other shape is malformed.
func (h *handler) readCredentials(w http.ResponseWriter, r *http.Request) (credentials, *apiError) {
	body, fail := h.readBody(w, r)
	if fail != nil {
		return credentials{}, fail
	}
	mediaType := "application/json" // what httpie and most API clients mean by no type
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil {
			return credentials{}, &errMalformedRequest
		}
		mediaType = mt
		if mt == "multipart/form-data" {
			c, ok := parseMultipart(body, params["boundary"], h.maxBody)
			if !ok {
				return credentials{}, &errMalformedRequest
			}
			return c, checkCredentials(c)
		}
	}

	var c credentials
	switch {
	case mediaType == "application/json" || strings.HasSuffix(mediaType, "+json"):
		var in struct {
			Username string `json:"username"`
			Email    string `json:"email"`
			Password string `json:"password"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return credentials{}, &errMalformedRequest
		}
		c = credentials{username: in.Username, password: in.Password}
		if c.username == "" {
			c.username = in.Email
		}
	case mediaType == "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return credentials{}, &errMalformedRequest
		}
		var ok bool
		if c, ok = credentialsFromForm(form); !ok {
			return credentials{}, &errMalformedRequest
		}
	default:
		return credentials{}, &errMalformedRequest
	}
	return c, checkCredentials(c)
}

func parseMultipart(body []byte, boundary string, maxBytes int64) (credentials, bool) {
	if boundary == "" {
		return credentials{}, false
	}
	form, err := multipart.NewReader(bytes.NewReader(body), boundary).ReadForm(maxBytes)
	if err != nil {
		return credentials{}, false
	}
	defer form.RemoveAll()
	return credentialsFromForm(form.Value)
}

// credentialsFromForm refuses repeated fields: which one would we check?
func credentialsFromForm(form map[string][]string) (credentials, bool) {
	one := func(k string) (string, bool) {
		v := form[k]
		switch len(v) {
		case 0:
			return "", true
		case 1:
			return v[0], true
		}
		return "", false
	}
	user, ok1 := one("username")
	email, ok2 := one("email")
	pass, ok3 := one("password")
	if !ok1 || !ok2 || !ok3 {
		return credentials{}, false
	}
	if user == "" {
		user = email
	}
	return credentials{username: user, password: pass}, true
}

func checkCredentials(c credentials) *apiError {
	if c.username == "" || c.password == "" {
		return &errMalformedRequest
	}
	return nil
}

// clientAddr is the address login throttling counts against: the direct
// peer, or, when the peer is a trusted proxy, the rightmost untrusted
// X-Forwarded-For hop. Never the leftmost: a client writes that one itself.
func (h *handler) clientAddr(r *http.Request) string {
	peer := peerAddr(r.RemoteAddr)
	if !peer.IsValid() {
		return r.RemoteAddr
	}
	if !h.isTrusted(peer) {
		// RemoteAddr's host part, as the net package wrote it, is already
		// the peer's text unless it is v4-in-v6 (unmapped above): no
		// allocation per request for the access line.
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil && peer.Is4() == !strings.Contains(host, ":") {
			return host
		}
		return peer.String()
	}
	hops := r.Header["X-Forwarded-For"]
	last := peer
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				// A trusted proxy wrote garbage: stop at the last good hop.
				return last.String()
			}
			a = a.Unmap()
			if !h.isTrusted(a) {
				return a.String()
			}
			last = a
		}
	}
	return last.String()
}
