package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"tokengate/authn"
)

// authOutcome is the result of checking a request's Bearer token.
type authOutcome struct {
	claims   authn.Claims
	groups   []string // the user's current groups (Identities); nil without
	decision string   // the tokengate_auth_decisions_total result
	err      apiError // the answer when decision is not allowed
}

func (o authOutcome) allowed() bool { return o.decision == decisionAllowed }

// bearerToken returns the token of the request's only Authorization header.
// present is false when there is none (or it is empty).
func bearerToken(hdr http.Header) (token string, present bool, fail authOutcome) {
	vals := hdr["Authorization"]
	switch {
	case len(vals) == 0 || (len(vals) == 1 && strings.TrimSpace(vals[0]) == ""):
		return "", false, authOutcome{decision: decisionMissing, err: errMissingToken}
	case len(vals) > 1:
		// Which one would the upstream read? Refuse to guess.
		return "", true, authOutcome{decision: decisionMalformed, err: errSeveralAuth}
	}
	v := strings.TrimSpace(vals[0])
	const scheme = "Bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", true, authOutcome{decision: decisionMalformed, err: errInvalidToken}
	}
	token = strings.TrimLeft(v[len(scheme):], " ")
	if len(token) > authn.MaxTokenBytes {
		// Not even parsed: a huge token is an attack on the parser.
		return "", true, authOutcome{decision: decisionMalformed, err: errInvalidToken}
	}
	return token, true, authOutcome{}
}

// verifyError maps a Verify error to the client answer and the decision.
func verifyError(err error) authOutcome {
	switch {
	case errors.Is(err, authn.ErrExpired):
		return authOutcome{decision: decisionExpired, err: errTokenExpired}
	case errors.Is(err, authn.ErrMalformed):
		return authOutcome{decision: decisionMalformed, err: errInvalidToken}
	default: // ErrInvalid, or anything a Verifier may return
		return authOutcome{decision: decisionInvalid, err: errInvalidToken}
	}
}

// authenticate checks the request's Bearer token: exactly one Bearer
// header, then checkToken. It counts the decision. refreshable accepts
// tokens within the refresh window (PUT on the session route). The identity
// endpoints use it: they take no cookie (no CSRF to guard against there).
func (h *handler) authenticate(r *http.Request, refreshable bool) authOutcome {
	token, _, out := bearerToken(r.Header)
	return h.judge(r, token, out, refreshable)
}

// authenticateRequest checks a proxied request's credential, wherever it
// came from (credential: Bearer header, session cookie, query token), with
// the same checkToken. It counts the decision.
func (h *handler) authenticateRequest(r *http.Request) (authOutcome, credSource) {
	token, src, out := h.credential(r)
	return h.judge(r, token, out, false), src
}

// judge finishes the check of a credential found in r: one that could not
// even be read (out already decided: malformed, several headers) keeps that
// outcome, any other token goes through checkToken. The decision is counted
// and recorded for the access line. Every way a credential arrives (Bearer,
// cookie, query token, verify) ends here.
func (h *handler) judge(r *http.Request, token string, out authOutcome, refreshable bool) authOutcome {
	out = h.check(r, token, out, refreshable)
	h.countDecision(r, out.decision)
	return out
}

// check is judge without counting: for the proxied routes and verify,
// which count once the access rules have decided too (forbidden).
func (h *handler) check(r *http.Request, token string, out authOutcome, refreshable bool) authOutcome {
	if out.decision == "" {
		out = h.checkToken(r.Context(), token, refreshable)
	}
	return out
}

// checkToken is the one authentication core: signature and claims (Verify,
// cached in authn), then revocation (cached in the Checker). A user's
// logout-all cutoff is compared with when the person signed in (auth_time,
// else iat), never with when this token was issued: a renewal or refresh
// that passed its check just before the cutoff, and so was issued after
// it, carries the old sign-in's auth_time and dies with it.
func (h *handler) checkToken(ctx context.Context, token string, refreshable bool) authOutcome {
	var (
		claims authn.Claims
		err    error
	)
	if refreshable {
		claims, err = h.tokens.VerifyRefreshable(token)
	} else {
		claims, err = h.tokens.Verify(token)
	}
	if err != nil {
		h.debug(ctx, "token refused", slog.String("reason", err.Error()))
		return verifyError(err)
	}
	revoked, err := h.revocation.Revoked(ctx, claims.ID, claims.Subject, claims.SignedInAt())
	if err == nil && !revoked && claims.SessionID != "" {
		// A token of an OIDC sign-in: its user is the provider's, from here on.
		ctx = withOIDCToken(ctx)
		revoked, err = h.providerSessionEnded(ctx, claims) // back-channel logout
		if err == nil && !revoked {
			if out, ended := h.oidcUserEnded(ctx, claims); ended {
				return out
			}
		}
	}
	switch {
	case err != nil && h.allowOnStoreError:
		h.logger.LogAttrs(ctx, slog.LevelWarn, "revocation store unavailable; letting the token through (on_store_error: allow)",
			slog.String("request_id", RequestIDFromContext(ctx)), slog.Any("error", err))
	case err != nil:
		h.logger.LogAttrs(ctx, slog.LevelError, "revocation store unavailable",
			slog.String("request_id", RequestIDFromContext(ctx)), slog.Any("error", err))
		return authOutcome{decision: decisionError, err: errRevocationDown}
	case revoked:
		return authOutcome{decision: decisionRevoked, err: errTokenRevoked}
	}
	out := authOutcome{claims: claims, decision: decisionAllowed}
	if h.identities == nil {
		return out
	}
	// Who the user is now: a removed user's tokens stop working (renewal
	// and refresh too, as they come through here), and the rules see the
	// current groups, not the ones at sign-in.
	user, err := h.identities.Identity(ctx, claims.Subject)
	switch {
	case errors.Is(err, authn.ErrUserNotFound):
		h.debug(ctx, "token refused: its user no longer exists")
		return authOutcome{decision: decisionUserUnknown, err: errUserUnknown}
	case err != nil:
		h.logger.LogAttrs(ctx, slog.LevelError, "user store unavailable: cannot tell who a token's user is",
			slog.String("request_id", RequestIDFromContext(ctx)), slog.Any("error", err))
		return authOutcome{decision: decisionError, err: errUsersDown}
	}
	out.groups = user.Groups
	return out
}

// writeAuthError answers a refused token, with the RFC 6750 challenge.
func writeAuthError(w http.ResponseWriter, out authOutcome) {
	switch out.err.Status {
	case http.StatusUnauthorized:
		if out.decision == decisionMissing {
			w.Header().Set("WWW-Authenticate", "Bearer")
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
	case http.StatusBadRequest:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request"`)
	}
	writeError(w, out.err)
}

func (h *handler) debug(ctx context.Context, msg string, attrs ...slog.Attr) {
	if !h.logger.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs = append(attrs, slog.String("request_id", RequestIDFromContext(ctx)))
	h.logger.LogAttrs(ctx, slog.LevelDebug, msg, attrs...)
}
