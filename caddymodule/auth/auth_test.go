package auth

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/sessions"
)

// The account service's rules, over in-memory fakes (fakes_test.go): what
// each path answers, what it costs in hashes, what it counts against the
// throttle, and the audit events and metrics it leaves. The integration
// tests in package caddymodule run the same paths over real stores.

const (
	ip      = "192.0.2.1"
	alicePW = "Vel0city-Marmalade-42"
	newPW   = "Quartz-Lantern-Ferry-77"
)

// The stores' errors when down: the service must return them as they are.
var (
	pgDown    = outage("postgres")
	redisDown = outage("redis")
)

// errThrottled stands for any *ThrottledError in the tables.
var errThrottled = errors.New("throttled")

// is tells whether err is want (errThrottled: any *ThrottledError; nil:
// no error).
func is(err, want error) bool {
	if want == errThrottled {
		var t *ThrottledError
		return errors.As(err, &t) && t.RetryAfter > 0
	}
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}

// checkMetrics compares the metrics counted with want, exactly.
func checkMetrics(t *testing.T, r *rig, want map[string]int) {
	t.Helper()
	if want == nil {
		want = map[string]int{}
	}
	if got := r.metrics.snapshot(); !maps.Equal(got, want) {
		t.Errorf("metrics %v, want %v", got, want)
	}
}

func checkEvents(t *testing.T, r *rig, want ...string) {
	t.Helper()
	if got := r.eventNames(t); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	down := errors.New("hasher stopped")
	for _, tc := range []struct {
		name    string
		setup   func(r *rig)
		at      Attempt
		pw      string
		want    error
		hashes  [3]int // computed: hash, verify, burn
		metrics map[string]int
		events  []string
		counts  map[string]int // throttle counters afterwards
	}{
		{
			name: "success", at: Attempt{Username: "alice", IP: ip}, pw: alicePW,
			hashes: [3]int{0, 1, 0}, metrics: map[string]int{"login/success": 1},
			events: []string{"login_succeeded"}, counts: map[string]int{"login/user/alice": 0},
		},
		{
			name: "a look-alike of the name", at: Attempt{Username: "ＡＬＩＣＥ", IP: ip}, pw: alicePW,
			hashes: [3]int{0, 1, 0}, metrics: map[string]int{"login/success": 1}, events: []string{"login_succeeded"},
		},
		{
			name: "wrong password", at: Attempt{Username: "alice", IP: ip}, pw: "not-her-password",
			want: ErrInvalidPassword, hashes: [3]int{0, 1, 0}, metrics: map[string]int{"login/invalid_password": 1},
			events: []string{"login_failed"}, counts: map[string]int{"login/user/alice": 1},
		},
		{
			name: "unknown user", at: Attempt{Username: "nobody", IP: ip}, pw: "any-password",
			want: ErrUnknownUser, hashes: [3]int{0, 0, 1}, metrics: map[string]int{"login/unknown_user": 1},
			events: []string{"login_failed"}, counts: map[string]int{"login/user/nobody": 1},
		},
		{
			name: "a name that can never be registered", at: Attempt{Username: "two words", IP: ip}, pw: "any-password",
			want: ErrUnknownUser, hashes: [3]int{0, 0, 1}, metrics: map[string]int{"login/unknown_user": 1},
			events: []string{"login_failed"}, counts: map[string]int{"login/user/two words": 1},
		},
		{
			name:  "throttled",
			setup: func(r *rig) { r.throttle.set("login/user/alice", 3) },
			at:    Attempt{Username: "alice", IP: ip}, pw: alicePW,
			want: errThrottled, metrics: map[string]int{"login/throttled": 1, "throttled/login": 1},
			counts: map[string]int{"login/user/alice": 3},
		},
		{
			name: "NUL in the name is a failure counted", at: Attempt{Username: "ali\x00ce", IP: ip}, pw: alicePW,
			want: ErrBadBytes, metrics: map[string]int{"login/invalid_input": 1},
			events: []string{"login_failed"}, counts: map[string]int{"login/user/ali\x00ce": 1},
		},
		{
			name: "invalid UTF-8 in the password counts against the name", at: Attempt{Username: "alice", IP: ip}, pw: "pass\xffword",
			want: ErrBadBytes, metrics: map[string]int{"login/invalid_input": 1},
			events: []string{"login_failed"}, counts: map[string]int{"login/user/alice": 1},
		},
		{
			name: "empty password", at: Attempt{Username: "alice", IP: ip}, pw: "",
			want: ErrInvalidInput,
		},
		{
			name: "oversized password", at: Attempt{Username: "alice", IP: ip}, pw: strings.Repeat("p", maxPasswordBytes+1),
			want: ErrInvalidInput,
		},
		{
			name:  "a device cookie keeps its own allowance",
			setup: func(r *rig) { r.throttle.set("login/user/alice", 3) }, // locked out by others
			at:    Attempt{Username: "alice", IP: ip, Device: "device:uk-alice"}, pw: alicePW,
			hashes: [3]int{0, 1, 0}, metrics: map[string]int{"login/success": 1}, events: []string{"login_succeeded"},
			counts: map[string]int{"login/user/alice": 3, "login/device/dev-uk-alice": 0},
		},
		{
			name: "a device cookie's failures count on the device", at: Attempt{Username: "alice", IP: ip, Device: "device:uk-alice"},
			pw: "not-her-password", want: ErrInvalidPassword, hashes: [3]int{0, 1, 0},
			metrics: map[string]int{"login/invalid_password": 1}, events: []string{"login_failed"},
			counts: map[string]int{"login/user/alice": 0, "login/device/dev-uk-alice": 1},
		},
		{
			name:  "another user's device cookie counts for nothing",
			setup: func(r *rig) { r.throttle.set("login/user/alice", 3) },
			at:    Attempt{Username: "alice", IP: ip, Device: "device:uk-bob"}, pw: alicePW,
			want: errThrottled, metrics: map[string]int{"login/throttled": 1, "throttled/login": 1},
		},
		{
			name:  "account store down: the attempt is taken back, not the earlier failures",
			setup: func(r *rig) { r.accounts.err = pgDown; r.throttle.set("login/user/alice", 2) },
			at:    Attempt{Username: "alice", IP: ip}, pw: alicePW,
			want: pgDown, metrics: map[string]int{"store_error/postgres": 1, "login/error": 1},
			counts: map[string]int{"login/user/alice": 2},
		},
		{
			name:  "throttle store down",
			setup: func(r *rig) { r.throttle.err = redisDown },
			at:    Attempt{Username: "alice", IP: ip}, pw: alicePW,
			want: redisDown, metrics: map[string]int{"store_error/redis": 1, "login/error": 1},
		},
		{
			name:  "session store down",
			setup: func(r *rig) { r.sessions.err = redisDown },
			at:    Attempt{Username: "alice", IP: ip}, pw: alicePW,
			want: redisDown, hashes: [3]int{0, 1, 0}, metrics: map[string]int{"store_error/redis": 1, "login/error": 1},
		},
		{
			name:  "hasher fails",
			setup: func(r *rig) { r.hasher.err = down },
			at:    Attempt{Username: "alice", IP: ip}, pw: alicePW,
			want: down, hashes: [3]int{0, 1, 0}, metrics: map[string]int{"login/error": 1},
		},
		{
			name: "an outdated hash is redone",
			setup: func(r *rig) {
				r.accounts.users[1] = func(u accounts.User) accounts.User { u.PasswordHash = "old$" + alicePW; return u }(r.accounts.users[1])
			},
			at: Attempt{Username: "alice", IP: ip}, pw: alicePW,
			hashes: [3]int{1, 1, 0}, metrics: map[string]int{"login/success": 1}, events: []string{"login_succeeded"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			alice := r.user("alice", alicePW, "alice@example.com")
			if tc.setup != nil {
				tc.setup(r)
			}
			u, token, sess, err := r.svc.Login(t.Context(), tc.at, tc.pw)
			if !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if got := r.hasher.computations(); got != tc.hashes {
				t.Errorf("hashes computed (hash, verify, burn) %v, want %v", got, tc.hashes)
			}
			checkMetrics(t, r, tc.metrics)
			checkEvents(t, r, tc.events...)
			for key, n := range tc.counts {
				if got := r.throttle.count(key); got != n {
					t.Errorf("throttle %s = %d, want %d", key, got, n)
				}
			}
			if tc.want == nil {
				if u.ID != alice.ID || token == "" || sess.UserID != alice.ID {
					t.Fatalf("logged in as %+v, session %+v", u, sess)
				}
				if got, err := r.sessions.Lookup(t.Context(), token); err != nil || got.Username != "alice" {
					t.Fatalf("session stored: %+v, %v", got, err)
				}
				if ev := r.event(t, "login_succeeded"); ev["username"] != "alice" || ev["client_ip"] != ip ||
					ev["user_id"] != alice.ID || ev["session"] != sessions.FormatID(sess.ID) {
					t.Errorf("login_succeeded %v", ev)
				}
				if h := r.accounts.get(alice.ID).PasswordHash; h != "fake$"+alicePW {
					t.Errorf("stored hash %q, want the current one", h)
				}
			} else if token != "" || u.ID != 0 {
				t.Fatalf("a failed login returned user %+v, token %q", u, token)
			}
			r.noSecrets(t, alicePW, tc.pw, token)
		})
	}
}

