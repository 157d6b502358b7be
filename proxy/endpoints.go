package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"tokengate/authn"
)

// serveLogin: POST {"username","password"} -> 200 {"token"}.
func (h *handler) serveLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeMethodNotAllowed(w, "POST")
		return
	}
	h.login(w, r)
}

func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	creds, fail := h.readCredentials(w, r)
	if fail != nil {
		h.countLogin(r, loginMalformed, creds.username)
		writeError(w, *fail)
		return
	}
	stateFrom(ctx).login = creds.username
	user, err := h.auth.Authenticate(ctx, creds.username, creds.password, h.clientAddr(r))
	if err != nil {
		h.loginFailed(w, r, err)
		return
	}
	subject := user.ID
	if subject == "" {
		subject = user.Username
	}
	if !h.issue(w, r, subject, user.Username, http.StatusOK) {
		h.countLogin(r, loginError, "")
		return
	}
	h.countLogin(r, loginSuccess, "")
	stateFrom(ctx).loginID = subject
}

func (h *handler) loginFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, authn.ErrMalformedLoginName):
		// A client error, refused before any lookup: never a store error
		// (which would feed the "cannot check logins" alert).
		h.countLogin(r, loginMalformed, "")
		writeError(w, errMalformedLoginName)
	case errors.Is(err, authn.ErrInvalidCredentials):
		h.countLogin(r, loginInvalidCredentials, "")
		writeError(w, errInvalidCreds)
	case errors.Is(err, authn.ErrThrottled):
		h.countLogin(r, loginThrottled, "")
		retry := time.Second
		if te, ok := errors.AsType[*authn.ThrottledError](err); ok && te.RetryAfter > retry {
			retry = te.RetryAfter
		}
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(retry.Seconds())), 10))
		writeError(w, errThrottled)
	case errors.Is(err, authn.ErrUsersUnavailable):
		h.countLogin(r, loginError, "")
		h.logError(r.Context(), "login: user store unavailable", err)
		writeError(w, errLoginUsersUnavailable)
	default:
		h.countLogin(r, loginError, "")
		h.logError(r.Context(), "login: user store failed", err)
		writeError(w, errServiceDown)
	}
}

// issue signs a token and answers {"token"}; false when it could not.
func (h *handler) issue(w http.ResponseWriter, r *http.Request, subject, username string, status int) bool {
	token, _, err := h.tokens.IssueSession(authn.Session{Subject: subject, Username: username})
	if err != nil {
		h.logError(r.Context(), "issuing a token failed", err)
		writeError(w, errInternal)
		return false
	}
	body, _ := json.Marshal(struct {
		Token string `json:"token"`
	}{token})
	noStore(w)
	writeJSON(w, status, body)
	return true
}

// serveLogout: POST with a valid token -> the token is revoked -> 204.
func (h *handler) serveLogout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeMethodNotAllowed(w, "POST")
		return
	}
	h.logout(w, r)
}

