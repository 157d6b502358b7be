package proxy

import (
	"log/slog"
	"net/http"
	"time"

	"tokengate/internal/accesslog"
)

// logAccess writes the request's access line: through h.accessLog when one
// is configured (formatted by appending into a pooled buffer, handed to a
// writer that never blocks), else through h.logger with the same fields.
// The line never holds a token, a password, a cookie or the query string.
func (h *handler) logAccess(r *http.Request, st *requestState, route string, status int, start time.Time, elapsed time.Duration) {
	e := accesslog.Entry{
		Time:      start.Add(elapsed),
		RequestID: st.id,
		Route:     route,
		Method:    r.Method,
		Path:      r.URL.Path,
		Status:    status,
		Duration:  elapsed,
		Bytes:     st.bytes,
		Client:    h.clientAddr(r),
		UserAgent: userAgent(r.Header),
		Auth:      st.auth,
		Login:     st.login,
		UserID:    st.loginID,
		Upstream:  st.upstreamDur,
		Rule:      st.rule,
	}
	if st.authed {
		e.UserID = st.claims.Subject
	}
	if h.accessLog != nil {
		h.accessLog.Log(&e)
		return
	}
	// A fixed array: the attributes stay on the stack (LogAttrs copies them
	// into the record).
	var buf [14]slog.Attr
	h.logger.LogAttrs(r.Context(), slog.LevelInfo, accesslog.Message, e.Attrs(buf[:0])...)
}

// userAgent is the first User-Agent value, read without canonicalising.
func userAgent(hdr http.Header) string {
	if v := hdr["User-Agent"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// countDecision counts an auth decision and records it for the access line.
func (h *handler) countDecision(r *http.Request, decision string) {
	h.metrics.decisions[decision].Inc()
	stateFrom(r.Context()).auth = decision
}

// countLogin counts a login attempt's result and records it, and the login
// name, for the access line.
func (h *handler) countLogin(r *http.Request, result, name string) {
	h.metrics.logins[result].Inc()
	st := stateFrom(r.Context())
	st.auth = result
	if name != "" {
		st.login = name
	}
}