// An unknown name costs exactly what a wrong password costs: one hash
// computation at the configured cost (Burn for the one, Verify of the
// stored hash for the other), never a new hash, so that the answer's time
// does not tell which names have accounts. Counted, not timed.
func TestUnknownUserCostsOneHash(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, username string
		want           error
		verify, burn   int
	}{
		{"wrong password", "alice", ErrInvalidPassword, 1, 0},
		{"unknown user", "nobody", ErrUnknownUser, 0, 1},
		{"unknown look-alike", "ｎｏｂｏｄｙ", ErrUnknownUser, 0, 1},
		{"name with no canonical form", "a;b", ErrUnknownUser, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			r.user("alice", alicePW, "")
			_, err := r.svc.Verify(t.Context(), Attempt{Username: tc.username, IP: ip}, "wrong-password")
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if got, want := r.hasher.computations(), [3]int{0, tc.verify, tc.burn}; got != want {
				t.Fatalf("hashes computed (hash, verify, burn) %v, want %v: one, like a wrong password", got, want)
			}
		})
	}
}

func TestRegister(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name               string
		setup              func(r *rig)
		admin              bool // CreateUser, as the CLI does, rather than Register
		user, pw, email    string
		want               error
		hashes             int
		metrics            map[string]int
		accounts           int // afterwards, alice included
		wantName, wantMail string
	}{
		{name: "success", user: "Bob", pw: newPW, email: " bob@example.com ", hashes: 1, accounts: 2,
			wantName: "bob", wantMail: "bob@example.com"},
		{name: "without an email address", user: "bob", pw: newPW, hashes: 1, accounts: 2, wantName: "bob"},
		{name: "exists", user: "alice", pw: newPW, want: ErrExists, accounts: 1},
		{name: "exists as a look-alike", user: "ＡＬＩＣＥ", pw: newPW, want: ErrExists, accounts: 1},
		{name: "exists, found by the insert (a concurrent registration)", user: "bob", pw: newPW,
			setup: func(r *rig) { r.accounts.createErr = accounts.ErrExists }, want: ErrExists, hashes: 1, accounts: 1},
		{name: "closed", user: "bob", pw: newPW, want: ErrRegistrationClosed, accounts: 1,
			setup: func(r *rig) { r.svc.registration = false }},
		{name: "closed, but an administrator creates", admin: true, user: "bob", pw: newPW, hashes: 1, accounts: 2,
			setup: func(r *rig) { r.svc.registration = false }, wantName: "bob"},
		{name: "weak: too short", user: "bob", pw: "short", want: ErrTooWeak, accounts: 1},
		{name: "weak: the username", user: "bobby-tables", pw: "Bobby-Tables", want: ErrTooWeak, accounts: 1},
		{name: "weak: a common password", user: "bob", pw: "password123", want: ErrTooWeak, accounts: 1},
		{name: "weak: the email address", user: "bob", pw: "zanzibar.quokka@example.com", email: "zanzibar.quokka@example.com",
			want: ErrTooWeak, accounts: 1},
		{name: "invalid name: a space", user: "two words", pw: newPW, want: ErrInvalidInput, accounts: 1},
		{name: "invalid name: a colon", user: "bob:admin", pw: newPW, want: ErrInvalidInput, accounts: 1},
		{name: "invalid name: empty", user: "", pw: newPW, want: ErrInvalidInput, accounts: 1},
		{name: "invalid name: too long", user: strings.Repeat("b", 65), pw: newPW, want: ErrInvalidInput, accounts: 1},
		{name: "invalid email", user: "bob", pw: newPW, email: "Bob <bob@example.com>", want: ErrInvalidInput, accounts: 1},
		{name: "NUL in the email", user: "bob", pw: newPW, email: "bob@example.com\x00", want: ErrBadBytes, accounts: 1},
		{name: "invalid UTF-8 in the password", user: "bob", pw: "Quartz\xff-Lantern", want: ErrBadBytes, accounts: 1},
		{name: "account store down", user: "bob", pw: newPW, setup: func(r *rig) { r.accounts.err = pgDown },
			want: pgDown, metrics: map[string]int{"store_error/postgres": 1}, accounts: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			r.user("alice", alicePW, "alice@example.com")
			if tc.setup != nil {
				tc.setup(r)
			}
			register := r.svc.Register
			if tc.admin {
				register = r.svc.CreateUser
			}
			u, err := register(t.Context(), tc.user, tc.pw, tc.email, ip)
			if !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if got := r.hasher.computations(); got != [3]int{tc.hashes, 0, 0} {
				t.Errorf("hashes computed (hash, verify, burn) %v, want %d hash", got, tc.hashes)
			}
			checkMetrics(t, r, tc.metrics)
			r.accounts.err = nil
			if n := r.accounts.count(); n != tc.accounts {
				t.Errorf("%d accounts, want %d", n, tc.accounts)
			}
			if tc.want != nil {
				checkEvents(t, r)
				return
			}
			stored := r.accounts.get(u.ID)
			if stored.Username != tc.wantName || stored.Canonical != tc.wantName || stored.Email != tc.wantMail ||
				stored.PasswordHash != "fake$"+tc.pw {
				t.Fatalf("stored %+v", stored)
			}
			checkEvents(t, r, "user_registered")
			if ev := r.event(t, "user_registered"); ev["username"] != tc.wantName || ev["user_id"] != u.ID || ev["client_ip"] != ip {
				t.Errorf("user_registered %v", ev)
			}
			r.noSecrets(t, tc.pw, "fake$"+tc.pw)
		})
	}
}

