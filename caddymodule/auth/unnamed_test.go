package auth

import (
	"slices"
	"testing"
)

// A sign-in that names no account (a passkey) counts on the client IP's
// allowance of failed logins, shared with password logins, and logs in as
// a password login does.
func TestUnnamedSignIn(t *testing.T) {
	t.Parallel()
	at := Attempt{IP: ip}
	for _, tc := range []struct {
		name    string
		setup   func(r *rig)
		verify  bool // the proof verified; else it failed
		want    error
		metrics map[string]int
		events  []string
		count   int // the IP's login counter afterwards
	}{
		{name: "a verified sign-in", verify: true,
			metrics: map[string]int{"login/success": 1}, events: []string{"login_succeeded"}},
		{name: "a failed sign-in", verify: false,
			metrics: map[string]int{"login/invalid_passkey": 1}, events: []string{"login_failed"}, count: 1},
		{name: "an address that failed too often, at passwords too",
			setup: func(r *rig) { r.throttle.set("login/ip/"+ip, 3) }, want: errThrottled,
			metrics: map[string]int{"login/throttled": 1, "throttled/login": 1}, count: 3},
		{name: "the session store down", setup: func(r *rig) { r.sessions.err = redisDown }, verify: true, want: redisDown,
			metrics: map[string]int{"login/error": 1, "store_error/redis": 1}, count: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			alice := r.user("alice", alicePW, "")
			if tc.setup != nil {
				tc.setup(r)
			}
			err := r.svc.AttemptUnnamed(t.Context(), at)
			if err == nil && tc.verify {
				var token string
				token, _, err = r.svc.LoginVerified(t.Context(), alice, at, "webauthn")
				if err == nil {
					sess, lookupErr := r.sessions.Lookup(t.Context(), token)
					if lookupErr != nil || sess.UserID != alice.ID || !slices.Equal(sess.AMR, []string{"webauthn"}) {
						t.Errorf("session %+v (%v), want alice's with amr [webauthn]", sess, lookupErr)
					}
				}
			} else if err == nil {
				r.svc.UnnamedFailed(at, "invalid_passkey")
			}
			if !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			checkMetrics(t, r, tc.metrics)
			checkEvents(t, r, tc.events...)
			if got := r.throttle.count("login/ip/" + ip); got != tc.count {
				t.Errorf("the IP's login counter is %d, want %d", got, tc.count)
			}
		})
	}
}
