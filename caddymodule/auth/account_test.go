package auth

import (
	"slices"
	"strings"
	"testing"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/sessions"
)

// The current password, asked for by the account page, is a login attempt
// in all but the session it does not start.
func TestReauthenticate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		setup   func(r *rig, sess *sessions.Session)
		at      Attempt
		pw      string
		want    error
		metrics map[string]int
		events  []string
		counts  map[string]int
	}{
		{name: "right password", pw: alicePW, counts: map[string]int{"login/user/alice": 0}},
		{name: "wrong password", pw: "not-her-password", want: ErrInvalidPassword,
			metrics: map[string]int{"login/invalid_password": 1}, events: []string{"login_failed"},
			counts: map[string]int{"login/user/alice": 1}},
		{name: "the attempt's own name does not count", at: Attempt{Username: "bob"}, pw: "bobs-Password-99",
			want: ErrInvalidPassword, metrics: map[string]int{"login/invalid_password": 1}, events: []string{"login_failed"},
			counts: map[string]int{"login/user/alice": 1, "login/user/bob": 0}},
		{name: "throttled", setup: func(r *rig, _ *sessions.Session) { r.throttle.set("login/user/alice", 3) }, pw: alicePW,
			want: errThrottled, metrics: map[string]int{"login/throttled": 1, "throttled/login": 1},
			counts: map[string]int{"login/user/alice": 3}},
		{name: "empty", pw: "", want: ErrInvalidInput},
		{name: "the name went to another account", pw: alicePW, want: ErrInvalidPassword,
			setup: func(_ *rig, sess *sessions.Session) { sess.UserID = 99 }},
		{name: "account store down", setup: func(r *rig, _ *sessions.Session) { r.accounts.err = pgDown }, pw: alicePW,
			want: pgDown, metrics: map[string]int{"login/error": 1, "store_error/postgres": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			r.user("bob", "bobs-Password-99", "")
			_, sess, err := r.svc.StartSession(t.Context(), r.user("alice", alicePW, ""), Attempt{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(r, &sess)
			}
			at := tc.at
			at.IP = ip
			u, err := r.svc.Reauthenticate(t.Context(), at, sess, tc.pw)
			if !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if (err == nil) != (u.Username == "alice") {
				t.Fatalf("account %+v with error %v", u, err)
			}
			checkMetrics(t, r, tc.metrics)
			checkEvents(t, r, tc.events...)
			for key, n := range tc.counts {
				if got := r.throttle.count(key); got != n {
					t.Errorf("throttle %s = %d, want %d", key, got, n)
				}
			}
			r.noSecrets(t, tc.pw)
		})
	}
}

// accountRig is a rig with alice's three sessions (the first is "this"
// one) and one of bob's.
func accountRig(t *testing.T) (r *rig, alice accounts.User, mine []sessions.Session, bobs sessions.Session) {
	t.Helper()
	r = newRig(t)
	alice = r.user("alice", alicePW, "alice@example.com")
	for range 3 {
		_, sess, err := r.svc.StartSession(t.Context(), alice, Attempt{})
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, sess)
	}
	_, bobs, err := r.svc.StartSession(t.Context(), r.user("bob", "bobs-Password-99", "bob@example.com"), Attempt{})
	if err != nil {
		t.Fatal(err)
	}
	return r, alice, mine, bobs
}