func TestImportUser(t *testing.T) {
	t.Parallel()
	bc, err := bcrypt.GenerateFromPassword([]byte("imported-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, user, hash string
		want             error
	}{
		{"bcrypt", "Carl", string(bc), nil},
		{"not a hash", "carl", "plain-text-password", ErrInvalidInput},
		{"exists", "alice", string(bc), ErrExists},
		{"refused name", "carl;drop", string(bc), ErrInvalidInput},
		{"NUL in the hash", "carl", string(bc) + "\x00", ErrBadBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			r.user("alice", alicePW, "")
			u, err := r.svc.ImportUser(t.Context(), tc.user, tc.hash, "")
			if !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if got := r.hasher.computations(); got != [3]int{} {
				t.Errorf("an import computed hashes: %v", got)
			}
			if tc.want == nil {
				if got := r.accounts.get(u.ID); got.Username != "carl" || got.PasswordHash != tc.hash {
					t.Fatalf("stored %+v", got)
				}
				checkEvents(t, r, "user_registered")
				r.noSecrets(t, tc.hash)
			}
		})
	}
}

func TestRequestOTP(t *testing.T) {
	t.Parallel()
	mailDown := errors.New("smtp: connection refused")
	for _, tc := range []struct {
		name    string
		setup   func(r *rig)
		user    string
		want    error
		mails   int
		metrics map[string]int
		events  []string
		counted string // the throttle counter that counted the request
		gone    bool   // the client goes away while the mail is sent
	}{
		{name: "mails the code", user: "alice", mails: 1, metrics: map[string]int{"mail/sent": 1},
			events: []string{"otp_requested"}, counted: "mail/user/alice"},
		{name: "a look-alike of the name", user: "Alice", mails: 1, metrics: map[string]int{"mail/sent": 1},
			events: []string{"otp_requested"}, counted: "mail/user/alice"},
		{name: "unknown user", user: "nobody", want: ErrUnknownUser, counted: "mail/user/nobody"},
		{name: "no email address", user: "noemail", want: ErrNoEmail, counted: "mail/user/noemail"},
		{name: "mail fails: no code stays valid", user: "alice", setup: func(r *rig) { r.mailer.err = mailDown },
			want: ErrMailFailed, metrics: map[string]int{"mail/failed": 1}, counted: "mail/user/alice"},
		{name: "client gone while mailing: no code stays valid", user: "alice", setup: func(r *rig) { r.mailer.err = context.Canceled },
			gone: true, want: ErrMailFailed, metrics: map[string]int{"mail/failed": 1}, counted: "mail/user/alice"},
		{name: "throttled", user: "alice", setup: func(r *rig) { r.throttle.set("mail/user/alice", 3) },
			want: errThrottled, metrics: map[string]int{"throttled/mail": 1}},
		{name: "NUL in the name", user: "ali\x00ce", want: ErrBadBytes},
		{name: "empty name", user: "", want: ErrInvalidInput},
		{name: "code store down", user: "alice", setup: func(r *rig) { r.codes.err = redisDown },
			want: redisDown, metrics: map[string]int{"store_error/redis": 1}, counted: "mail/user/alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			alice := r.user("alice", alicePW, "alice@example.com")
			r.user("noemail", alicePW, "")
			if tc.setup != nil {
				tc.setup(r)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.gone {
				r.mailer.during = cancel
			}
			u, reqid, err := r.svc.RequestOTP(ctx, tc.user, ip)
			if !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			checkMetrics(t, r, tc.metrics)
			checkEvents(t, r, tc.events...)
			if len(r.mailer.sent) != tc.mails {
				t.Fatalf("%d mails, want %d", len(r.mailer.sent), tc.mails)
			}
			if tc.counted != "" && r.throttle.count(tc.counted) != 1 {
				t.Errorf("throttle %s = %d, want 1: every request counts", tc.counted, r.throttle.count(tc.counted))
			}
			otp, pending := r.codes.otp(alice.Userhash)
			if tc.want != nil {
				if pending {
					t.Fatalf("a code is pending after %v", err)
				}
				return
			}
			if u.ID != alice.ID || !pending || reqid != otp.reqid {
				t.Fatalf("user %+v, reqid %q, pending %+v", u, reqid, otp)
			}
			m := r.mailer.last(t)
			if m.To != "alice@example.com" || m.From != "gate@example.com" ||
				!strings.Contains(m.Body, otp.code) || !strings.Contains(m.Body, "valid for 10 minutes") {
				t.Fatalf("mail %+v", m)
			}
			r.noSecrets(t, otp.code)
		})
	}
}

