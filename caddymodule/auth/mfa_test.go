package auth

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/factors"
)

// The second factor's rules over fakes: what a login with and without a
// code answers, what it counts, which codes work (the skew, a code spent
// for ever, recovery codes once), and enrolment and removal.

// codeAt is the code of secret at the rig's clock moved by steps.
func codeAt(r *rig, secret []byte, steps int) string {
	return factors.Code(secret, factors.Step(r.clock.now())+int64(steps))
}

func TestLoginWithSecondFactor(t *testing.T) {
	t.Parallel()
	type proofOf func(r *rig, secret []byte) Proof
	code := func(steps int) proofOf {
		return func(r *rig, secret []byte) Proof { return Proof{TOTP: codeAt(r, secret, steps)} }
	}
	for _, tc := range []struct {
		name    string
		mfa     string
		enrol   bool // alice has an authenticator app
		setup   func(t *testing.T, r *rig, secret []byte)
		pw      string
		proof   proofOf
		want    error
		amr     []string
		metrics map[string]int
		events  []string
		counts  map[string]int // throttle counters afterwards
	}{
		{
			name: "no second factor, the password alone", pw: alicePW, proof: func(*rig, []byte) Proof { return Proof{} },
			amr: []string{"pwd"}, metrics: map[string]int{"login/success": 1}, events: []string{"login_succeeded"},
		},
		{
			name: "no second factor, a code given is not looked at", pw: alicePW, proof: func(*rig, []byte) Proof { return Proof{TOTP: "000000"} },
			amr: []string{"pwd"}, metrics: map[string]int{"login/success": 1}, events: []string{"login_succeeded"},
		},
		{
			name: "a second factor and the password alone", enrol: true, pw: alicePW, proof: func(*rig, []byte) Proof { return Proof{} },
			want: ErrSecondFactorRequired, metrics: map[string]int{"login/second_factor_required": 1},
			counts: map[string]int{"login/user/alice": 0, "mfa/user/alice": 0},
		},
		{
			name: "the code of now", enrol: true, pw: alicePW, proof: code(0),
			amr: []string{"pwd", "otp"}, metrics: map[string]int{"login/success": 1, "mfa/totp/success": 1},
			events: []string{"login_succeeded"}, counts: map[string]int{"mfa/user/alice": 0},
		},
		{
			name: "the code of one step before", enrol: true, pw: alicePW, proof: code(-1),
			amr: []string{"pwd", "otp"}, metrics: map[string]int{"login/success": 1, "mfa/totp/success": 1},
			events: []string{"login_succeeded"},
		},
		{
			name: "the code of one step after", enrol: true, pw: alicePW, proof: code(1),
			amr: []string{"pwd", "otp"}, metrics: map[string]int{"login/success": 1, "mfa/totp/success": 1},
			events: []string{"login_succeeded"},
		},
		{
			name: "the code of two steps before", enrol: true, pw: alicePW, proof: code(-2),
			want: ErrInvalidSecondFactor, metrics: map[string]int{"login/invalid_second_factor": 1, "mfa/totp/invalid": 1},
			events: []string{"mfa_failed"}, counts: map[string]int{"mfa/user/alice": 1},
		},
		{
			name: "the code of two steps after", enrol: true, pw: alicePW, proof: code(2),
			want: ErrInvalidSecondFactor, metrics: map[string]int{"login/invalid_second_factor": 1, "mfa/totp/invalid": 1},
			events: []string{"mfa_failed"}, counts: map[string]int{"mfa/user/alice": 1},
		},
		{
			name: "a code used already", enrol: true, pw: alicePW, proof: code(0),
			setup: func(t *testing.T, r *rig, secret []byte) {
				if ok, _ := r.factors.CheckTOTP(t.Context(), 1, codeAt(r, secret, 0), r.clock.now()); !ok {
					t.Fatal("the first use failed")
				}
			},
			want: ErrInvalidSecondFactor, metrics: map[string]int{"login/invalid_second_factor": 1, "mfa/totp/invalid": 1},
			events: []string{"mfa_failed"},
		},
		{
			name: "a code of a step before one used", enrol: true, pw: alicePW, proof: code(-1),
			setup: func(t *testing.T, r *rig, secret []byte) {
				_, _ = r.factors.CheckTOTP(t.Context(), 1, codeAt(r, secret, 0), r.clock.now())
			},
			want: ErrInvalidSecondFactor, metrics: map[string]int{"login/invalid_second_factor": 1, "mfa/totp/invalid": 1},
			events: []string{"mfa_failed"},
		},
		{
			name: "a recovery code", enrol: true, pw: alicePW, proof: func(*rig, []byte) Proof { return Proof{RecoveryCode: "00001-00003"} },
			setup: func(t *testing.T, r *rig, _ []byte) { _, _ = r.factors.NewRecoveryCodes(t.Context(), 1) },
			amr:   []string{"pwd", "otp", "recovery"}, metrics: map[string]int{"login/success": 1, "mfa/recovery/success": 1},
			events: []string{"login_succeeded"},
		},
		{
			name: "a recovery code typed loosely", enrol: true, pw: alicePW, proof: func(*rig, []byte) Proof { return Proof{RecoveryCode: " OOOO1 OOOO3 "} },
			setup: func(t *testing.T, r *rig, _ []byte) { _, _ = r.factors.NewRecoveryCodes(t.Context(), 1) },
			amr:   []string{"pwd", "otp", "recovery"}, metrics: map[string]int{"login/success": 1, "mfa/recovery/success": 1},
			events: []string{"login_succeeded"},
		},
		{
			name: "a wrong recovery code", enrol: true, pw: alicePW, proof: func(*rig, []byte) Proof { return Proof{RecoveryCode: "zzzzz-zzzzz"} },
			setup: func(t *testing.T, r *rig, _ []byte) { _, _ = r.factors.NewRecoveryCodes(t.Context(), 1) },
			want:  ErrInvalidSecondFactor, metrics: map[string]int{"login/invalid_second_factor": 1, "mfa/recovery/invalid": 1},
			events: []string{"mfa_failed"}, counts: map[string]int{"mfa/user/alice": 1},
		},
		{
			name: "a wrong password with the right code spends no code", enrol: true, pw: "not-her-password", proof: code(0),
			want: ErrInvalidPassword, metrics: map[string]int{"login/invalid_password": 1}, events: []string{"login_failed"},
			counts: map[string]int{"login/user/alice": 1, "mfa/user/alice": 0},
		},
		{
			name: "codes throttled after the allowance", enrol: true, pw: alicePW, proof: code(0),
			setup: func(t *testing.T, r *rig, _ []byte) { r.throttle.set("mfa/user/alice", 3) },
			want:  errThrottled, metrics: map[string]int{"login/throttled": 1, "mfa/totp/throttled": 1, "throttled/mfa": 1},
			counts: map[string]int{"mfa/user/alice": 3},
		},
		{
			name: "mfa required, no second factor", mfa: MFARequired, pw: alicePW, proof: func(*rig, []byte) Proof { return Proof{} },
			want: ErrEnrolmentRequired, metrics: map[string]int{"login/enrolment_required": 1},
		},
		{
			name: "mfa required, the second factor given", mfa: MFARequired, enrol: true, pw: alicePW, proof: code(0),
			amr: []string{"pwd", "otp"}, metrics: map[string]int{"login/success": 1, "mfa/totp/success": 1},
			events: []string{"login_succeeded"},
		},
		{
			name: "mfa off: the password alone, whatever is enrolled", mfa: MFAOff, enrol: true, pw: alicePW,
			proof: func(*rig, []byte) Proof { return Proof{} },
			amr:   []string{"pwd"}, metrics: map[string]int{"login/success": 1}, events: []string{"login_succeeded"},
		},
		{
			name: "second-factor store down", enrol: true, pw: alicePW, proof: code(0),
			setup: func(t *testing.T, r *rig, _ []byte) { r.factors.err = pgDown },
			want:  pgDown, metrics: map[string]int{"login/error": 1, "store_error/postgres": 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, func(c *Config) { c.MFA = tc.mfa })
			alice := r.user("alice", alicePW, "alice@example.com")
			var secret []byte
			if tc.enrol {
				secret = r.factors.enrol(alice.ID)
			}
			if tc.setup != nil {
				tc.setup(t, r, secret)
			}
			proof := tc.proof(r, secret)
			u, token, sess, err := r.svc.LoginWith(t.Context(), Attempt{Username: "alice", IP: ip}, tc.pw, proof)
			if !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			checkMetrics(t, r, tc.metrics)
			checkEvents(t, r, tc.events...)
			for key, n := range tc.counts {
				if got := r.throttle.count(key); got != n {
					t.Errorf("throttle %s = %d, want %d", key, got, n)
				}
			}
			if tc.want != nil {
				if token != "" || u.ID != 0 || len(r.sessions.of(alice.Userhash)) != 0 {
					t.Fatalf("a failed login returned user %+v, token %q, sessions %v", u, token, r.sessions.of(alice.Userhash))
				}
				r.noSecrets(t, alicePW, proof.TOTP, proof.RecoveryCode)
				return
			}
			if !slices.Equal(sess.AMR, tc.amr) {
				t.Errorf("session AMR %v, want %v", sess.AMR, tc.amr)
			}
			if got, err := r.sessions.Lookup(t.Context(), token); err != nil || !slices.Equal(got.AMR, tc.amr) {
				t.Errorf("stored session %+v, %v", got, err)
			}
			if ev := r.event(t, "login_succeeded"); ev["amr"] != AMRText(tc.amr) {
				t.Errorf("login_succeeded says amr %v, want %s", ev["amr"], AMRText(tc.amr))
			}
			r.noSecrets(t, alicePW, proof.TOTP, proof.RecoveryCode, token)
		})
	}
}

