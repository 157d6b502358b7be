package proxy

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"tokengate/access"
	"tokengate/authn"
)

// accessRequest fills req with what the rules look at in orig, the request
// they judge (the proxied one, or the original one verify is asked
// about); r is the request tokengate received, whose peer and
// X-Forwarded-For give the client address. Nothing is allocated.
func (h *handler) accessRequest(req *access.Request, r, orig *http.Request) {
	st := stateFrom(r.Context())
	req.Host = orig.Host
	req.Path = orig.URL.Path
	req.RawPath = orig.URL.RawPath
	req.Method = orig.Method
	req.MethodOverrides = st.overrides[:st.nOverrides]
	req.MethodUnknown = orig.Method == methodUnknown
	if st.access.rules.UsesNetworks() {
		req.Client = h.clientIP(r)
	}
}

// identityOf is the identity the rules judge for a valid credential.
func identityOf(out authOutcome) access.Identity {
	return access.Identity{Authenticated: true, ID: out.claims.Subject, Groups: out.groups}
}

// decided records the rule that decided a request: its counter, the
// access line and, when the request is traced, its span (tokengate.rule).
func (h *handler) decided(r *http.Request, st *requestState, d access.Decision) {
	st.rule = d.Name
	if c, ok := st.access.hits[d.Name]; ok {
		c.Inc()
	}
	// Checked first: an untraced request then costs no attribute slice.
	if trace.SpanFromContext(r.Context()).IsRecording() {
		SetSpanRule(r.Context(), d.Name)
	}
}

// accessState is a rule set and its counters, replaced whole.
type accessState struct {
	rules *access.Rules
	hits  map[string]prometheus.Counter // tokengate_access_rule_matches_total by rule name
}

func newAccessState(rules *access.Rules, m *metrics) *accessState {
	s := &accessState{rules: rules, hits: map[string]prometheus.Counter{}}
	for _, n := range rules.Names() {
		s.hits[n] = m.rules.WithLabelValues(n) // the series exist from the start
	}
	return s
}

// SetAccess replaces the access rules of a handler New returned (a
// configuration reload): requests that started keep the rules they
// started with. rules nil is refused.
func SetAccess(h http.Handler, rules *access.Rules) error {
	hh, ok := h.(*handler)
	if !ok || rules == nil {
		return errors.New("proxy: SetAccess needs the handler New returned and a rule set")
	}
	hh.access.Store(newAccessState(rules, hh.metrics))
	return nil
}

// writeForbidden answers 403: JSON for API clients; for a browser with
// sign-in on, a page saying who they are signed in as (claims; nil for a
// deny rule without a credential) with a sign-out button. Neither names the
// rule or the groups that refused.
func (h *handler) writeForbidden(w http.ResponseWriter, r *http.Request, claims *authn.Claims) {
	if !h.browser.enabled || !wantsHTML(r) {
		writeError(w, errAccessForbidden)
		return
	}
	d := pageData{}
	if claims != nil {
		d.Username = claims.Username
		if d.Username == "" {
			d.Username = claims.Subject
		}
		if h.browser.signOut != "" {
			d.Action = h.browser.signOut
			d.CSRF = h.browser.ensureCSRF(w, r, csrfSignOut)
		}
	}
	h.renderPage(w, "forbidden.html", http.StatusForbidden, d)
}

// methodOverrideHeaders are the headers frameworks read a method from, in
// normalised form (lower case, '-' for '_').
var methodOverrideHeaders = [...]string{"x-http-method-override", "x-http-method", "x-method-override"}

// isMethodOverride reports whether key names a method override header in
// any spelling, without allocating.
func isMethodOverride(key string) bool {
	for _, name := range methodOverrideHeaders {
		if (identityHeader{normalized: name}).matches(key) {
			return true
		}
	}
	return false
}

// clientIP is clientAddr as an address: the zero value when unknown.
func (h *handler) clientIP(r *http.Request) netip.Addr {
	a, err := netip.ParseAddr(h.clientAddr(r))
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// groupsValue is the groups header's value: the groups comma-separated,
// any that could not travel in a header (a comma, a control character)
// left out.
func groupsValue(groups []string) string {
	if len(groups) == 1 && validGroup(groups[0]) {
		return groups[0]
	}
	var b strings.Builder
	for _, g := range groups {
		if !validGroup(g) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(g)
	}
	return b.String()
}

func validGroup(g string) bool {
	if g == "" {
		return false
	}
	for i := 0; i < len(g); i++ {
		if c := g[i]; c < 0x20 || c == 0x7f || c == ',' {
			return false
		}
	}
	return true
}