// otpRig is a rig where alice has asked for a code and has two sessions.
func otpRig(t *testing.T) (r *rig, alice accounts.User, reqid, code string) {
	t.Helper()
	r = newRig(t)
	alice = r.user("alice", alicePW, "alice@example.com")
	for range 2 {
		if _, _, err := r.svc.StartSession(t.Context(), alice, Attempt{}); err != nil {
			t.Fatal(err)
		}
	}
	_, reqid, err := r.svc.RequestOTP(t.Context(), "alice", ip)
	if err != nil {
		t.Fatal(err)
	}
	otp, _ := r.codes.otp(alice.Userhash)
	return r, alice, reqid, otp.code
}

func TestResetWithOTP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// edit changes the right arguments: userhash, reqid, code, password.
		edit    func(r *rig, args []string)
		want    error
		guesses int // guesses spent at the code
		counted int // failures counted against alice's codes
		metrics map[string]int
		events  []string // after otp_requested
	}{
		{name: "success ends every session", guesses: 1, events: []string{"password_changed"}},
		{name: "wrong code is counted", edit: func(_ *rig, a []string) { a[2] = "000000" },
			want: ErrInvalidCode, guesses: 1, counted: 1, events: []string{"password_reset_failed"}},
		{name: "wrong request id is counted", edit: func(_ *rig, a []string) { a[1] = "req-0" },
			want: ErrInvalidCode, guesses: 1, counted: 1, events: []string{"password_reset_failed"}},
		{name: "a weak password is refused before the code is spent", edit: func(_ *rig, a []string) { a[3] = "short" },
			want: ErrTooWeak},
		{name: "a common password is refused before the code is spent", edit: func(_ *rig, a []string) { a[3] = "password1" },
			want: ErrTooWeak},
		{name: "unknown userhash", edit: func(_ *rig, a []string) { a[0] = strings.Repeat("f", 32) }, want: ErrUnknownUser},
		{name: "malformed userhash", edit: func(_ *rig, a []string) { a[0] = "not-a-userhash" }, want: ErrUnknownUser},
		{name: "throttled", edit: func(r *rig, _ []string) { r.throttle.set("otp/user/alice", 3) },
			want: errThrottled, counted: 3, metrics: map[string]int{"throttled/otp": 1}},
		{name: "NUL in the code", edit: func(_ *rig, a []string) { a[2] = "12\x003456" }, want: ErrBadBytes},
		{name: "oversized code", edit: func(_ *rig, a []string) { a[2] = strings.Repeat("1", 17) }, want: ErrInvalidInput},
		{name: "code store down", edit: func(r *rig, _ []string) { r.codes.err = redisDown },
			want: redisDown, counted: 1, metrics: map[string]int{"store_error/redis": 1}},
		{name: "session store down: the password changed, the error is told", edit: func(r *rig, _ []string) { r.sessions.err = redisDown },
			want: redisDown, guesses: 1, counted: 1, metrics: map[string]int{"store_error/redis": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, alice, reqid, code := otpRig(t)
			r.metrics.counts = map[string]int{}
			args := []string{alice.Userhash, reqid, code, newPW}
			if tc.edit != nil {
				tc.edit(r, args)
			}
			_, err := r.svc.ResetWithOTP(t.Context(), args[0], args[1], args[2], args[3], ip)
			if !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if r.codes.checks != tc.guesses {
				t.Errorf("%d guesses spent, want %d", r.codes.checks, tc.guesses)
			}
			if got := r.throttle.count("otp/user/alice"); got != tc.counted {
				t.Errorf("throttle otp/user/alice = %d, want %d", got, tc.counted)
			}
			checkMetrics(t, r, tc.metrics)
			checkEvents(t, r, append([]string{"otp_requested"}, tc.events...)...)
			r.sessions.err, r.codes.err = nil, nil
			hash, live := r.accounts.get(alice.ID).PasswordHash, len(r.sessions.of(alice.Userhash))
			_, pending := r.codes.otp(alice.Userhash)
			switch {
			case tc.want == nil:
				if hash != "fake$"+args[3] || live != 0 || pending {
					t.Fatalf("after the reset: hash %q, %d sessions, code pending %v", hash, live, pending)
				}
				if ev := r.event(t, "password_changed"); ev["by"] != "otp" || ev["username"] != "alice" {
					t.Errorf("password_changed %v", ev)
				}
			case errors.Is(tc.want, redisDown) && tc.guesses == 1:
				// The new password holds; the sessions could not be ended.
				if hash != "fake$"+newPW {
					t.Fatalf("hash %q", hash)
				}
			default:
				if hash != "fake$"+alicePW || live != 2 {
					t.Fatalf("after a failed reset: hash %q, %d sessions", hash, live)
				}
				if tc.guesses == 0 && !pending {
					t.Fatal("the code was lost without a guess")
				}
			}
			r.noSecrets(t, code, args[2], args[3])
		})
	}
}