func (h *handler) logout(w http.ResponseWriter, r *http.Request) {
	out := h.authenticate(r, false)
	if !out.allowed() {
		writeAuthError(w, out)
		return
	}
	stateFrom(r.Context()).setClaims(out.claims)
	if err := h.revokeToken(r.Context(), out.claims); err != nil {
		h.logError(r.Context(), "logout: revoking the token failed", err)
		writeError(w, errRevocationNotConfirmed)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// revokeToken revokes a token until it can no longer be used, refresh
// window included: a logged-out token must not come back through PUT
// /session after its exp.
func (h *handler) revokeToken(ctx context.Context, c authn.Claims) error {
	return h.revocation.RevokeToken(ctx, c.ID, h.revokedUntil(c))
}

// revokedUntil is when a revocation of c may be forgotten: its exp plus the
// longest lifetime (TTL + refresh window + leeway), which covers the refresh
// window and leeway after exp even for a token issued under a longer TTL
// than today's (its exp, not today's TTL, says how long it lives).
func (h *handler) revokedUntil(c authn.Claims) time.Time {
	until := c.ExpiresAt
	if c.IssuedAt.After(until) {
		until = c.IssuedAt
	}
	if ml, ok := h.tokens.(interface{ MaxLifetime() time.Duration }); ok {
		until = until.Add(ml.MaxLifetime())
	}
	return until
}

// revokeUser revokes every token of the token's user from a sign-in until
// now, and at least c itself: the cutoff is max(now, c's sign-in time). The
// cutoff is compared with each token's auth_time (else iat), so renewed and
// refreshed tokens die with the sign-in they came from. A token's
// auth_time may be up to tokens.leeway ahead of this replica's clock (it
// was issued by a replica whose clock is ahead); a cutoff taken from this
// clock alone would spare the very token that asked to log out everywhere.
// Every log-out-everywhere path (logout_all, the browser's sign-out
// everywhere) goes through here.
func (h *handler) revokeUser(ctx context.Context, c authn.Claims) error {
	cutoff := h.now()
	if signedIn := c.SignedInAt(); signedIn.After(cutoff) {
		cutoff = signedIn
	}
	return h.revocation.RevokeUser(ctx, c.Subject, cutoff)
}

// serveLogoutAll: POST with a valid token -> every token of its user issued
// until now is revoked -> 204. A client-sent identity header naming another
// user is refused (403): it is never a way to pick whose tokens die.
func (h *handler) serveLogoutAll(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeMethodNotAllowed(w, "POST")
		return
	}
	out := h.authenticate(r, false)
	if !out.allowed() {
		writeAuthError(w, out)
		return
	}
	st := stateFrom(r.Context())
	st.setClaims(out.claims)
	for _, v := range st.claimed {
		if v != out.claims.Subject {
			writeError(w, errForbidden)
			return
		}
	}
	if err := h.revokeUser(r.Context(), out.claims); err != nil {
		h.logError(r.Context(), "logout_all: revoking the user failed", err)
		writeError(w, errRevocationNotConfirmed)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

const sessionMethods = "GET, HEAD, POST, PUT, DELETE"

// serveSession is the session-style API: POST logs in, GET/HEAD describe the
// token's user, PUT refreshes, DELETE logs out.
func (h *handler) serveSession(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		h.login(w, r)
	case http.MethodGet, http.MethodHead:
		h.describeSession(w, r)
	case http.MethodPut:
		h.refresh(w, r)
	case http.MethodDelete:
		h.logout(w, r)
	default:
		writeMethodNotAllowed(w, sessionMethods)
	}
}

func (h *handler) describeSession(w http.ResponseWriter, r *http.Request) {
	out := h.authenticate(r, false)
	if !out.allowed() {
		writeAuthError(w, out)
		return
	}
	stateFrom(r.Context()).setClaims(out.claims)
	c := out.claims
	body, _ := json.Marshal(struct {
		ID        string `json:"id"`
		Username  string `json:"username"`
		IssuedAt  string `json:"issued_at"`
		ExpiresAt string `json:"expires_at"`
	}{c.Subject, c.Username, c.IssuedAt.UTC().Format(time.RFC3339Nano), c.ExpiresAt.UTC().Format(time.RFC3339Nano)})
	noStore(w)
	writeJSON(w, http.StatusOK, body)
}

// refresh trades a token (expired up to the refresh window) for a new one
// and revokes the old one. The new token is only handed out once the old
// one is durably revoked, and only by the refresh that revoked it: of
// concurrent refreshes of one token (on any replica sharing the store),
// exactly one gets 200; the others get 401 token_revoked, as any later use
// of the old token does, and their signed tokens are discarded unseen.
func (h *handler) refresh(w http.ResponseWriter, r *http.Request) {
	out := h.authenticate(r, true)
	if !out.allowed() {
		writeAuthError(w, out)
		return
	}
	old := out.claims
	stateFrom(r.Context()).setClaims(old)
	token, _, err := h.tokens.IssueSession(renewalOf(old))
	if err != nil {
		h.logError(r.Context(), "refresh: issuing a token failed", err)
		writeError(w, errInternal)
		return
	}
	first, err := h.revocation.RevokeTokenOnce(r.Context(), old.ID, h.revokedUntil(old))
	if err != nil {
		h.logError(r.Context(), "refresh: revoking the old token failed", err)
		writeError(w, errRevocationNotConfirmed)
		return
	}
	if !first {
		writeAuthError(w, authOutcome{decision: decisionRevoked, err: errTokenRevoked})
		return
	}
	body, _ := json.Marshal(struct {
		Token string `json:"token"`
	}{token})
	noStore(w)
	writeJSON(w, http.StatusOK, body)
}

// serveUsers: POST {"username","password"} -> 201 {"id","username"}.
// With registration off the route answers 404 to everything.
func (h *handler) serveUsers(w http.ResponseWriter, r *http.Request) {
	if h.registration == RegistrationOff {
		writeError(w, errNotFound)
		return
	}
	if r.Method != http.MethodPost {
		writeMethodNotAllowed(w, "POST")
		return
	}
	if h.registration == RegistrationAuthenticated {
		out := h.authenticate(r, false)
		if !out.allowed() {
			writeAuthError(w, out)
			return
		}
		stateFrom(r.Context()).setClaims(out.claims)
	}
	creds, fail := h.readCredentials(w, r)
	if fail != nil {
		writeError(w, *fail)
		return
	}
	user, err := h.registrar.Register(r.Context(), creds.username, creds.password)
	switch {
	case err == nil:
	case errors.Is(err, authn.ErrInvalidUsername):
		writeError(w, withPolicyReason(errInvalidUsername, err))
		return
	case errors.Is(err, authn.ErrWeakPassword):
		writeError(w, withPolicyReason(errWeakPassword, err))
		return
	case errors.Is(err, authn.ErrUserExists):
		writeError(w, errUserExists)
		return
	case errors.Is(err, authn.ErrReadOnly):
		writeError(w, errRegistrationRO)
		return
	default:
		h.logError(r.Context(), "users: registration failed", err)
		writeError(w, errServiceDown)
		return
	}
	id := user.ID
	if id == "" {
		id = user.Username
	}
	body, _ := json.Marshal(struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	}{id, user.Username})
	writeJSON(w, http.StatusCreated, body)
}

// serveJWKS publishes the public verification keys.
func (h *handler) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeMethodNotAllowed(w, "GET, HEAD")
		return
	}
	doc, ok := h.jwks()
	if !ok {
		writeError(w, errNotFound)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, doc)
}

func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// logError logs a server-side failure: the cause goes here, never to the client.
func (h *handler) logError(ctx context.Context, msg string, err error) {
	h.logger.LogAttrs(ctx, slog.LevelError, msg,
		slog.String("request_id", RequestIDFromContext(ctx)),
		slog.String("error", err.Error()))
}
