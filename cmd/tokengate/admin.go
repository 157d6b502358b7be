package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tokengate/authn"
)

// adminHandler serves the admin listener: metrics and probes for SREs, and,
// only when admin_token_file is set, the authenticated operator action.
// It must never be exposed publicly.
func (a *app) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{Registry: a.registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	if a.adminToken != nil {
		mux.HandleFunc("POST /admin/revoke_user", a.revokeUser)
		mux.HandleFunc("GET /admin/identity", a.identity)
	}
	return mux
}

// readyz answers the readiness probe from local state. With ?verbose it
// also checks each shared dependency and lists its state; a dependency that
// is down does not change the status code.
func (a *app) readyz(w http.ResponseWriter, r *http.Request) {
	code, body := http.StatusOK, map[string]any{"status": "ready"}
	if err := a.ready(); err != nil {
		code, body = http.StatusServiceUnavailable, map[string]any{"status": "not_ready", "reason": err.Error()}
	}
	if _, verbose := r.URL.Query()["verbose"]; verbose {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		deps := a.dependencies()
		states := make([]string, len(deps))
		var wg sync.WaitGroup
		for i, d := range deps {
			wg.Go(func() {
				states[i] = "ok"
				if err := d.check(ctx); err != nil {
					states[i] = "down: " + err.Error()
				}
			})
		}
		wg.Wait()
		m := map[string]string{}
		for i, d := range deps {
			m[d.name] = states[i]
		}
		body["dependencies"] = m
	}
	writeJSON(w, code, body)
}

// revokeUser lets an operator kill every token of a user issued up to now,
// without that user's token: POST {"user": "<id or login name>"} with
// Authorization: Bearer <admin token>. The argument is resolved through the
// user store (an id first, else a login name) and the answer names the id
// revoked: 200 {"revoked_user_id", "matched": "id" | "username" | "forced"}.
// 404 when nobody matches; "force": true revokes the argument as an id
// without asking the store (a deleted user's tokens may still be live).
func (a *app) revokeUser(w http.ResponseWriter, r *http.Request) {
	if !a.adminAuthorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tokengate-admin"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "a valid admin token is required")
		return
	}
	const usage = `send JSON: {"user": "<user id or login name>"}, with "force": true to revoke an id the user store does not hold`
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusBadRequest, "malformed_request", usage)
		return
	}
	var body struct {
		User  string `json:"user"`
		Force bool   `json:"force"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || strings.TrimSpace(body.User) == "" || !printable(body.User) {
		writeError(w, http.StatusBadRequest, "malformed_request", usage)
		return
	}
	id, matched := body.User, "forced"
	if !body.Force {
		var no *refusal
		if id, matched, no = a.resolveUser(r.Context(), body.User); no != nil {
			writeError(w, no.status, no.code, no.msg)
			return
		}
	}
	if err := a.checker.RevokeUser(r.Context(), id, time.Now()); err != nil {
		a.log.Error("operator revocation failed", "user_id", id, "error", err)
		writeError(w, http.StatusServiceUnavailable, "revocation_unavailable", "the revocation was not confirmed by the store (it may or may not have been stored); retry")
		return
	}
	a.log.Warn("operator revoked all tokens of a user", "user_id", id, "matched", matched, "argument", body.User, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]string{"revoked_user_id": id, "matched": matched})
}

// identity shows an operator who a user id is to tokengate right now, as
// access rules see it: GET /admin/identity?user=<id> with the admin token.
// 200 {"id", "username", "groups": [...]}; 404 user_unknown (removed, or
// never known); 503 users_unavailable (the store cannot answer within
// users.max_stale); 404 identity_lookups_off when the store cannot look
// users up by id (users.query without users.id_query).
func (a *app) identity(w http.ResponseWriter, r *http.Request) {
	if !a.adminAuthorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tokengate-admin"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "a valid admin token is required")
		return
	}
	id := r.URL.Query().Get("user")
	if strings.TrimSpace(id) == "" || len(id) > 1024 || !printable(id) {
		writeError(w, http.StatusBadRequest, "malformed_request", "send ?user=<user id>")
		return
	}
	if a.identities == nil {
		writeError(w, http.StatusNotFound, "identity_lookups_off", "this user store cannot look users up by id (set users.id_query)")
		return
	}
	u, err := a.identities.Identity(r.Context(), id)
	switch {
	case errors.Is(err, authn.ErrUserNotFound):
		writeError(w, http.StatusNotFound, "user_unknown", fmt.Sprintf("no user has the id %q", id))
		return
	case err != nil:
		a.log.Error("operator identity lookup failed", "user_id", id, "error", err)
		writeError(w, http.StatusServiceUnavailable, "users_unavailable", "the user store is unavailable; retry")
		return
	}
	groups := u.Groups
	if groups == nil {
		groups = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": u.ID, "username": u.Username, "groups": groups})
}

// userByID is a user store that can find users by id.
type userByID interface {
	LookupUserByID(ctx context.Context, id string) (authn.User, error)
}

// refusal is an admin answer other than success.
type refusal struct {
	status    int
	code, msg string
}

var storeDown = &refusal{http.StatusServiceUnavailable, "service_unavailable",
	"the user store is unavailable; nothing was revoked (retry, or send force: true with the id)"}

// resolveUser finds the id arg names: a user whose id is arg, else a user
// whose login name is arg; matched says which.
func (a *app) resolveUser(ctx context.Context, arg string) (id, matched string, no *refusal) {
	byIDUnsupported := false
	var idMatch, nameMatch string
	if s, ok := a.users.(userByID); ok {
		u, err := s.LookupUserByID(ctx, arg)
		switch {
		case err == nil:
			idMatch = u.ID
		case errors.Is(err, authn.ErrNoIDLookup):
			byIDUnsupported = true
		case !errors.Is(err, authn.ErrUserNotFound):
			a.log.Error("operator revocation: user store lookup failed", "error", err)
			return "", "", storeDown
		}
	} else {
		byIDUnsupported = true
	}
	u, err := a.users.LookupUser(ctx, arg)
	switch {
	case err == nil:
		nameMatch = u.ID
		if nameMatch == "" {
			nameMatch = u.Username
		}
	case !errors.Is(err, authn.ErrUserNotFound):
		a.log.Error("operator revocation: user store lookup failed", "error", err)
		return "", "", storeDown
	}
	switch {
	case idMatch != "" && nameMatch != "" && idMatch != nameMatch:
		return "", "", &refusal{http.StatusConflict, "ambiguous_user", fmt.Sprintf(
			"%q is the id of one user and the login name of another (id %q); nothing was revoked: send that id, or force: true to revoke %q as an id", arg, nameMatch, arg)}
	case idMatch != "":
		return idMatch, "id", nil
	case nameMatch != "":
		return nameMatch, "username", nil
	}
	msg := fmt.Sprintf("no user has the id or login name %q; nothing was revoked (send force: true to revoke an id the user store no longer holds)", arg)
	if byIDUnsupported {
		msg = fmt.Sprintf("no user has the login name %q, and this user store (legacy query) cannot look ids up; nothing was revoked (send force: true to revoke %q as an id)", arg, arg)
	}
	return "", "", &refusal{http.StatusNotFound, "user_not_found", msg}
}

// printable refuses what no store holds and no log line should carry.
func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

// adminAuthorized compares the Bearer token with the admin secret in
// constant time (hashing first so lengths leak nothing either).
func (a *app) adminAuthorized(r *http.Request) bool {
	h := r.Header.Values("Authorization")
	if len(h) != 1 {
		return false
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	want := sha256.Sum256(a.adminToken)
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, map[string]string{"error": errCode, "message": msg})
}