// The code survives a weak password and works with a strong one after.
func TestResetWithOTPAfterWeakPassword(t *testing.T) {
	t.Parallel()
	r, alice, reqid, code := otpRig(t)
	if _, err := r.svc.ResetWithOTP(t.Context(), alice.Userhash, reqid, code, "password123", ip); !errors.Is(err, ErrTooWeak) {
		t.Fatalf("weak: %v", err)
	}
	if _, err := r.svc.ResetWithOTP(t.Context(), alice.Userhash, reqid, code, newPW, ip); err != nil {
		t.Fatalf("strong, after a weak one: %v", err)
	}
}

// tokenRig is a rig where alice has two sessions and was mailed a reset link.
func tokenRig(t *testing.T) (r *rig, alice accounts.User, token string) {
	t.Helper()
	r = newRig(t)
	alice = r.user("alice", alicePW, "alice@example.com")
	for range 2 {
		if _, _, err := r.svc.StartSession(t.Context(), alice, Attempt{}); err != nil {
			t.Fatal(err)
		}
	}
	err := r.svc.MailResetLink(t.Context(), alice, ip, func(tok string) string {
		token = tok
		return "https://app.example.com/auth/reset?token=" + tok
	})
	if err != nil {
		t.Fatal(err)
	}
	if m := r.mailer.last(t); !strings.Contains(m.Body, "https://app.example.com/auth/reset?token="+token) {
		t.Fatalf("mail %+v", m)
	}
	return r, alice, token
}

func TestResetWithToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		edit    func(r *rig, token, pw *string)
		want    error
		spent   bool // the token is used up
		counted int  // failures counted against the client IP
		metrics map[string]int
		events  []string // after reset_link_sent
	}{
		{name: "success ends every session", spent: true, events: []string{"password_changed"}},
		{name: "wrong token is counted", edit: func(_ *rig, tok, _ *string) { *tok = "token-999" }, want: ErrInvalidCode, counted: 1},
		{name: "a weak password is refused before the token is spent", edit: func(_ *rig, _, pw *string) { *pw = "short" },
			want: ErrTooWeak, counted: 1},
		{name: "a token older than the password", edit: func(r *rig, _, _ *string) {
			r.clock.advance(time.Second)
			u, _ := r.accounts.ByID(t.Context(), 1)
			if err := r.svc.ChangePassword(t.Context(), u, "Another-Fine-Passphrase-9", "", ip); err != nil {
				t.Fatal(err)
			}
		}, want: ErrInvalidCode, counted: 1, events: []string{"password_changed"}},
		{name: "throttled", edit: func(r *rig, _, _ *string) { r.throttle.set("reset/ip/"+ip, 3) },
			want: errThrottled, counted: 3, metrics: map[string]int{"throttled/reset": 1}},
		{name: "oversized token", edit: func(_ *rig, tok, _ *string) { *tok = strings.Repeat("a", 129) }, want: ErrInvalidInput},
		{name: "NUL in the token", edit: func(_ *rig, tok, _ *string) { *tok += "\x00" }, want: ErrBadBytes},
		{name: "code store down", edit: func(r *rig, _, _ *string) { r.codes.err = redisDown },
			want: redisDown, counted: 1, metrics: map[string]int{"store_error/redis": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, alice, token := tokenRig(t)
			r.metrics.counts = map[string]int{}
			tok, pw := token, newPW
			if tc.edit != nil {
				tc.edit(r, &tok, &pw)
			}
			_, err := r.svc.ResetWithToken(t.Context(), tok, pw, ip)
			if !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if got := r.throttle.count("reset/ip/" + ip); got != tc.counted {
				t.Errorf("throttle reset/ip = %d, want %d", got, tc.counted)
			}
			checkMetrics(t, r, tc.metrics)
			checkEvents(t, r, append([]string{"reset_link_sent"}, tc.events...)...)
			r.codes.err = nil
			if live := r.codes.resetLive(token); live == tc.spent {
				t.Errorf("token live %v, want spent %v", live, tc.spent)
			}
			if tc.want == nil {
				if h, n := r.accounts.get(alice.ID).PasswordHash, len(r.sessions.of(alice.Userhash)); h != "fake$"+pw || n != 0 {
					t.Fatalf("after the reset: hash %q, %d sessions", h, n)
				}
				if ev := r.event(t, "password_changed"); ev["by"] != "reset_token" {
					t.Errorf("password_changed %v", ev)
				}
				if _, err := r.svc.ResetWithToken(t.Context(), token, "Yet-Another-Passphrase-3", ip); !errors.Is(err, ErrInvalidCode) {
					t.Fatalf("the token worked twice: %v", err)
				}
			}
			r.noSecrets(t, token, pw)
		})
	}
}

func TestMailResetLink(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		setup   func(r *rig)
		email   string
		want    error
		metrics map[string]int
		events  []string
	}{
		{name: "mails the link", email: "alice@example.com", metrics: map[string]int{"mail/sent": 1}, events: []string{"reset_link_sent"}},
		{name: "no email address", want: ErrNoEmail},
		{name: "mail fails", email: "alice@example.com", setup: func(r *rig) { r.mailer.err = errors.New("smtp down") },
			want: ErrMailFailed, metrics: map[string]int{"mail/failed": 1}},
		{name: "throttled", email: "alice@example.com", setup: func(r *rig) { r.throttle.set("mail/user/alice", 3) },
			want: errThrottled, metrics: map[string]int{"throttled/mail": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			alice := r.user("alice", alicePW, tc.email)
			if tc.setup != nil {
				tc.setup(r)
			}
			var token string
			err := r.svc.MailResetLink(t.Context(), alice, ip, func(tok string) string { token = tok; return "link:" + tok })
			if !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			checkMetrics(t, r, tc.metrics)
			checkEvents(t, r, tc.events...)
			if tc.want == nil {
				if m := r.mailer.last(t); !strings.Contains(m.Body, "link:"+token) || !strings.Contains(m.Body, "for 10 minutes") {
					t.Fatalf("mail %+v", m)
				}
			}
			r.noSecrets(t, token)
		})
	}
}

// A session may change the password without the current one only within
// ReauthWindow of its login, by the service's clock.
func TestFreshLogin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		after time.Duration
		fresh bool
	}{
		{"at once", 0, true},
		{"a second before the window closes", ReauthWindow - time.Second, true},
		{"as the window closes", ReauthWindow, false},
		{"an hour later", time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			_, sess, err := r.svc.StartSession(t.Context(), r.user("alice", alicePW, ""), Attempt{})
			if err != nil {
				t.Fatal(err)
			}
			r.clock.advance(tc.after)
			if got := r.svc.FreshLogin(sess); got != tc.fresh {
				t.Fatalf("FreshLogin after %s = %v, want %v", tc.after, got, tc.fresh)
			}
		})
	}
}

func TestChangePassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		setup   func(r *rig)
		pw      string
		keep    int // which of the 3 sessions to keep (1-based); 0: none
		want    error
		live    int
		metrics map[string]int
	}{
		{name: "keeps the caller's session, ends the others", pw: newPW, keep: 2, live: 1},
		{name: "ends every session (CLI passwd)", pw: newPW, live: 0},
		{name: "weak", pw: "alice", want: ErrTooWeak, live: 3},
		{name: "common", pw: "qwertyuiop", want: ErrTooWeak, live: 3},
		{name: "oversized", pw: strings.Repeat("x", maxPasswordBytes+1), want: ErrInvalidInput, live: 3},
		{name: "NUL", pw: newPW + "\x00", want: ErrBadBytes, live: 3},
		{name: "account store down", pw: newPW, setup: func(r *rig) { r.accounts.err = pgDown },
			want: pgDown, live: 3, metrics: map[string]int{"store_error/postgres": 1}},
		{name: "session store down after the hash changed", pw: newPW, setup: func(r *rig) { r.sessions.err = redisDown },
			want: redisDown, live: 3, metrics: map[string]int{"store_error/redis": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			alice := r.user("alice", alicePW, "alice@example.com")
			var ids []string
			for range 3 {
				_, sess, err := r.svc.StartSession(t.Context(), alice, Attempt{})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, sess.ID)
			}
			if tc.setup != nil {
				tc.setup(r)
			}
			keep := ""
			if tc.keep > 0 {
				keep = ids[tc.keep-1]
			}
			err := r.svc.ChangePassword(t.Context(), alice, tc.pw, keep, ip)
			if !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			checkMetrics(t, r, tc.metrics)
			r.sessions.err, r.accounts.err = nil, nil
			live := r.sessions.of(alice.Userhash)
			if len(live) != tc.live || (tc.keep > 0 && live[0] != keep) {
				t.Fatalf("live sessions %v, want %d (keeping %q)", live, tc.live, keep)
			}
			if tc.want != nil {
				checkEvents(t, r)
				if errors.Is(tc.want, redisDown) && len(r.logs.FilterMessage("ending sessions after password change").All()) != 1 {
					t.Error("sessions that outlive a password change are not logged as an error")
				}
				return
			}
			checkEvents(t, r, "password_changed")
			if ev := r.event(t, "password_changed"); ev["by"] != "password_change" || ev["client_ip"] != ip {
				t.Errorf("password_changed %v", ev)
			}
			if h := r.accounts.get(alice.ID).PasswordHash; h != "fake$"+tc.pw {
				t.Fatalf("hash %q", h)
			}
			r.noSecrets(t, tc.pw)
		})
	}
}