// A recovery code works once; the others of the set still do.
func TestRecoveryCodeWorksOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	alice := r.user("alice", alicePW, "")
	r.factors.enrol(alice.ID)
	codes, err := r.factors.NewRecoveryCodes(t.Context(), alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	at := Attempt{Username: "alice", IP: ip}
	for i, tc := range []struct {
		name string
		code string
		want error
	}{
		{"first use", codes[4], nil},
		{"again", codes[4], ErrInvalidSecondFactor},
		{"another of the set", codes[5], nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := r.svc.LoginWith(t.Context(), at, alicePW, Proof{RecoveryCode: tc.code})
			if !is(err, tc.want) {
				t.Fatalf("use %d: error %v, want %v", i, err, tc.want)
			}
		})
	}
	if left := r.factors.recoveryLeft(alice.ID); left != factors.RecoveryCodes-2 {
		t.Fatalf("%d codes left, want %d", left, factors.RecoveryCodes-2)
	}
}

// A device cookie signed for the user keeps its own allowance of codes, as
// it does of passwords: guesses from elsewhere do not lock the owner out.
func TestSecondFactorDeviceAllowance(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	alice := r.user("alice", alicePW, "")
	secret := r.factors.enrol(alice.ID)
	r.throttle.set("mfa/user/alice", 3)
	at := Attempt{Username: "alice", IP: ip, Device: "device:uk-alice"}
	if _, _, _, err := r.svc.LoginWith(t.Context(), at, alicePW, Proof{TOTP: codeAt(r, secret, 0)}); err != nil {
		t.Fatalf("the owner's device: %v", err)
	}
	if n := r.throttle.count("mfa/user/alice"); n != 3 {
		t.Errorf("the others' counter is %d, want 3 still", n)
	}
}

