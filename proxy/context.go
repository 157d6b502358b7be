package proxy

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"time"

	"tokengate/authn"
)

// stateKey is the context key of the per-request state; unexported so only
// this package can set it.
type stateKey struct{}

// requestState is everything the middlewares and handlers share about one
// request. It is also the ResponseWriter wrapper that records the status and
// byte count, and it holds the request's context and the backing arrays of
// the header values tokengate sets, so each request costs one allocation
// for all of them.
type requestState struct {
	http.ResponseWriter

	ctx     stateContext
	idBuf   [requestIDLen]byte // backs id when tokengate made it
	idVals  [2]string          // X-Request-Id: [0] to the upstream, [1] to the client
	userVal [1]string          // the identity header's value to the upstream
	grpVal  [1]string          // the groups header's value to the upstream

	id      string
	route   string
	claims  authn.Claims
	authed  bool         // claims hold a verified, non-revoked token
	claimed []string     // identity header values the client sent (stripped)
	groups  []string     // the user's current groups, when authed
	rule    string       // access log: the access rule that decided
	access  *accessState // the rules judging this request

	overrides        [maxOverrides]string // method override header values (when rules name methods)
	nOverrides       int
	tooManyOverrides bool
	auth             string // access log: the auth decision, or on login the login result
	login            string // access log: the login name a login request gave
	loginID          string // access log: the user id a successful login issued a token for

	status      int
	bytes       int64
	hijacked    bool
	clientGone  bool          // the client went away before the upstream answered
	upstreamDur time.Duration // time spent in the ReverseProxy (proxied routes)
}

// stateContext is the request's context: its parent plus the state under
// stateKey. It lives inside requestState, so attaching the state costs no
// allocation of its own (context.WithValue would). Contexts derived from it
// (ReverseProxy's, the Transport's) find the state through Value, and find
// the parent's cancellation through the embedded Context as usual.
type stateContext struct {
	context.Context
	st *requestState
}

func (c *stateContext) Value(key any) any {
	if _, ok := key.(stateKey); ok {
		return c.st
	}
	return c.Context.Value(key)
}

// withState returns r carrying a new requestState that wraps w.
func withState(w http.ResponseWriter, r *http.Request) (*requestState, *http.Request) {
	st := &requestState{ResponseWriter: w}
	st.ctx = stateContext{Context: r.Context(), st: st}
	return st, r.WithContext(&st.ctx)
}

func stateFrom(ctx context.Context) *requestState {
	if c, ok := ctx.(*stateContext); ok {
		return c.st
	}
	st, _ := ctx.Value(stateKey{}).(*requestState)
	return st
}

// ClaimsFromContext returns the verified claims of the request's token, and
// false when the request is anonymous (or not served by this package).
func ClaimsFromContext(ctx context.Context) (authn.Claims, bool) {
	st := stateFrom(ctx)
	if st == nil || !st.authed {
		return authn.Claims{}, false
	}
	return st.claims, true
}

// RequestIDFromContext returns the request id tokengate assigned (or
// accepted from the client) for the request.
func RequestIDFromContext(ctx context.Context) string {
	if st := stateFrom(ctx); st != nil {
		return st.id
	}
	return ""
}

// setIdentity records the verified identity of the request and the
// user's current groups.
func (st *requestState) setIdentity(c authn.Claims, groups []string) {
	st.setClaims(c)
	st.groups = groups
}

// maxOverrides bounds the method override values a request may carry.
const maxOverrides = 4

// addOverrides keeps method override header values for the access rules.
func (st *requestState) addOverrides(vals []string) {
	for _, v := range vals {
		if st.nOverrides == maxOverrides {
			st.tooManyOverrides = true
			return
		}
		st.overrides[st.nOverrides] = v
		st.nOverrides++
	}
}

// setClaims records the verified identity of the request.
func (st *requestState) setClaims(c authn.Claims) {
	st.claims = c
	st.authed = true
}

func (st *requestState) WriteHeader(code int) {
	// 1xx other than 101 are informational (ReverseProxy relays 103 Early
	// Hints this way): the final status is still to come.
	if st.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		st.status = code
	}
	st.ResponseWriter.WriteHeader(code)
}

func (st *requestState) Write(b []byte) (int, error) {
	if st.status == 0 {
		st.status = http.StatusOK
	}
	n, err := st.ResponseWriter.Write(b)
	st.bytes += int64(n)
	return n, err
}

// Flush lets streaming responses through the wrapper.
func (st *requestState) Flush() {
	if st.status == 0 {
		st.status = http.StatusOK
	}
	if f, ok := st.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack lets WebSocket and other upgrades through the wrapper.
func (st *requestState) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(st.ResponseWriter).Hijack()
	if err == nil {
		st.hijacked = true
		st.status = http.StatusSwitchingProtocols
	}
	return conn, brw, err
}

// Unwrap serves http.ResponseController for everything else.
func (st *requestState) Unwrap() http.ResponseWriter { return st.ResponseWriter }