// The CLI's paths and the session lookups go through the service, so that
// their store errors are counted and their changes audited.
func TestSessionPaths(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		down    bool // the session store is down
		run     func(r *rig, alice accounts.User, token string) error
		want    error
		live    int // alice's sessions afterwards (of 2)
		metrics map[string]int
		events  []string
	}{
		{name: "authenticate", live: 2, run: func(r *rig, _ accounts.User, token string) error {
			sess, err := r.svc.Authenticate(t.Context(), token)
			if err == nil && sess.Username != "alice" {
				t.Errorf("session %+v", sess)
			}
			return err
		}},
		{name: "authenticate an unknown token", live: 2, want: sessions.ErrNotFound, run: func(r *rig, _ accounts.User, _ string) error {
			_, err := r.svc.Authenticate(t.Context(), "nobody.secret")
			return err
		}},
		{name: "authenticate, store down", down: true, live: 2, want: redisDown, metrics: map[string]int{"store_error/redis": 1},
			run: func(r *rig, _ accounts.User, token string) error {
				_, err := r.svc.Authenticate(t.Context(), token)
				return err
			}},
		{name: "logout", live: 1, events: []string{"logout"}, run: func(r *rig, _ accounts.User, token string) error {
			return r.svc.Logout(t.Context(), token, ip)
		}},
		{name: "logout of an unknown token", live: 2, run: func(r *rig, _ accounts.User, _ string) error {
			return r.svc.Logout(t.Context(), "nobody.secret", ip)
		}},
		{name: "logout, store down", down: true, live: 2, want: redisDown, metrics: map[string]int{"store_error/redis": 1},
			run: func(r *rig, _ accounts.User, token string) error { return r.svc.Logout(t.Context(), token, ip) }},
		{name: "list (CLI sessions)", live: 2, run: func(r *rig, alice accounts.User, _ string) error {
			list, err := r.svc.ListSessions(t.Context(), alice)
			if err == nil && len(list) != 2 {
				t.Errorf("listed %v", list)
			}
			return err
		}},
		{name: "list, store down", down: true, live: 2, want: redisDown, metrics: map[string]int{"store_error/redis": 1},
			run: func(r *rig, alice accounts.User, _ string) error {
				_, err := r.svc.ListSessions(t.Context(), alice)
				return err
			}},
		{name: "revoke (CLI revoke)", live: 0, events: []string{"sessions_revoked"}, run: func(r *rig, alice accounts.User, _ string) error {
			n, err := r.svc.RevokeSessions(t.Context(), alice, "cli")
			if ev := r.event(t, "sessions_revoked"); n != 2 || ev["sessions"] != int64(2) || ev["client_ip"] != "cli" {
				t.Errorf("revoked %d, event %v", n, ev)
			}
			return err
		}},
		{name: "revoke, store down", down: true, live: 2, want: redisDown, metrics: map[string]int{"store_error/redis": 1},
			run: func(r *rig, alice accounts.User, _ string) error {
				_, err := r.svc.RevokeSessions(t.Context(), alice, "cli")
				return err
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			alice := r.user("alice", alicePW, "")
			token, _, err := r.svc.StartSession(t.Context(), alice, Attempt{})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := r.svc.StartSession(t.Context(), alice, Attempt{}); err != nil {
				t.Fatal(err)
			}
			if tc.down {
				r.sessions.err = redisDown
			}
			if err := tc.run(r, alice, token); !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			checkMetrics(t, r, tc.metrics)
			checkEvents(t, r, tc.events...)
			r.sessions.err = nil
			if n := len(r.sessions.of(alice.Userhash)); n != tc.live {
				t.Fatalf("%d live sessions, want %d", n, tc.live)
			}
			r.noSecrets(t, token)
		})
	}
}