// A user ends their own sessions, one or all but this one, and never
// another user's.
func TestEndSessions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		down    bool
		run     func(r *rig, mine []sessions.Session, bobs sessions.Session) error
		want    error
		live    []int // indexes of alice's sessions still live
		event   map[string]any
		metrics map[string]int
	}{
		{name: "end another of mine", live: []int{0, 2},
			run: func(r *rig, mine []sessions.Session, _ sessions.Session) error {
				return r.svc.EndSession(t.Context(), mine[0], mine[1].ID, ip)
			},
			event: map[string]any{"sessions": int64(1), "by": "user", "user_id": int64(1), "username": "alice", "client_ip": ip}},
		{name: "end another user's", live: []int{0, 1, 2}, want: sessions.ErrNotFound,
			run: func(r *rig, mine []sessions.Session, bobs sessions.Session) error {
				return r.svc.EndSession(t.Context(), mine[0], bobs.ID, ip)
			}},
		{name: "end one that is not", live: []int{0, 1, 2}, want: sessions.ErrNotFound,
			run: func(r *rig, mine []sessions.Session, _ sessions.Session) error {
				return r.svc.EndSession(t.Context(), mine[0], "id-404", ip)
			}},
		{name: "end one, store down", down: true, live: []int{0, 1, 2}, want: redisDown,
			metrics: map[string]int{"store_error/redis": 1},
			run: func(r *rig, mine []sessions.Session, _ sessions.Session) error {
				return r.svc.EndSession(t.Context(), mine[0], mine[1].ID, ip)
			}},
		{name: "end all others", live: []int{0},
			run: func(r *rig, mine []sessions.Session, _ sessions.Session) error {
				n, err := r.svc.EndOtherSessions(t.Context(), mine[0], ip)
				if err == nil && n != 2 {
					t.Errorf("ended %d", n)
				}
				return err
			},
			event: map[string]any{"sessions": int64(2), "by": "user", "user_id": int64(1), "username": "alice", "client_ip": ip}},
		{name: "end all others, store down", down: true, live: []int{0, 1, 2}, want: redisDown,
			metrics: map[string]int{"store_error/redis": 1},
			run: func(r *rig, mine []sessions.Session, _ sessions.Session) error {
				_, err := r.svc.EndOtherSessions(t.Context(), mine[0], ip)
				return err
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, alice, mine, bobs := accountRig(t)
			if tc.down {
				r.sessions.err = redisDown
			}
			if err := tc.run(r, mine, bobs); !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			r.sessions.err = nil
			checkMetrics(t, r, tc.metrics)
			var want []string
			for _, i := range tc.live {
				want = append(want, mine[i].ID)
			}
			got := r.sessions.of(alice.Userhash)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("alice's live sessions %v, want %v", got, want)
			}
			if n := len(r.sessions.of(bobs.Userhash)); n != 1 {
				t.Errorf("bob has %d sessions", n)
			}
			if tc.event == nil {
				checkEvents(t, r)
				return
			}
			checkEvents(t, r, "sessions_revoked")
			ev := r.event(t, "sessions_revoked")
			for k, v := range tc.event {
				if ev[k] != v {
					t.Errorf("sessions_revoked %s = %v, want %v (%v)", k, ev[k], v, ev)
				}
			}
		})
	}
}

// A new address reaches the account and its live sessions, and ends the
// codes mailed to the old one.
func TestChangeEmail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		email   string
		setup   func(r *rig)
		want    error
		stored  string // the address afterwards, in the account and (unless sessionsOld) the sessions
		old     bool   // the sessions keep the old address
		metrics map[string]int
		events  []string
	}{
		{name: "a new address", email: "alice@example.org", stored: "alice@example.org", events: []string{"email_changed"}},
		{name: "spaces around", email: "  alice@example.org ", stored: "alice@example.org", events: []string{"email_changed"}},
		{name: "removed", email: "", stored: "", events: []string{"email_changed"}},
		{name: "not an address", email: "alice at example", want: ErrInvalidInput, stored: "alice@example.com", old: true},
		{name: "with a display name", email: "Alice <alice@example.org>", want: ErrInvalidInput, stored: "alice@example.com", old: true},
		{name: "too long", email: strings.Repeat("a", MaxEmail) + "@example.org", want: ErrInvalidInput, stored: "alice@example.com", old: true},
		{name: "NUL", email: "alice@example.org\x00", want: ErrBadBytes, stored: "alice@example.com", old: true},
		{name: "account store down", email: "alice@example.org", setup: func(r *rig) { r.accounts.err = pgDown },
			want: pgDown, stored: "alice@example.com", old: true, metrics: map[string]int{"store_error/postgres": 1}},
		{name: "session store down after the account changed", email: "alice@example.org",
			setup: func(r *rig) { r.sessions.err = redisDown }, want: redisDown, stored: "alice@example.org", old: true,
			metrics: map[string]int{"store_error/redis": 1}, events: []string{"email_changed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, alice, _, bobs := accountRig(t)
			if _, _, err := r.codes.IssueOTP(t.Context(), alice.Userhash); err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(r)
			}
			if err := r.svc.ChangeEmail(t.Context(), alice, tc.email, ip); !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			r.sessions.err, r.accounts.err = nil, nil
			checkMetrics(t, r, tc.metrics)
			checkEvents(t, r, tc.events...)
			if got := r.accounts.get(alice.ID).Email; got != tc.stored {
				t.Errorf("account's address %q, want %q", got, tc.stored)
			}
			inSessions := tc.stored
			if tc.old {
				inSessions = "alice@example.com"
			}
			list, _ := r.sessions.List(t.Context(), alice.Userhash)
			for _, s := range list {
				if s.Email != inSessions {
					t.Errorf("session %s carries %q, want %q", s.ID, s.Email, inSessions)
				}
			}
			if list, _ := r.sessions.List(t.Context(), bobs.Userhash); list[0].Email != "bob@example.com" {
				t.Errorf("bob's session carries %q", list[0].Email)
			}
			if _, pending := r.codes.otp(alice.Userhash); pending != (tc.events == nil) {
				t.Errorf("an OTP mailed to the old address is pending: %v", pending)
			}
			if tc.events != nil {
				if ev := r.event(t, "email_changed"); ev["user_id"] != int64(1) || ev["client_ip"] != ip {
					t.Errorf("email_changed %v", ev)
				}
			}
		})
	}
}
