package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"tokengate/authn"
)

// OpenID Connect Back-Channel Logout 1.0: the provider POSTs a logout
// token (a JWT it signs) naming a session (sid) and/or a user (sub), and
// tokengate revokes what it names in the revocation store, so every
// replica sharing the store refuses those tokens on their next request.
//
// A provider session is revoked like a logout-all, under a key of its own:
// a cutoff on providerSessionKey(sid) kills every token carrying that sid
// signed in (auth_time) at or before it, renewals included, and nothing
// else of the user. A logout token with sub and no sid is a logout-all of
// the user (only when oidc.id_claim is sub: otherwise tokengate's user id
// is not the provider's sub, and the token is refused as unmappable).

const backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// providerSessionKey is the revocation store's key for a provider session.
// The NUL keeps it apart from every user id (no user id holds one).
func providerSessionKey(sid string) string { return "\x00oidc-sid:" + sid }

// logoutTokenKey remembers a logout token's jti until it expires: a replay
// is refused, on every replica sharing the store.
func logoutTokenKey(jti string) string { return "\x00oidc-logout-jti:" + jti }

// providerSessionEnded reports whether c's provider session was logged out
// through the back channel after c's sign-in.
func (h *handler) providerSessionEnded(ctx context.Context, c authn.Claims) (bool, error) {
	return h.revocation.Revoked(ctx, c.ID, providerSessionKey(c.SessionID), c.SignedInAt())
}

var (
	errLogoutToken   = apiError{http.StatusBadRequest, "invalid_request", "the logout token is missing, malformed, or not valid for this client"}
	errLogoutReplay  = apiError{http.StatusBadRequest, "invalid_request", "this logout token was already used"}
	errLogoutUnknown = apiError{http.StatusBadRequest, "invalid_request", "the logout token names no session tokengate can map (no sid, and oidc.id_claim is not sub)"}
	errOIDCDown      = apiError{http.StatusServiceUnavailable, "provider_unavailable", "the identity provider's keys could not be fetched"}
)

// logoutJTILife bounds how long a jti is remembered past the token's exp
// (clock skew between the provider and us).
const logoutJTILife = 10 * time.Minute

// serveBackchannelLogout: POST logout_token=<JWT> (form). 200 once the
// revocation is durable; 400 for a bad or replayed token; 503 when the
// store or the provider's keys are unreachable (the provider retries).
func (h *handler) serveBackchannelLogout(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	if r.Method != http.MethodPost {
		writeMethodNotAllowed(w, http.MethodPost)
		return
	}
	ctx := r.Context()
	form, fail := h.readForm(w, r)
	if fail != nil {
		writeError(w, *fail)
		return
	}
	raw := form["logout_token"]
	if raw == "" || len(raw) > authn.MaxTokenBytes {
		h.oidcWarn(ctx, "backchannel logout: no logout_token in the form")
		writeError(w, errLogoutToken)
		return
	}
	now := h.now()
	d, err := h.oidc.provider(ctx, now)
	if err != nil {
		h.logError(ctx, "backchannel logout: provider discovery failed", err)
		writeError(w, errOIDCDown)
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, h.oidc.opts.Timeout)
	defer cancel()
	lt, err := d.verifier.Verify(callCtx, raw)
	if err != nil {
		h.oidcWarn(ctx, "backchannel logout: the logout token failed verification (issuer, audience, expiry or signature)", slog.String("error", err.Error()))
		writeError(w, errLogoutToken)
		return
	}
	var claims struct {
		Events map[string]json.RawMessage `json:"events"`
		JTI    string                     `json:"jti"`
		SID    string                     `json:"sid"`
		Nonce  *json.RawMessage           `json:"nonce"`
	}
	if err := lt.Claims(&claims); err != nil {
		writeError(w, errLogoutToken)
		return
	}
	var event map[string]json.RawMessage
	switch ev, ok := claims.Events[backchannelLogoutEvent]; {
	case !ok || json.Unmarshal(ev, &event) != nil || event == nil:
		h.oidcWarn(ctx, "backchannel logout: the token has no back-channel logout event (an ID token sent here?)")
		writeError(w, errLogoutToken)
		return
	case claims.Nonce != nil:
		h.oidcWarn(ctx, "backchannel logout: the token carries a nonce (logout tokens must not)")
		writeError(w, errLogoutToken)
		return
	case claims.JTI == "" || len(claims.JTI) > maxClaimBytes:
		h.oidcWarn(ctx, "backchannel logout: the token has no usable jti")
		writeError(w, errLogoutToken)
		return
	case claims.SID == "" && lt.Subject == "":
		h.oidcWarn(ctx, "backchannel logout: the token names neither sid nor sub")
		writeError(w, errLogoutToken)
		return
	case !printableClaim(claims.SID):
		writeError(w, errLogoutToken)
		return
	}
	// Read first, revoke, then remember: a replay moves no cutoff, and a
	// revocation that failed leaves the jti unused so the provider's retry
	// is not refused.
	jtiKey := logoutTokenKey(claims.JTI)
	seen, err := h.revocation.Revoked(ctx, jtiKey, jtiKey, time.Time{})
	if err != nil {
		h.logError(ctx, "backchannel logout: revocation store unavailable", err)
		writeError(w, errRevocationDown)
		return
	}
	if seen {
		h.oidcWarn(ctx, "backchannel logout: a logout token was replayed; refused", slog.String("jti", clip(claims.JTI, 64)))
		writeError(w, errLogoutReplay)
		return
	}
	var revoked string
	switch {
	case claims.SID != "":
		revoked = "session"
		err = h.revocation.RevokeUser(ctx, providerSessionKey(claims.SID), now)
	case h.oidc.opts.IDClaim == "sub":
		revoked = "user"
		err = h.revocation.RevokeUser(ctx, lt.Subject, now)
	default:
		h.oidcWarn(ctx, "backchannel logout: the token names only sub, and oidc.id_claim is not sub: nothing to revoke")
		writeError(w, errLogoutUnknown)
		return
	}
	if err == nil {
		until := lt.Expiry
		if until.Before(now) {
			until = now
		}
		_, err = h.revocation.RevokeTokenOnce(ctx, jtiKey, until.Add(logoutJTILife))
	}
	if err != nil {
		h.logError(ctx, "backchannel logout: revoking failed; the provider should retry", err)
		writeError(w, errRevocationDown)
		return
	}
	h.logger.LogAttrs(ctx, slog.LevelInfo, "backchannel logout: revoked",
		slog.String("scope", revoked), slog.String("user", clip(lt.Subject, maxClaimBytes)),
		slog.String("request_id", RequestIDFromContext(ctx)))
	w.WriteHeader(http.StatusOK)
}
