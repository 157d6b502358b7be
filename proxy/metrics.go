package proxy

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Route names: the route label of the metrics and the access log.
const (
	routeLogin     = "login"
	routeLogout    = "logout"
	routeLogoutAll = "logout_all"
	routeSession   = "session"
	routeUsers     = "users"
	routeJWKS      = "jwks"
	routeProxy     = "proxy"
	routePublic    = "public"
	routeSignIn    = "sign_in"
	routeSignOut   = "sign_out"
	routeVerify    = "verify"
	// routeNotFound: auth-server mode (no upstream), a path that is none
	// of tokengate's routes; nothing is proxied, so not "proxy".
	routeNotFound = "not_found"

	routeOIDCSignIn        = "oidc_sign_in"
	routeOIDCCallback      = "oidc_callback"
	routeBackchannelLogout = "backchannel_logout"
)

var routeNames = [...]string{routeLogin, routeLogout, routeLogoutAll, routeSession, routeUsers, routeJWKS, routeProxy, routePublic, routeSignIn, routeSignOut, routeVerify, routeNotFound, routeOIDCSignIn, routeOIDCCallback, routeBackchannelLogout}

// Auth decision results.
const (
	decisionAllowed   = "allowed"
	decisionMissing   = "missing"
	decisionMalformed = "malformed"
	decisionInvalid   = "invalid"
	decisionExpired   = "expired"
	decisionRevoked   = "revoked"
	decisionError     = "error"
	// decisionForbidden: a valid credential the access rules refuse, or a
	// deny rule (with or without a credential).
	decisionForbidden = "forbidden"
	// decisionUserUnknown: a valid token whose user the store no longer has.
	decisionUserUnknown = "user_unknown"
)

// Login results.
const (
	loginSuccess            = "success"
	loginMalformed          = "malformed"
	loginInvalidCredentials = "invalid_credentials"
	loginThrottled          = "throttled"
	loginError              = "error"
)

// Upstream error kinds.
const (
	upstreamTimeout     = "timeout"
	upstreamUnavailable = "unavailable"
)

// durationBuckets suit a proxy: sub-millisecond overhead up to slow
// upstreams, as far as the default upstream_timeout (60s) so a request that
// times out still lands in a finite bucket.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// metrics holds pre-resolved children so the hot path never formats a label
// or looks up a label map. Without a Registerer the collectors still count
// (cheaply) but nobody can read them.
type metrics struct {
	requests  *prometheus.CounterVec
	durations map[string]prometheus.Observer
	decisions map[string]prometheus.Counter
	logins    map[string]prometheus.Counter
	upstream  map[string]prometheus.Counter
	rules     *prometheus.CounterVec // tokengate_access_rule_matches_total; children in accessState

	// codes caches the requests_total child per (route, status code),
	// filled lazily: statuses are 100..599; anything else counts as 0.
	codes [len(routeNames)][600]atomic.Pointer[prometheus.Counter]
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_http_requests_total",
		Help: "HTTP requests served, by route name and status code.",
	}, []string{"route", "code"})
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tokengate_http_request_duration_seconds",
		Help:    "Time to serve a request, by route name (proxied: until the response body is copied).",
		Buckets: durationBuckets,
	}, []string{"route"})
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_auth_decisions_total",
		Help: "Bearer token decisions by result.",
	}, []string{"result"})
	logins := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_logins_total",
		Help: "Login attempts by result.",
	}, []string{"result"})
	rules := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_access_rule_matches_total",
		Help: "Access decisions by the rule that made them (public_paths, a rule's name, or default).",
	}, []string{"rule"})
	upstream := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_upstream_errors_total",
		Help: "Proxied requests that got no response from the upstream, by kind.",
	}, []string{"kind"})

	if reg != nil {
		for _, c := range []prometheus.Collector{requests, durations, decisions, logins, upstream, rules} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}

	m := &metrics{
		requests:  requests,
		durations: map[string]prometheus.Observer{},
		decisions: map[string]prometheus.Counter{},
		logins:    map[string]prometheus.Counter{},
		upstream:  map[string]prometheus.Counter{},
		rules:     rules,
	}
	for _, r := range routeNames {
		m.durations[r] = durations.WithLabelValues(r)
	}
	for _, d := range []string{decisionAllowed, decisionMissing, decisionMalformed, decisionInvalid, decisionExpired, decisionRevoked, decisionError, decisionForbidden, decisionUserUnknown} {
		m.decisions[d] = decisions.WithLabelValues(d)
	}
	for _, l := range []string{loginSuccess, loginMalformed, loginInvalidCredentials, loginThrottled, loginError} {
		m.logins[l] = logins.WithLabelValues(l)
	}
	for _, k := range []string{upstreamTimeout, upstreamUnavailable} {
		m.upstream[k] = upstream.WithLabelValues(k)
	}
	return m, nil
}

func routeIndex(route string) int {
	for i, r := range routeNames {
		if r == route {
			return i
		}
	}
	return -1
}

// observe records one finished request.
func (m *metrics) observe(route string, code int, seconds float64) {
	if o, ok := m.durations[route]; ok {
		o.Observe(seconds)
	}
	ri := routeIndex(route)
	if ri < 0 {
		return
	}
	if code < 100 || code > 599 {
		code = 0
	}
	slot := &m.codes[ri][code]
	c := slot.Load()
	if c == nil {
		counter := m.requests.WithLabelValues(route, strconv.Itoa(code))
		slot.CompareAndSwap(nil, &counter)
		c = slot.Load()
	}
	(*c).Inc()
}