// The login page's two steps: a ticket for the second, which takes a few
// tries and then dies, and works once.
func TestBeginAndFinishLogin(t *testing.T) {
	t.Parallel()
	at := Attempt{Username: "alice", IP: ip}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, r *rig, alice accounts.User, secret []byte)
	}{
		{"a user without a second factor gets a session at once", func(t *testing.T, r *rig, alice accounts.User, _ []byte) {
			r.factors.mu.Lock()
			delete(r.factors.totp, alice.ID)
			r.factors.mu.Unlock()
			_, token, sess, err := r.svc.BeginLogin(t.Context(), at, alicePW)
			if err != nil || token == "" || !slices.Equal(sess.AMR, []string{"pwd"}) {
				t.Fatalf("token %q, AMR %v, error %v", token, sess.AMR, err)
			}
		}},
		{"a ticket, then a right code", func(t *testing.T, r *rig, alice accounts.User, secret []byte) {
			step := begin(t, r, at)
			if step.User.ID != alice.ID || !slices.Equal(step.Kinds, []string{"totp"}) || len(r.sessions.of(alice.Userhash)) != 0 {
				t.Fatalf("step %+v, sessions %v", step, r.sessions.of(alice.Userhash))
			}
			u, token, sess, err := r.svc.FinishLogin(t.Context(), at, step.Ticket, Proof{TOTP: codeAt(r, secret, 0)})
			if err != nil || u.ID != alice.ID || token == "" || !slices.Equal(sess.AMR, []string{"pwd", "otp"}) {
				t.Fatalf("user %d, token %q, AMR %v, error %v", u.ID, token, sess.AMR, err)
			}
			if r.tickets.count() != 0 {
				t.Fatal("the ticket lives on")
			}
			// The ticket and the code are spent.
			if _, _, _, err := r.svc.FinishLogin(t.Context(), at, step.Ticket, Proof{TOTP: codeAt(r, secret, 1)}); !errors.Is(err, ErrLoginExpired) {
				t.Fatalf("the ticket again: %v", err)
			}
			checkMetrics(t, r, map[string]int{"login/second_factor_required": 1, "login/success": 1, "mfa/totp/success": 1})
		}},
		{"wrong codes, then the right one", func(t *testing.T, r *rig, _ accounts.User, secret []byte) {
			step := begin(t, r, at)
			for range 2 {
				if _, _, _, err := r.svc.FinishLogin(t.Context(), at, step.Ticket, Proof{TOTP: "123456"}); !errors.Is(err, ErrInvalidSecondFactor) {
					t.Fatalf("a wrong code: %v", err)
				}
			}
			if n := r.throttle.count("mfa/user/alice"); n != 2 {
				t.Errorf("mfa counter %d, want 2", n)
			}
			if _, _, _, err := r.svc.FinishLogin(t.Context(), at, step.Ticket, Proof{TOTP: codeAt(r, secret, 0)}); err != nil {
				t.Fatalf("the right code: %v", err)
			}
			checkEvents(t, r, "mfa_failed", "mfa_failed", "login_succeeded")
		}},
		{"a ticket dies after its tries", func(t *testing.T, r *rig, _ accounts.User, secret []byte) {
			r.throttle.max = 100 // the ticket's own limit, not the throttle's
			step := begin(t, r, at)
			for range factors.MaxTicketTries {
				_, _, _, _ = r.svc.FinishLogin(t.Context(), at, step.Ticket, Proof{TOTP: "123456"})
			}
			if _, _, _, err := r.svc.FinishLogin(t.Context(), at, step.Ticket, Proof{TOTP: codeAt(r, secret, 0)}); !errors.Is(err, ErrLoginExpired) {
				t.Fatalf("after %d tries: %v", factors.MaxTicketTries, err)
			}
		}},
		{"an unknown ticket", func(t *testing.T, r *rig, _ accounts.User, secret []byte) {
			if _, _, _, err := r.svc.FinishLogin(t.Context(), at, "ticket-99", Proof{TOTP: codeAt(r, secret, 0)}); !errors.Is(err, ErrLoginExpired) {
				t.Fatalf("error %v", err)
			}
		}},
		{"no code spends no try", func(t *testing.T, r *rig, _ accounts.User, _ []byte) {
			step := begin(t, r, at)
			if _, _, _, err := r.svc.FinishLogin(t.Context(), at, step.Ticket, Proof{}); !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("error %v", err)
			}
			if tries := r.tickets.live[step.Ticket].tries; tries != 0 {
				t.Fatalf("%d tries spent", tries)
			}
		}},
		{"a factor checked by its caller completes the login", func(t *testing.T, r *rig, alice accounts.User, _ []byte) {
			step := begin(t, r, at)
			if u, err := r.svc.PendingLogin(t.Context(), step.Ticket); err != nil || u.ID != alice.ID {
				t.Fatalf("pending: %d, %v", u.ID, err)
			}
			_, _, sess, err := r.svc.CompleteLogin(t.Context(), at, step.Ticket, "pwd", "hwk")
			if err != nil || !slices.Equal(sess.AMR, []string{"pwd", "hwk"}) {
				t.Fatalf("AMR %v, error %v", sess.AMR, err)
			}
			if _, err := r.svc.PendingLogin(t.Context(), step.Ticket); !errors.Is(err, ErrLoginExpired) {
				t.Fatalf("the ticket after: %v", err)
			}
		}},
		{"mfa required: a user without one gets a session, to enrol", func(t *testing.T, r *rig, alice accounts.User, _ []byte) {
			r.svc.mfa = MFARequired
			_, _ = r.factors.RemoveTOTP(t.Context(), alice.ID)
			_, token, sess, err := r.svc.BeginLogin(t.Context(), at, alicePW)
			if err != nil || token == "" || HasSecondFactor(sess.AMR) {
				t.Fatalf("token %q, AMR %v, error %v", token, sess.AMR, err)
			}
		}},
		{"the ticket store down", func(t *testing.T, r *rig, _ accounts.User, _ []byte) {
			r.tickets.err = redisDown
			if _, _, _, err := r.svc.BeginLogin(t.Context(), at, alicePW); !errors.Is(err, redisDown) {
				t.Fatalf("error %v", err)
			}
			checkMetrics(t, r, map[string]int{"login/error": 1, "store_error/redis": 1})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			alice := r.user("alice", alicePW, "")
			secret := r.factors.enrol(alice.ID)
			tc.run(t, r, alice, secret)
		})
	}
}

