package revocation

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// storeOp names a store call in tokengate_revocation_store_* metrics.
type storeOp int

const (
	opStatus storeOp = iota
	opRevokeToken
	opRevokeUser
	opPing
	numOps
)

var opNames = [numOps]string{"status", "revoke_token", "revoke_user", "ping"}

// metrics holds pre-resolved children so the hot path never looks up labels.
// The collectors always exist (unregistered when there is no Registerer), so
// callers never branch on nil.
type metrics struct {
	hit, miss       prometheus.Counter
	storeDuration   [numOps]prometheus.Observer
	storeErrors     [numOps]prometheus.Counter
	revokedTokens   prometheus.Counter
	revokedUsers    prometheus.Counter
	pubsubReconnect prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, subscribed func() bool) (*metrics, error) {
	cacheRequests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_revocation_cache_requests_total",
		Help: "Revocation checks answered from the LRU (hit) or by asking the store (miss).",
	}, []string{"result"})
	storeDuration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "tokengate_revocation_store_duration_seconds",
		Help: "Latency of revocation store calls.",
		// Up to 5 s: a slow fsync or a Redis failover must not vanish into +Inf.
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"op"})
	storeErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_revocation_store_errors_total",
		Help: "Revocation store calls that failed.",
	}, []string{"op"})
	revocations := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokengate_revocations_total",
		Help: "Revocations recorded through this replica (token: logout, user: logout-all).",
	}, []string{"kind"})
	reconnects := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tokengate_revocation_pubsub_reconnects_total",
		Help: "Times the revocation pub/sub subscription was re-established after a loss.",
	})

	m := &metrics{
		hit:             cacheRequests.WithLabelValues("hit"),
		miss:            cacheRequests.WithLabelValues("miss"),
		revokedTokens:   revocations.WithLabelValues("token"),
		revokedUsers:    revocations.WithLabelValues("user"),
		pubsubReconnect: reconnects,
	}
	for op, name := range opNames {
		m.storeDuration[op] = storeDuration.WithLabelValues(name)
		m.storeErrors[op] = storeErrors.WithLabelValues(name)
	}
	if reg == nil {
		return m, nil
	}
	collectors := []prometheus.Collector{cacheRequests, storeDuration, storeErrors, revocations}
	if subscribed != nil {
		up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokengate_revocation_pubsub_up",
			Help: "1 while the revocation pub/sub subscription is established.",
		}, func() float64 {
			if subscribed() {
				return 1
			}
			return 0
		})
		collectors = append(collectors, reconnects, up)
	}
	var errs []error
	for _, c := range collectors {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}
