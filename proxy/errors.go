package proxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"tokengate/authn"
)

// apiError is what a client sees: a stable snake_case code and a short fixed
// text. Causes go to the log, never here: no token, password or
// verification detail is ever echoed.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"error"`
	Message string `json:"message"`
}

// The errors the handler answers with, by code.
var (
	errMissingToken     = apiError{http.StatusUnauthorized, "missing_token", "a Bearer token is required"}
	errInvalidToken     = apiError{http.StatusUnauthorized, "invalid_token", "the token is not valid"}
	errTokenExpired     = apiError{http.StatusUnauthorized, "token_expired", "the token has expired"}
	errTokenRevoked     = apiError{http.StatusUnauthorized, "token_revoked", "the token has been revoked"}
	errSeveralAuth      = apiError{http.StatusBadRequest, "malformed_request", "send exactly one Authorization header"}
	errBadPath          = apiError{http.StatusBadRequest, "malformed_path", "the request path has dot segments, backslashes or control characters"}
	errMalformedRequest = apiError{http.StatusBadRequest, "malformed_request", "send a JSON or form body with username and password"}
	errTooLarge         = apiError{http.StatusRequestEntityTooLarge, "request_too_large", "the request body is too large"}
	errInvalidCreds     = apiError{http.StatusUnauthorized, "invalid_credentials", "wrong username or password"}
	errThrottled        = apiError{http.StatusTooManyRequests, "too_many_attempts", "too many failed attempts; retry later"}
	errForbidden        = apiError{http.StatusForbidden, "forbidden", "the identity header names another user than the token"}
	errNotFound         = apiError{http.StatusNotFound, "not_found", "not found"}
	errRevocationDown   = apiError{http.StatusServiceUnavailable, "revocation_unavailable", "the revocation store is unavailable; retry later"}
	// A failed logout may have reached the store (a lost reply, too few
	// replicas acknowledged in time): it is unconfirmed, not undone.
	errRevocationNotConfirmed = apiError{http.StatusServiceUnavailable, "revocation_unavailable", "the revocation was not confirmed by the store (it may or may not have been stored); retry"}
	errServiceDown            = apiError{http.StatusServiceUnavailable, "service_unavailable", "the user store is unavailable; retry later"}
	errInternal               = apiError{http.StatusInternalServerError, "internal_error", "internal error"}
	errInvalidUsername        = apiError{http.StatusBadRequest, "invalid_username", "the username is not acceptable"}
	errWeakPassword           = apiError{http.StatusBadRequest, "weak_password", "the password does not meet the password policy"}
	errUserExists             = apiError{http.StatusConflict, "user_exists", "a user with that name already exists"}
	errRegistrationRO         = apiError{http.StatusNotImplemented, "registration_unsupported", "the user store cannot create users"}
	errUpstreamTimeout        = apiError{http.StatusGatewayTimeout, "upstream_timeout", "the upstream did not answer in time"}
	errUpstreamDown           = apiError{http.StatusBadGateway, "upstream_unavailable", "the upstream is unavailable"}
	errMethodNotAllowed       = apiError{http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed"}
	// Access rules: the answer never says which rule or group it was.
	errAccessForbidden = apiError{http.StatusForbidden, "forbidden", "you are not allowed to access this resource"}
	errUserUnknown     = apiError{http.StatusUnauthorized, "user_unknown", "the token's user no longer exists"}
	errUsersDown       = apiError{http.StatusServiceUnavailable, "service_unavailable", "the user store is unavailable; retry later"}
	errTooManyMethods  = apiError{http.StatusBadRequest, "malformed_request", "too many method override headers"}
)

// errLoginUsersUnavailable: the user store (a directory) cannot check a
// login now; said alike for every name, so it never tells whether the name
// exists.
var errLoginUsersUnavailable = apiError{http.StatusServiceUnavailable, "users_unavailable", "the user directory is unavailable; retry later"}

// withPolicyReason tells the client which name or password rule failed
// (authn.PolicyError's Reason never contains the password).
func withPolicyReason(e apiError, err error) apiError {
	var pe *authn.PolicyError
	if errors.As(err, &pe) && pe.Reason != "" {
		e.Message = pe.Reason
	}
	return e
}

// writeError sends e as JSON. Content-Length is set so HEAD answers carry
// the same headers as GET.
func writeError(w http.ResponseWriter, e apiError) {
	body, _ := json.Marshal(e)
	writeJSON(w, e.Status, body)
}

// writeJSON sends a JSON body with its length.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeMethodNotAllowed answers 405 with the methods the route takes.
func writeMethodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, errMethodNotAllowed)
}

// errMalformedLoginName answers a login name no store can hold (invalid
// UTF-8, control characters), refused before any lookup.
var errMalformedLoginName = apiError{http.StatusBadRequest, "malformed_request", "the username must be valid UTF-8 without control characters"}