// begin runs the first step and returns the second-factor step.
func begin(t *testing.T, r *rig, at Attempt) *SecondFactorStep {
	t.Helper()
	_, token, _, err := r.svc.BeginLogin(t.Context(), at, alicePW)
	var step *SecondFactorStep
	if !errors.As(err, &step) || token != "" || step.Ticket == "" || !errors.Is(err, ErrSecondFactorRequired) {
		t.Fatalf("BeginLogin: token %q, error %v", token, err)
	}
	return step
}

// Enrolment: confirmed by a first code, which is spent; recovery codes with
// the first factor only.
func TestEnrolTOTP(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	alice := r.user("alice", alicePW, "")
	at := Attempt{Username: "alice", IP: ip}
	secret, confirmed, err := r.svc.TOTPEnrolment(t.Context(), alice)
	if err != nil || confirmed || len(secret) != factors.SecretSize {
		t.Fatalf("secret of %d bytes, confirmed %v, error %v", len(secret), confirmed, err)
	}
	if again, _, _ := r.svc.TOTPEnrolment(t.Context(), alice); string(again) != string(secret) {
		t.Fatal("a second look at the page shows another secret")
	}
	if kinds, _ := r.factors.Kinds(t.Context(), alice.ID); len(kinds) != 0 {
		t.Fatalf("an unconfirmed secret counts: %v", kinds)
	}
	for _, tc := range []struct {
		name  string
		code  string
		want  error
		codes int
	}{
		{"a wrong code", "123456", ErrInvalidSecondFactor, 0},
		{"not a code", "12345x", ErrInvalidSecondFactor, 0},
		{"the right code", codeAt(r, secret, 0), nil, factors.RecoveryCodes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			codes, err := r.svc.ConfirmTOTP(t.Context(), alice, at, tc.code)
			if !is(err, tc.want) || len(codes) != tc.codes {
				t.Fatalf("%d codes, error %v; want %d, %v", len(codes), err, tc.codes, tc.want)
			}
		})
	}
	checkEvents(t, r, "mfa_failed", "mfa_failed", "mfa_enrolled", "mfa_enrolled")
	if ev := r.event(t, "mfa_enrolled"); ev["factor"] != "recovery" || ev["user_id"] != alice.ID {
		t.Errorf("mfa_enrolled %v", ev)
	}
	// The confirming code is spent: it does not log in.
	if _, _, _, err := r.svc.LoginWith(t.Context(), at, alicePW, Proof{TOTP: codeAt(r, secret, 0)}); !errors.Is(err, ErrInvalidSecondFactor) {
		t.Fatalf("the confirming code logs in: %v", err)
	}
	// A second factor of another kind brings no new codes.
	r.factors.addKind(alice.ID, "passkey")
	if codes, err := r.svc.FactorEnrolled(t.Context(), alice, ip, "passkey"); err != nil || codes != nil {
		t.Fatalf("a second factor: %d codes, %v", len(codes), err)
	}
	if _, confirmed, _ := r.svc.TOTPEnrolment(t.Context(), alice); !confirmed {
		t.Fatal("the page does not see the confirmed secret")
	}
}