func TestUserLookups(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		down    bool
		byID    int64 // else by name
		byName  string
		want    error
		metrics map[string]int
	}{
		{name: "by id", byID: 1},
		{name: "by id, none", byID: 9, want: ErrUnknownUser},
		{name: "by id, store down", byID: 1, down: true, want: pgDown, metrics: map[string]int{"store_error/postgres": 1}},
		{name: "by name", byName: "ALICE"},
		{name: "by name, none", byName: "nobody", want: ErrUnknownUser},
		{name: "by name, refused", byName: "a;b", want: ErrUnknownUser},
		{name: "by name, NUL", byName: "ali\x00ce", want: ErrBadBytes},
		{name: "by name, store down", byName: "alice", down: true, want: pgDown, metrics: map[string]int{"store_error/postgres": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			r.user("alice", alicePW, "")
			if tc.down {
				r.accounts.err = pgDown
			}
			var u accounts.User
			var err error
			if tc.byID != 0 {
				u, err = r.svc.UserByID(t.Context(), tc.byID)
			} else {
				u, err = r.svc.UserByName(t.Context(), tc.byName)
			}
			if !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if tc.want == nil && u.Username != "alice" {
				t.Fatalf("found %+v", u)
			}
			checkMetrics(t, r, tc.metrics)
		})
	}
}

// An account whose name is refused (made before names were checked) gets
// no session: its name must not reach the upstream.
func TestStartSessionRefusedName(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.accounts.mu.Lock()
	old := r.accounts.add(accounts.User{Username: "old;name", PasswordHash: "fake$" + alicePW})
	r.accounts.mu.Unlock()
	if _, _, err := r.svc.StartSession(t.Context(), old, Attempt{}); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("error %v", err)
	}
	if _, _, _, err := r.svc.Login(t.Context(), Attempt{Username: "old;name", IP: ip}, alicePW); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("login: %v", err)
	}
	if n := len(r.sessions.of(old.Userhash)); n != 0 {
		t.Fatalf("%d sessions", n)
	}
}

func TestNewDevice(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		devices Devices
		want    string
	}{
		{"signed for the canonical name", fakeDevices{}, "device:uk-alice"},
		{"without devices", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, func(c *Config) { c.Devices = tc.devices })
			if got, _ := r.svc.NewDevice(r.user("alice", alicePW, "")); got != tc.want {
				t.Fatalf("NewDevice = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHumanDuration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{time.Second, "1 minute"},
		{time.Minute, "1 minute"},
		{90 * time.Second, "2 minutes"},
		{10 * time.Minute, "10 minutes"},
		{time.Hour, "1 hour"},
		{24 * time.Hour, "24 hours"},
		{90 * time.Minute, "90 minutes"},
	} {
		t.Run(tc.want+" for "+tc.d.String(), func(t *testing.T) {
			if got := HumanDuration(tc.d); got != tc.want {
				t.Fatalf("HumanDuration(%s) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
}

// A session keeps where and how it was started: the account page lists it,
// the gate passes the methods upstream.
func TestLoginSessionRecord(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.user("alice", alicePW, "")
	ua := "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
	_, token, sess, err := r.svc.Login(t.Context(), Attempt{Username: "alice", IP: ip, UserAgent: ua}, alicePW)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := r.sessions.Lookup(t.Context(), token)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []sessions.Session{sess, stored} {
		if s.IP != ip || s.Device != "Firefox on Linux" || !slices.Equal(s.AMR, []string{"pwd"}) {
			t.Errorf("session %+v: want IP %s, device Firefox on Linux, amr [pwd]", s, ip)
		}
	}
}

// users/info answers from the session and reads an account's creation
// time from PostgreSQL once: the endpoint a forward_auth setup calls on
// every request costs no query, and keeps answering while PostgreSQL is
// down for the accounts it has read.
func TestAccountInfo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		warm    bool // users/info asked once before, with PostgreSQL up
		down    bool
		want    error
		queries int // accounts store calls by the call under test
		metrics map[string]int
	}{
		{name: "first call reads the account", queries: 1},
		{name: "later calls read nothing", warm: true},
		{name: "PostgreSQL down, account read before", warm: true, down: true},
		{name: "PostgreSQL down, account not read yet", down: true, want: pgDown, queries: 1, metrics: map[string]int{"store_error/postgres": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			alice := r.user("alice", alicePW, "alice@example.com")
			_, sess, err := r.svc.StartSession(t.Context(), alice, Attempt{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.warm {
				if _, err := r.svc.AccountInfo(t.Context(), sess); err != nil {
					t.Fatal(err)
				}
			}
			if tc.down {
				r.accounts.err = pgDown
			}
			before := r.accounts.calls
			u, err := r.svc.AccountInfo(t.Context(), sess)
			if !is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if got := r.accounts.calls - before; got != tc.queries {
				t.Errorf("%d accounts store calls, want %d", got, tc.queries)
			}
			want := accounts.User{ID: alice.ID, Userhash: alice.Userhash, Username: "alice", Email: "alice@example.com", CreatedAt: alice.CreatedAt}
			if tc.want == nil && u != want {
				t.Errorf("info %+v, want %+v", u, want)
			}
			checkMetrics(t, r, tc.metrics)
		})
	}
}

func TestCreatedTimesBounded(t *testing.T) {
	t.Parallel()
	c := newCreatedTimes(2)
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for id := int64(1); id <= 3; id++ {
		c.put(id, at.Add(time.Duration(id)*time.Hour))
	}
	c.put(3, at.Add(3*time.Hour)) // again: no entry lost for it
	if len(c.m) != 2 {
		t.Fatalf("%d entries kept, want 2", len(c.m))
	}
	if got, ok := c.get(3); !ok || !got.Equal(at.Add(3*time.Hour)) {
		t.Fatalf("the newest entry: %v %v", got, ok)
	}
}
