package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// The metrics land in Caddy's own registry, served with Caddy's metrics.
func TestMetrics(t *testing.T) {
	e := newEnv(t, options{})
	e.register("mark", "mark-password", "mark@example.com")
	c := e.client()
	e.login(c, "mark", "mark-password")
	e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "mark", "password": "wrong-password"})
	e.do(c, "GET", "/app", nil)
	e.do(nil, "GET", "/app", nil, "Accept", "text/html")
	e.do(nil, "POST", "/auth/users/requestotp", map[string]any{"username": "mark"})

	got := metricValues(t)
	for key, min := range map[string]float64{
		"authgate_logins_total/success":            1,
		"authgate_logins_total/invalid_password":   1,
		"authgate_gate_decisions_total/allowed":    1,
		"authgate_gate_decisions_total/redirected": 1,
		"authgate_mails_total/sent":                1,
		"authgate_password_hash_seconds":           3,
	} {
		if got[key] < min {
			t.Errorf("%s = %v, want at least %v", key, got[key], min)
		}
	}
	// The threads keep whole hashes' memory for a while after hashing
	// (whether they still do depends on the time since; the password
	// package tests the release).
	const hashMemory = 19456 << 10
	if held, ok := got["authgate_password_hash_memory_bytes"]; !ok || int64(held)%hashMemory != 0 {
		t.Errorf("authgate_password_hash_memory_bytes = %v (present: %v), want a multiple of %d", held, ok, hashMemory)
	}
}

// metricValues returns the value of every metric in the running config's
// registry, keyed name/label values (a histogram's value is its count).
func metricValues(t *testing.T) map[string]float64 {
	t.Helper()
	ctx := caddy.ActiveContext()
	families, err := ctx.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				got[key] = float64(m.GetHistogram().GetSampleCount())
			case m.GetGauge() != nil:
				got[key] = m.GetGauge().GetValue()
			}
		}
	}
	return got
}
