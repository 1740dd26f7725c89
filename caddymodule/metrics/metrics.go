// Package metrics defines authgate's Prometheus metrics, registered in
// Caddy's own registry so that they are served with Caddy's metrics.
package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the collectors of one loaded config. A nil *Metrics records
// nothing, which keeps tests and tools free of registry plumbing.
type Metrics struct {
	logins *prometheus.CounterVec
	gate   *prometheus.CounterVec
	// The gate counts every request: its counters are looked up once here,
	// not per request.
	decisions   map[string]prometheus.Counter
	throttled   *prometheus.CounterVec
	mails       *prometheus.CounterVec
	hashSeconds prometheus.Histogram
	storeErrors *prometheus.CounterVec
	conflicts   *prometheus.GaugeVec
	mfa         *prometheus.CounterVec
}

// New makes the collectors and registers them in reg. Caddy gives every
// loaded config a registry of its own, and the app registers once in it.
// hashMemory reports the bytes of working memory the password hashing
// workers hold.
func New(reg prometheus.Registerer, hashMemory func() int64) (*Metrics, error) {
	const ns = "authgate"
	m := &Metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "logins_total",
			Help: "Login attempts by result (success, invalid_password, unknown_user, invalid_input, throttled, error, " +
				"second_factor_required, invalid_second_factor, enrolment_required)."}, []string{"result"}),
		gate: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "gate_decisions_total",
			Help: "Gate decisions by outcome (allowed, redirected, denied, public, unavailable, enrolment: a session without the second factor that mfa required asks for)."}, []string{"decision"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "throttled_total",
			Help: "Attempts refused because of too many failures, by kind (login, otp, reset)."}, []string{"kind"}),
		mails: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "mails_total",
			Help: "Mails by result (sent, failed)."}, []string{"result"}),
		hashSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "password_hash_seconds",
			Help:    "Time of one password hash or verification, queueing excluded.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5}}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "store_errors_total",
			Help: "Failed store operations by store (postgres, redis)."}, []string{"store"}),
		conflicts: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "username_conflicts",
			Help: "Accounts without a canonical username, as found at start: taken (an older account holds it; they log in by their exact name) or refused (they cannot log in until renamed)."},
			[]string{"reason"}),
		mfa: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "mfa_total",
			Help: "Second factors by factor (totp, recovery, …) and result: a code's check (success, invalid, throttled, error), or a change (enrolled, removed)."},
			[]string{"factor", "result"}),
	}
	m.decisions = map[string]prometheus.Counter{}
	for _, d := range []string{"allowed", "redirected", "denied", "public", "unavailable", "enrolment"} {
		m.decisions[d] = m.gate.WithLabelValues(d)
	}
	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "password_hash_memory_bytes",
		Help: "Working memory the password hashing workers keep between hashes (one hash's per recently busy worker, none after 30 s without any)."},
		func() float64 { return float64(hashMemory()) })
	for _, c := range []prometheus.Collector{m.logins, m.gate, m.throttled, m.mails, m.hashSeconds, m.storeErrors, m.conflicts, m.mfa, held} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return m, nil
}

// Login counts a login attempt by result.
func (m *Metrics) Login(result string) {
	if m != nil {
		m.logins.WithLabelValues(result).Inc()
	}
}

// Gate counts a gate decision.
func (m *Metrics) Gate(decision string) {
	if m == nil {
		return
	}
	if c, ok := m.decisions[decision]; ok {
		c.Inc()
		return
	}
	m.gate.WithLabelValues(decision).Inc()
}

// Throttled counts a refused attempt.
func (m *Metrics) Throttled(kind string) {
	if m != nil {
		m.throttled.WithLabelValues(kind).Inc()
	}
}

// Mail counts a mail by result.
func (m *Metrics) Mail(result string) {
	if m != nil {
		m.mails.WithLabelValues(result).Inc()
	}
}

// HashTime records the time of one password hash.
func (m *Metrics) HashTime(d time.Duration) {
	if m != nil {
		m.hashSeconds.Observe(d.Seconds())
	}
}

// StoreError counts a failed store operation.
func (m *Metrics) StoreError(store string) {
	if m != nil {
		m.storeErrors.WithLabelValues(store).Inc()
	}
}

// UsernameConflicts records how many accounts lack a canonical username,
// by reason (taken, refused).
func (m *Metrics) UsernameConflicts(reason string, n int) {
	if m != nil {
		m.conflicts.WithLabelValues(reason).Set(float64(n))
	}
}

// MFA counts a second factor's check or change, by factor and result.
func (m *Metrics) MFA(factor, result string) {
	if m != nil {
		m.mfa.WithLabelValues(factor, result).Inc()
	}
}
