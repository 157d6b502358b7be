package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
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

// revokeUser lets an operator kill every token of a named user issued up to
// now, without that user's token: POST {"user": "<id>"} with
// Authorization: Bearer <admin token>.
func (a *app) revokeUser(w http.ResponseWriter, r *http.Request) {
	if !a.adminAuthorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tokengate-admin"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "a valid admin token is required")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusBadRequest, "malformed_request", `send JSON: {"user": "<user id>"}`)
		return
	}
	var body struct {
		User string `json:"user"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || strings.TrimSpace(body.User) == "" {
		writeError(w, http.StatusBadRequest, "malformed_request", `send JSON: {"user": "<user id>"}`)
		return
	}
	if err := a.checker.RevokeUser(r.Context(), body.User, time.Now()); err != nil {
		a.log.Error("operator revocation failed", "user_id", body.User, "error", err)
		writeError(w, http.StatusServiceUnavailable, "revocation_unavailable", "the revocation store did not take the revocation; nothing was revoked")
		return
	}
	a.log.Warn("operator revoked all tokens of a user", "user_id", body.User, "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
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