// Removing the authenticator app, and new recovery codes, need the user's
// confirmation; the last factor gone takes the recovery codes with it.
func TestRemoveAndRenew(t *testing.T) {
	t.Parallel()
	at := Attempt{Username: "alice", IP: ip}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, r *rig, alice accounts.User, secret []byte)
	}{
		{"removal with a wrong password", func(t *testing.T, r *rig, alice accounts.User, _ []byte) {
			if err := r.svc.RemoveTOTP(t.Context(), alice, at, Confirmation{Password: "wrong-password"}); !errors.Is(err, ErrInvalidPassword) {
				t.Fatalf("error %v", err)
			}
			if kinds, _ := r.factors.Kinds(t.Context(), alice.ID); len(kinds) != 1 {
				t.Fatal("removed")
			}
		}},
		{"removal with a wrong code", func(t *testing.T, r *rig, alice accounts.User, _ []byte) {
			if err := r.svc.RemoveTOTP(t.Context(), alice, at, Confirmation{TOTP: "000000"}); !errors.Is(err, ErrInvalidSecondFactor) {
				t.Fatalf("error %v", err)
			}
		}},
		{"removal with nothing", func(t *testing.T, r *rig, alice accounts.User, _ []byte) {
			if err := r.svc.RemoveTOTP(t.Context(), alice, at, Confirmation{}); !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("error %v", err)
			}
		}},
		{"removal with a code takes the recovery codes", func(t *testing.T, r *rig, alice accounts.User, secret []byte) {
			if err := r.svc.RemoveTOTP(t.Context(), alice, at, Confirmation{TOTP: codeAt(r, secret, 0)}); err != nil {
				t.Fatal(err)
			}
			if kinds, _ := r.factors.Kinds(t.Context(), alice.ID); len(kinds) != 0 || r.factors.recoveryLeft(alice.ID) != 0 {
				t.Fatalf("left: %v and %d recovery codes", kinds, r.factors.recoveryLeft(alice.ID))
			}
			checkEvents(t, r, "mfa_removed", "mfa_removed")
			checkMetrics(t, r, map[string]int{"mfa/totp/success": 1, "mfa/totp/removed": 1, "mfa/recovery/removed": 1})
			if _, _, _, err := r.svc.Login(t.Context(), at, alicePW); err != nil {
				t.Fatalf("the password alone after: %v", err)
			}
		}},
		{"removal with the password keeps the codes of another factor", func(t *testing.T, r *rig, alice accounts.User, _ []byte) {
			r.factors.addKind(alice.ID, "passkey")
			if err := r.svc.RemoveTOTP(t.Context(), alice, at, Confirmation{Password: alicePW}); err != nil {
				t.Fatal(err)
			}
			if r.factors.recoveryLeft(alice.ID) != factors.RecoveryCodes {
				t.Fatal("the recovery codes went with the authenticator app")
			}
		}},
		{"new recovery codes: the old set dies", func(t *testing.T, r *rig, alice accounts.User, _ []byte) {
			old, _ := r.factors.NewRecoveryCodes(t.Context(), alice.ID)
			codes, err := r.svc.NewRecoveryCodes(t.Context(), alice, at, Confirmation{Password: alicePW})
			if err != nil || len(codes) != factors.RecoveryCodes {
				t.Fatalf("%d codes, %v", len(codes), err)
			}
			if _, _, _, err := r.svc.LoginWith(t.Context(), at, alicePW, Proof{RecoveryCode: old[0]}); !errors.Is(err, ErrInvalidSecondFactor) {
				t.Fatalf("an old code: %v", err)
			}
			if _, _, _, err := r.svc.LoginWith(t.Context(), at, alicePW, Proof{RecoveryCode: codes[0]}); err != nil {
				t.Fatalf("a new code: %v", err)
			}
		}},
		{"new recovery codes without a second factor", func(t *testing.T, r *rig, alice accounts.User, _ []byte) {
			_, _ = r.factors.RemoveTOTP(t.Context(), alice.ID)
			if _, err := r.svc.NewRecoveryCodes(t.Context(), alice, at, Confirmation{Password: alicePW}); !errors.Is(err, ErrNoSecondFactor) {
				t.Fatalf("error %v", err)
			}
		}},
		{"an operator's reset ends every session", func(t *testing.T, r *rig, alice accounts.User, secret []byte) {
			if _, _, _, err := r.svc.LoginWith(t.Context(), at, alicePW, Proof{TOTP: codeAt(r, secret, 0)}); err != nil {
				t.Fatal(err)
			}
			n, ended, err := r.svc.ResetSecondFactors(t.Context(), alice, "cli")
			if err != nil || n != 2 || ended != 1 {
				t.Fatalf("%d factors, %d sessions, %v", n, ended, err)
			}
			if list, _ := r.svc.SecondFactors(t.Context(), alice); len(list) != 0 {
				t.Fatalf("left: %v", list)
			}
			if ev := r.event(t, "mfa_removed"); ev["factor"] != "all" || ev["client_ip"] != "cli" {
				t.Errorf("mfa_removed %v", ev)
			}
		}},
		{"a step up replaces a password-only session", func(t *testing.T, r *rig, alice accounts.User, secret []byte) {
			token, _, err := r.svc.StartSession(t.Context(), alice, at)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := r.svc.StepUp(t.Context(), alice, at, token, Proof{TOTP: "000000"}); !errors.Is(err, ErrInvalidSecondFactor) {
				t.Fatalf("a wrong code: %v", err)
			}
			newToken, sess, err := r.svc.StepUp(t.Context(), alice, at, token, Proof{TOTP: codeAt(r, secret, 0)})
			if err != nil || !slices.Equal(sess.AMR, []string{"pwd", "otp"}) {
				t.Fatalf("AMR %v, %v", sess.AMR, err)
			}
			if _, err := r.sessions.Lookup(t.Context(), token); err == nil {
				t.Fatal("the old session lives on")
			}
			if _, err := r.sessions.Lookup(t.Context(), newToken); err != nil {
				t.Fatalf("the new session: %v", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			alice := r.user("alice", alicePW, "")
			secret := r.factors.enrol(alice.ID)
			if _, err := r.factors.NewRecoveryCodes(t.Context(), alice.ID); err != nil {
				t.Fatal(err)
			}
			tc.run(t, r, alice, secret)
		})
	}
}

func TestAMR(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		amr    []string
		second bool
		text   string
	}{
		{"none: a session from before", nil, false, "pwd"},
		{"password", []string{"pwd"}, false, "pwd"},
		{"password and code", []string{"pwd", "otp"}, true, "pwd,otp"},
		{"recovery code", []string{"pwd", "otp", "recovery"}, true, "pwd,otp,recovery"},
		{"passkey alone", []string{"hwk", "user"}, true, "hwk,user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := HasSecondFactor(tc.amr); got != tc.second {
				t.Errorf("HasSecondFactor %v", got)
			}
			if got := AMRText(tc.amr); got != tc.text {
				t.Errorf("AMRText %q, want %q", got, tc.text)
			}
		})
	}
}

// The clock moves the codes: one that was fresh is refused once the clock
// has gone two steps on.
func TestCodesFollowTheClock(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	alice := r.user("alice", alicePW, "")
	secret := r.factors.enrol(alice.ID)
	old := codeAt(r, secret, 0)
	r.clock.advance(2 * factors.Period * time.Second)
	if _, _, _, err := r.svc.LoginWith(t.Context(), Attempt{Username: "alice", IP: ip}, alicePW, Proof{TOTP: old}); !errors.Is(err, ErrInvalidSecondFactor) {
		t.Fatalf("a code two steps old: %v", err)
	}
	if _, _, _, err := r.svc.LoginWith(t.Context(), Attempt{Username: "alice", IP: ip}, alicePW, Proof{TOTP: codeAt(r, secret, 0)}); err != nil {
		t.Fatalf("the code of the new now: %v", err)
	}
}
