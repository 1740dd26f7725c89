package caddymodule

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"html"
	"image/png"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/authgate/authgate/caddymodule/testenv"
)

// The second factor over real PostgreSQL and Redis: enrolment on the page,
// logins with a code in the pages and both dialects, the codes' rules
// (skew, replay, recovery codes once), mfa required, the AMR upstream, the
// CLI, events and metrics. The codes are computed here from the key the
// page shows, with pquerna/otp, as an authenticator app would.

// totpClock pins the account service's clock in the middle of a TOTP time
// step (testClock), so that the codes computed here are the ones the
// server expects however long a test takes.
type totpClock struct {
	mu  sync.Mutex
	now time.Time
}

func pinClock(t *testing.T) *totpClock {
	t.Helper()
	c := &totpClock{now: time.Unix(time.Now().Unix()/30*30+15, 0)}
	testClock = c.time
	t.Cleanup(func() { testClock = nil })
	return c
}

func (c *totpClock) time() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *totpClock) advance(steps int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Duration(steps) * 30 * time.Second)
}

// code is what an app shows for the key (as the page shows it) steps time
// steps away from the service's now.
func (c *totpClock) code(t testing.TB, key string, steps int) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(strings.ReplaceAll(key, " ", ""), c.time().Add(time.Duration(steps)*30*time.Second),
		totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// wrongCode is a code of the key's form that no step within the skew has.
func (c *totpClock) wrongCode(t testing.TB, key string) string {
	t.Helper()
	near := []string{c.code(t, key, -1), c.code(t, key, 0), c.code(t, key, 1)}
	for n := 123456; ; n += 111111 {
		if code := fmt.Sprintf("%06d", n%1000000); !slices.Contains(near, code) {
			return code
		}
	}
}

// form posts a form, as a browser's page does.
func (e *env) form(c *http.Client, path string, kv ...string) reply {
	e.t.Helper()
	return e.do(c, "POST", path, formBody(kv...), "Content-Type", formType, "Accept", "text/html")
}

var (
	keyOnPage    = regexp.MustCompile(`<code id="totp-secret" class="secret">([A-Z2-7 ]+)</code>`)
	codesOnPage  = regexp.MustCompile(`<li><code>([0-9a-z]{5}-[0-9a-z]{5})</code></li>`)
	ticketOnPage = regexp.MustCompile(`name="ticket" value="([A-Za-z0-9_-]{43})"`)
	qrOnPage     = regexp.MustCompile(`<img class="qr" src="data:image/png;base64,([^"]+)"`)
)

// recoveryCodes returns the recovery codes a page shows.
func recoveryCodes(t testing.TB, r reply) []string {
	t.Helper()
	var codes []string
	for _, m := range codesOnPage.FindAllStringSubmatch(string(r.body), -1) {
		codes = append(codes, m[1])
	}
	if len(codes) != 10 {
		t.Fatalf("the page shows %d recovery codes, want 10:\n%s", len(codes), r.body)
	}
	return codes
}

// enrolTOTP sets up an authenticator app for the user c is logged in as,
// on the page, confirms it with the code of steps, and returns the key and
// the recovery codes the page showed.
func (e *env) enrolTOTP(c *http.Client, clock *totpClock, steps int) (string, []string) {
	e.t.Helper()
	r := e.do(c, "GET", "/auth/account/totp", nil)
	m := keyOnPage.FindStringSubmatch(string(r.body))
	if r.status != 200 || m == nil {
		e.t.Fatalf("the enrolment page: %d\n%s", r.status, r.body)
	}
	r = e.form(c, "/auth/account/totp", "action", "confirm", "totp", clock.code(e.t, m[1], steps))
	if r.status != 200 || !strings.Contains(string(r.body), "Your authenticator app is on") {
		e.t.Fatalf("confirming: %d\n%s", r.status, r.body)
	}
	return m[1], recoveryCodes(e.t, r)
}

// userID returns the id of the account named username.
func (e *env) userID(username string) int64 {
	e.t.Helper()
	return e.scalar("SELECT id FROM authgate.users WHERE username = $1", username).(int64)
}

// upstreamAMR returns what the upstream learns of how c's session was
// authenticated, or fails when the request does not reach it.
func (e *env) upstreamAMR(c *http.Client, header ...string) string {
	e.t.Helper()
	r := e.do(c, "GET", "/app/amr", nil, header...)
	if r.status != 200 {
		e.t.Fatalf("the upstream was not reached: %d %s", r.status, r.body)
	}
	return r.json["auth_methods"].(string)
}

func TestEnrolTOTPPage(t *testing.T) {
	clock := pinClock(t)
	e := newEnv(t, options{})
	e.register("tess", "tess-password", "")
	id := e.userID("tess")

	// Signed out, the page sends the browser to log in, and back.
	r := e.do(nil, "GET", "/auth/account/totp", nil)
	if r.status != 303 || r.header.Get("Location") != "/auth/login?redirect=%2Fauth%2Faccount%2Ftotp" {
		t.Fatalf("signed out: %d, Location %q", r.status, r.header.Get("Location"))
	}

	c := e.client()
	oldToken := e.login(c, "tess", "tess-password").str("ssid")
	r = e.do(c, "GET", "/auth/account/totp?redirect=/app/after", nil)
	m := keyOnPage.FindStringSubmatch(string(r.body))
	qr := qrOnPage.FindStringSubmatch(string(r.body))
	if r.status != 200 || m == nil || qr == nil {
		t.Fatalf("the enrolment page: %d\n%s", r.status, r.body)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "img-src data:") || !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	pngBytes, _ := base64.StdEncoding.DecodeString(html.UnescapeString(qr[1]))
	if img, err := png.Decode(bytes.NewReader(pngBytes)); err != nil || img.Bounds().Dx() != 256 {
		t.Fatalf("the QR code is no 256-pixel PNG: %v", err)
	}
	key := m[1]
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ReplaceAll(key, " ", ""))
	if err != nil || len(raw) != 20 {
		t.Fatalf("key %q: %v", key, err)
	}
	stored := e.scalar("SELECT secret FROM authgate.totp WHERE user_id = $1", id).([]byte)
	if bytes.Contains(stored, raw) || strings.Contains(string(stored), strings.ReplaceAll(key, " ", "")) {
		t.Fatal("the key is stored in the clear")
	}
	unconfirmed := func(when string) {
		t.Helper()
		if v := e.scalar("SELECT confirmed_at IS NULL FROM authgate.totp WHERE user_id = $1", id); v != true {
			t.Fatalf("%s: the authenticator app counts already", when)
		}
	}
	unconfirmed("shown")
	if again := keyOnPage.FindStringSubmatch(string(e.do(c, "GET", "/auth/account/totp", nil).body)); again == nil || again[1] != key {
		t.Fatal("the page opened again shows another key")
	}

	// A form posted from another site changes nothing.
	for _, h := range [][]string{{"Origin", "https://evil.example"}, {"Sec-Fetch-Site", "cross-site"}, {"Referer", "https://evil.example/x"}} {
		r = e.do(c, "POST", "/auth/account/totp", formBody("action", "confirm", "totp", clock.code(t, key, 0)),
			append([]string{"Content-Type", formType}, h...)...)
		if r.status != 403 || !strings.Contains(string(r.body), "sent from another site") {
			t.Fatalf("%v: %d\n%s", h, r.status, r.body)
		}
	}
	unconfirmed("after the foreign posts")

	r = e.form(c, "/auth/account/totp", "action", "confirm", "totp", clock.wrongCode(t, key), "redirect", "/app/after")
	if m := keyOnPage.FindStringSubmatch(string(r.body)); r.status != 401 || !strings.Contains(string(r.body), "That code is wrong") || m == nil || m[1] != key {
		t.Fatalf("a wrong code: %d\n%s", r.status, r.body)
	}
	unconfirmed("after a wrong code")
	// Counted as a guess at a code, on the allowance of the device that
	// logged in (its device cookie), and against the daily cap.
	e.expectCounter("mfa:device:"+deviceID(t, e.jarCookie(c, deviceCookie)), 1)
	e.expectCounter("mfa:day:user:"+e.userKey("tess"), 1)

	r = e.form(c, "/auth/account/totp", "action", "confirm", "totp", clock.code(t, key, 0), "redirect", "/app/after")
	if r.status != 200 || !strings.Contains(string(r.body), `<a id="continue" href="/app/after">`) {
		t.Fatalf("the right code: %d\n%s", r.status, r.body)
	}
	codes := recoveryCodes(t, r)
	if v := e.scalar("SELECT last_step FROM authgate.totp WHERE user_id = $1 AND confirmed_at IS NOT NULL", id); v != clock.time().Unix()/30 {
		t.Fatalf("last_step %v, want the confirming code's step %d", v, clock.time().Unix()/30)
	}
	if n := e.scalar("SELECT count(*) FROM authgate.recovery_codes WHERE user_id = $1", id); n != int64(10) {
		t.Fatalf("%v recovery codes stored", n)
	}
	var hashes []byte
	for _, h := range e.column("SELECT hash FROM authgate.recovery_codes WHERE user_id = $1", id) {
		hashes = append(hashes, h.([]byte)...)
	}
	for _, code := range codes {
		if bytes.Contains(hashes, []byte(strings.ReplaceAll(code, "-", ""))) {
			t.Fatalf("recovery code %s stored in the clear", code)
		}
	}

	// The session was replaced by one that says it proved the factor.
	if e.jarCookie(c, "authgate_session") == oldToken {
		t.Fatal("the session cookie did not change")
	}
	e.expect(e.do(nil, "GET", "/app/x", nil, "Authorization", "Bearer "+oldToken), 401, false, "PLEASE_LOGIN")
	if amr := e.upstreamAMR(c); amr != "pwd,otp" {
		t.Fatalf("Remote-Auth-Methods %q after enrolment", amr)
	}

	r = e.do(c, "GET", "/auth/account/totp", nil)
	if r.status != 200 || !strings.Contains(string(r.body), "Your authenticator app is on") || !strings.Contains(string(r.body), "10 left") ||
		keyOnPage.Match(r.body) {
		t.Fatalf("the page after: %d\n%s", r.status, r.body)
	}
}

// The login page asks for the second factor after the password: no session
// until it is given, a ticket that works once.
func TestSecondFactorLoginPage(t *testing.T) {
	clock := pinClock(t)
	e := newEnv(t, options{})
	e.register("uma", "uma-password", "")
	key, codes := e.enrolTOTP(loggedIn(e, "uma", "uma-password"), clock, 0)
	sessions := e.sessionCount()

	b := e.client()
	r := e.form(b, "/auth/login", "username", "uma", "password", "uma-password", "redirect", "/app/x?y=1")
	m := ticketOnPage.FindStringSubmatch(string(r.body))
	if r.status != 200 || m == nil || !strings.Contains(string(r.body), "Two-step verification") ||
		!strings.Contains(string(r.body), `name="redirect" value="/app/x?y=1"`) {
		t.Fatalf("after the password: %d\n%s", r.status, r.body)
	}
	ticket := m[1]
	if r.header.Get("Set-Cookie") != "" || e.sessionCount() != sessions {
		t.Fatalf("a session started before the second factor: %q", r.header.Values("Set-Cookie"))
	}
	if dump := e.redisDump(); strings.Count(dump, e.prefix+":mfa:") != 1 || strings.Contains(dump, ticket) {
		t.Fatalf("the ticket in Redis:\n%s", dump)
	}
	step := func(kv ...string) reply {
		return e.form(b, "/auth/login", append([]string{"ticket", ticket, "factors", "totp", "redirect", "/app/x?y=1"}, kv...)...)
	}
	for _, tc := range []struct {
		name, code string
	}{
		{"a wrong code", clock.wrongCode(t, key)},
		{"the confirming code, spent", clock.code(t, key, 0)},
		{"no code", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := step("totp", tc.code)
			if r.status/100 != 4 || !strings.Contains(string(r.body), ticket) || r.header.Get("Set-Cookie") != "" {
				t.Fatalf("%d\n%s", r.status, r.body)
			}
		})
	}
	r = step("totp", clock.code(t, key, 1))
	if r.status != 303 || r.header.Get("Location") != "/app/x?y=1" {
		t.Fatalf("the right code: %d %q\n%s", r.status, r.header.Get("Location"), r.body)
	}
	if e.sessionCount() != sessions+1 || strings.Contains(e.redisDump(), e.prefix+":mfa:") {
		t.Fatalf("after the right code:\n%s", e.redisDump())
	}
	if amr := e.upstreamAMR(b); amr != "pwd,otp" {
		t.Fatalf("Remote-Auth-Methods %q", amr)
	}
	r = e.form(e.client(), "/auth/login", "ticket", ticket, "totp", clock.code(t, key, 1))
	if r.status != 401 || !strings.Contains(string(r.body), "Enter your password again") {
		t.Fatalf("the ticket again: %d\n%s", r.status, r.body)
	}

	// A recovery code, once.
	b = e.client()
	ticket = ticketOnPage.FindStringSubmatch(string(e.form(b, "/auth/login", "username", "uma", "password", "uma-password").body))[1]
	r = e.form(b, "/auth/login", "ticket", ticket, "recovery_code", strings.ToUpper(codes[3]))
	if r.status != 303 || r.header.Get("Location") != "/" {
		t.Fatalf("a recovery code: %d\n%s", r.status, r.body)
	}
	if amr := e.upstreamAMR(b); amr != "pwd,otp,recovery" {
		t.Fatalf("Remote-Auth-Methods %q", amr)
	}
	if n := e.scalar("SELECT count(*) FROM authgate.recovery_codes WHERE user_id = $1", e.userID("uma")); n != int64(9) {
		t.Fatalf("%v recovery codes left", n)
	}
	b = e.client()
	ticket = ticketOnPage.FindStringSubmatch(string(e.form(b, "/auth/login", "username", "uma", "password", "uma-password").body))[1]
	if r = e.form(b, "/auth/login", "ticket", ticket, "recovery_code", codes[3]); r.status != 401 {
		t.Fatalf("a recovery code again: %d\n%s", r.status, r.body)
	}
}

// loggedIn returns a client logged in as username by the users API.
func loggedIn(e *env, username, password string) *http.Client {
	c := e.client()
	e.login(c, username, password)
	return c
}

// users/login: MFA_REQUIRED without a code, a code of now or one step off
// logs in, each step once, two steps off never.
func TestSecondFactorUsersAPI(t *testing.T) {
	clock := pinClock(t)
	e := newEnv(t, options{})
	e.register("vic", "vic-password", "")
	key, codes := e.enrolTOTP(loggedIn(e, "vic", "vic-password"), clock, -1)
	login := func(extra ...string) reply {
		body := userPass("vic", "vic-password")
		for i := 0; i+1 < len(extra); i += 2 {
			body[extra[i]] = extra[i+1]
		}
		return e.do(nil, "POST", "/auth/users/login", body)
	}
	sessions := e.sessionCount()
	r := login()
	e.expect(r, 401, false, "MFA_REQUIRED")
	if r.header.Get("Set-Cookie") != "" || e.sessionCount() != sessions {
		t.Fatal("MFA_REQUIRED started a session")
	}
	for _, tc := range []struct {
		name    string
		advance int // time steps the clock moves first
		steps   int // of the code, from the clock's now
		ok      bool
	}{
		{"the confirming code, one step back", 0, -1, false},
		{"the code of now", 0, 0, true},
		{"the code of now again", 0, 0, false},
		{"one step ahead", 0, 1, true},
		{"two steps ahead", 0, 2, false},
		{"two steps back", 4, -2, false},
		{"one step back", 0, -1, true},
		{"one step back, again", 0, -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock.advance(tc.advance)
			before := e.sessionCount()
			r := login("totp", clock.code(t, key, tc.steps))
			if !tc.ok {
				e.expect(r, 401, false, "ERROR_INVALID_OTP")
				if e.sessionCount() != before {
					t.Fatal("a refused code started a session")
				}
				return
			}
			e.expect(r, 200, "true", "")
			if e.sessionCount() != before+1 {
				t.Fatal("no session stored")
			}
			if amr := e.upstreamAMR(nil, "Authorization", "Bearer "+r.str("ssid")); amr != "pwd,otp" {
				t.Fatalf("Remote-Auth-Methods %q", amr)
			}
		})
	}
	r = login("recovery_code", codes[0])
	e.expect(r, 200, "true", "")
	if amr := e.upstreamAMR(nil, "Authorization", "Bearer "+r.str("ssid")); amr != "pwd,otp,recovery" {
		t.Fatalf("Remote-Auth-Methods %q", amr)
	}
	e.expect(login("recovery_code", codes[0]), 401, false, "ERROR_INVALID_OTP")
	e.expect(login("recovery_code", codes[1]), 200, "true", "")
	if n := e.scalar("SELECT count(*) FROM authgate.recovery_codes WHERE user_id = $1", e.userID("vic")); n != int64(8) {
		t.Fatalf("%v recovery codes left", n)
	}
	e.expect(login("totp", "12345"), 401, false, "ERROR_INVALID_OTP")
	e.expect(login("totp", strings.Repeat("1", 65)), 400, false, "INVALID_INPUT")
	e.expect(e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "vic", "password": "wrong-password", "totp": clock.code(t, key, 0)}),
		401, false, "INVALID_PASSWORD")
}

// Wrong codes are throttled like wrong passwords (per user), and under the
// daily cap on codes; the right code waits too.
func TestSecondFactorThrottled(t *testing.T) {
	for _, tc := range []struct {
		name, global string
		counters     map[string]int // by name, with %s for the user key
	}{
		{"per user", "throttle_user 3 15m", map[string]int{"mfa:user:%s": 3, "mfa:day:user:%s": 3}},
		{"the daily cap", "throttle_codes 3 24h", map[string]int{"mfa:user:%s": 3, "mfa:day:user:%s": 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := pinClock(t)
			e := newEnv(t, options{global: tc.global})
			e.register("will", "will-password", "")
			key, _ := e.enrolTOTP(loggedIn(e, "will", "will-password"), clock, 0)
			attempt := func(code string) reply {
				return e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "will", "password": "will-password", "totp": code})
			}
			for range 3 {
				e.expect(attempt(clock.wrongCode(t, key)), 401, false, "ERROR_INVALID_OTP")
			}
			r := attempt(clock.wrongCode(t, key))
			e.expect(r, 429, false, "TOO_MANY_ATTEMPTS")
			retryAfter(t, r)
			e.expect(attempt(clock.code(t, key, 1)), 429, false, "TOO_MANY_ATTEMPTS")
			for name, n := range tc.counters {
				e.expectCounter(fmt.Sprintf(name, e.userKey("will")), n)
			}
			// The password itself was right every time: its counter is clear.
			e.expectCounter("login:user:"+e.userKey("will"), 0)
		})
	}
}

// POST <p>/account with Basic needs the code in the body.
func TestSecondFactorREST(t *testing.T) {
	clock := pinClock(t)
	e := newRESTEnv(t, "")
	e.register("wes", "wes-password", "")
	key, codes := e.enrolTOTP(loggedIn(e, "wes", "wes-password"), clock, 0)
	auth := []string{"Authorization", basic("wes", "wes-password")}
	sessions := e.sessionCount()
	for _, body := range []any{nil, `{}`, `{"totp":"` + clock.wrongCode(t, key) + `"}`, `{"totp":"` + clock.code(t, key, 0) + `"}`} {
		r := e.do(nil, "POST", "/api/user/account", body, auth...)
		e.expectREST(r, 200, false, "Second factor required")
		if r.header.Get("Set-Cookie") != "" {
			t.Fatalf("%v: a cookie was set", body)
		}
	}
	if e.sessionCount() != sessions {
		t.Fatal("a session started without the second factor")
	}
	r := e.do(nil, "POST", "/api/user/account", `{"totp":"`+clock.code(t, key, 1)+`"}`, auth...)
	e.expectREST(r, 200, true, "Successful login")
	setCookie(t, r, "authgate_session")
	r = e.do(nil, "POST", "/api/user/account", map[string]any{"recovery_code": codes[9]}, auth...)
	e.expectREST(r, 200, true, "Successful login")
	if e.sessionCount() != sessions+2 {
		t.Fatalf("%d sessions, want %d", e.sessionCount(), sessions+2)
	}
	// An autologin after a password change does not skip the second factor.
	r = e.do(nil, "PUT", "/api/user/password", map[string]any{"password": "wes-new-password", "autologin": true}, auth...)
	e.expectREST(r, 200, true, "Password changed")
	if r.header.Get("Set-Cookie") != "" {
		t.Fatal("the autologin skipped the second factor")
	}
}

// Under mfa required: the APIs refuse a user without a second factor; the
// login page lets them in to enrol one, and the gate sends them there
// before anything else.
func TestMFARequired(t *testing.T) {
	clock := pinClock(t)
	e := newEnv(t, options{global: "mfa required", site: "account_api /api/user"})
	e.register("xena", "xena-password", "")

	r := e.do(nil, "POST", "/auth/users/login", userPass("xena", "xena-password"))
	e.expect(r, 403, false, "MFA_ENROLMENT_REQUIRED")
	r = e.do(nil, "POST", "/api/user/account", nil, "Authorization", basic("xena", "xena-password"))
	e.expectREST(r, 200, false, "Second factor enrolment required")
	e.expect(e.do(nil, "POST", "/auth/users/login", userPass("xena", "wrong-password")), 401, false, "INVALID_PASSWORD")
	if n := e.sessionCount(); n != 0 {
		t.Fatalf("%d sessions", n)
	}

	c := e.client()
	r = e.form(c, "/auth/login", "username", "xena", "password", "xena-password", "redirect", "/app/home?x=1")
	if r.status != 303 || r.header.Get("Location") != "/auth/account/totp?redirect=%2Fapp%2Fhome%3Fx%3D1" {
		t.Fatalf("the login page: %d %q", r.status, r.header.Get("Location"))
	}
	if n := e.sessionCount(); n != 1 {
		t.Fatalf("%d sessions", n)
	}
	for _, tc := range []struct {
		name, method, path string
		header             []string
		status             int
		location           string
	}{
		{"a page of the app", "GET", "/app/home?x=1", []string{"Accept", "text/html"}, 302, "/auth/account/totp?redirect=%2Fapp%2Fhome%3Fx%3D1"},
		{"the account's recovery codes", "GET", "/auth/account/recovery", nil, 303, "/auth/account/totp?redirect=%2Fauth%2Faccount%2Frecovery"},
		{"an API call", "GET", "/api/data", []string{"Accept", "application/json"}, 403, ""},
		{"a form post", "POST", "/app/form", []string{"Accept", "text/html"}, 403, ""},
		{"a public path", "GET", "/healthz", nil, 200, ""},
		{"the enrolment page", "GET", "/auth/account/totp", nil, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(c, tc.method, tc.path, nil, tc.header...)
			if r.status != tc.status || r.header.Get("Location") != tc.location {
				t.Fatalf("%d %q\n%s", r.status, r.header.Get("Location"), r.body)
			}
			if tc.status == 403 {
				e.expect(r, 403, false, "MFA_ENROLMENT_REQUIRED")
			}
		})
	}
	if n := e.upstreamReached("xena"); n != 0 {
		t.Fatalf("the upstream was reached %d times as xena", n)
	}
	if r := e.do(c, "GET", "/auth/account/totp", nil); !strings.Contains(string(r.body), "This site asks every account for a second factor") {
		t.Fatalf("the enrolment page does not say why:\n%s", r.body)
	}
	key, _ := e.enrolTOTP(c, clock, 0)
	r = e.do(c, "GET", "/app/home?x=1", nil, "Accept", "text/html")
	if r.status != 200 || r.json["user"] != "xena" || r.json["auth_methods"] != "pwd,otp" {
		t.Fatalf("after enrolment: %d %s", r.status, r.body)
	}
	e.expect(e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "xena", "password": "xena-password", "totp": clock.code(t, key, 1)}),
		200, "true", "")
	if got := metricValues(t)["authgate_gate_decisions_total/enrolment"]; got != 3 {
		t.Fatalf("authgate_gate_decisions_total{decision=enrolment} = %v, want 3", got)
	}

	// Removing the last factor leaves the session only to enrol another.
	r = e.form(c, "/auth/account/totp", "action", "remove", "password", "xena-password")
	if r.status != 200 || !strings.Contains(string(r.body), "Authenticator app removed") {
		t.Fatalf("removal: %d\n%s", r.status, r.body)
	}
	if r := e.do(c, "GET", "/app/home", nil, "Accept", "text/html"); r.status != 302 {
		t.Fatalf("after the removal the app answers %d", r.status)
	}
}

// Remote-Auth-Methods and {http.auth.user.amr} say how the session was
// authenticated; a client's own are removed everywhere.
func TestAuthMethodsUpstream(t *testing.T) {
	clock := pinClock(t)
	e := newEnv(t, options{handlers: `request_header X-Amr "{http.auth.user.amr}"`})
	e.register("yves", "yves-password", "")
	spoof := []string{"Remote-Auth-Methods", "pwd,otp,hwk", "Remote_Auth_Methods", "hwk"}

	// (A public path has no session, and so no placeholder either.)
	r := e.do(nil, "GET", "/healthz", nil, spoof...)
	if r.status != 200 || r.json["auth_methods"] != "" {
		t.Fatalf("a public path: %d %s", r.status, r.body)
	}
	c := loggedIn(e, "yves", "yves-password")
	r = e.do(c, "GET", "/app", nil, spoof...)
	if r.status != 200 || r.json["auth_methods"] != "pwd" || r.json["amr"] != "pwd" {
		t.Fatalf("a password login: %d %s", r.status, r.body)
	}
	key, _ := e.enrolTOTP(c, clock, 0)
	r = e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "yves", "password": "yves-password", "totp": clock.code(t, key, 1)})
	e.expect(r, 200, "true", "")
	r = e.do(nil, "GET", "/app", nil, append(spoof, "Authorization", "Bearer "+r.str("ssid"))...)
	if r.status != 200 || r.json["auth_methods"] != "pwd,otp" || r.json["amr"] != "pwd,otp" {
		t.Fatalf("a login with a code: %d %s", r.status, r.body)
	}
}

// The recovery-codes page makes a new set (the old one dies); the
// authenticator app is removed with a code; both need the user.
func TestRecoveryPageAndRemoval(t *testing.T) {
	clock := pinClock(t)
	e := newEnv(t, options{})
	e.register("zoe", "zoe-password", "")
	c := loggedIn(e, "zoe", "zoe-password")
	r := e.do(c, "GET", "/auth/account/recovery", nil)
	if r.status != 200 || !strings.Contains(string(r.body), "Set up an authenticator app first") {
		t.Fatalf("without a second factor: %d\n%s", r.status, r.body)
	}
	key, old := e.enrolTOTP(c, clock, 0)
	id := e.userID("zoe")
	r = e.do(c, "GET", "/auth/account/recovery", nil)
	if r.status != 200 || !strings.Contains(string(r.body), "<strong>10</strong> recovery codes left") {
		t.Fatalf("the page: %d\n%s", r.status, r.body)
	}
	for _, tc := range []struct {
		name   string
		kv     []string
		status int
		says   string
	}{
		{"nothing", nil, 400, "Enter your password or a code"},
		{"a wrong password", []string{"password", "not-zoe-password"}, 401, "That password is wrong"},
		{"a wrong code", []string{"totp", clock.wrongCode(t, key)}, 401, "That code is wrong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.form(c, "/auth/account/recovery", tc.kv...)
			if r.status != tc.status || !strings.Contains(string(r.body), tc.says) || codesOnPage.Match(r.body) {
				t.Fatalf("%d\n%s", r.status, r.body)
			}
		})
	}
	if r := e.do(c, "POST", "/auth/account/recovery", formBody("password", "zoe-password"), "Content-Type", formType, "Origin", "https://evil.example"); r.status != 403 {
		t.Fatalf("from another site: %d", r.status)
	}
	fresh := recoveryCodes(t, e.form(c, "/auth/account/recovery", "password", "zoe-password"))
	if n := e.scalar("SELECT count(*) FROM authgate.recovery_codes WHERE user_id = $1", id); n != int64(10) {
		t.Fatalf("%v codes stored", n)
	}
	e.expect(e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "zoe", "password": "zoe-password", "recovery_code": old[0]}),
		401, false, "ERROR_INVALID_OTP")
	e.expect(e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "zoe", "password": "zoe-password", "recovery_code": fresh[0]}),
		200, "true", "")

	r = e.form(c, "/auth/account/totp", "action", "remove", "totp", clock.wrongCode(t, key))
	if r.status != 401 {
		t.Fatalf("removal with a wrong code: %d\n%s", r.status, r.body)
	}
	r = e.form(c, "/auth/account/totp", "action", "remove", "totp", clock.code(t, key, 1))
	if r.status != 200 || !strings.Contains(string(r.body), "Authenticator app removed") {
		t.Fatalf("removal: %d\n%s", r.status, r.body)
	}
	for _, table := range []string{"totp", "recovery_codes"} {
		if n := e.scalar("SELECT count(*) FROM authgate."+table+" WHERE user_id = $1", id); n != int64(0) {
			t.Fatalf("%v rows left in %s", n, table)
		}
	}
	e.login(e.client(), "zoe", "zoe-password")
}

func TestMFACLI(t *testing.T) {
	clock := pinClock(t)
	e := newEnv(t, options{})
	e.register("abel", "abel-password", "")
	out, err := e.cli("", "mfa", "abel")
	if err != nil || !strings.Contains(out, "abel has no second factor (mfa optional)") {
		t.Fatalf("mfa: %v\n%s", err, out)
	}
	c := loggedIn(e, "abel", "abel-password")
	key, codes := e.enrolTOTP(c, clock, 0)
	e.expect(e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "abel", "password": "abel-password", "totp": clock.code(t, key, 1)}),
		200, "true", "")
	out, err = e.cli("", "mfa", "abel")
	if err != nil || !regexp.MustCompile(`(?m)^  totp +enrolled \S+Z, last used \S+Z$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^  recovery +10 code\(s\) left, made \S+Z$`).MatchString(out) {
		t.Fatalf("mfa: %v\n%s", err, out)
	}
	for _, secret := range append([]string{strings.ReplaceAll(key, " ", ""), key[:9]}, codes...) {
		if strings.Contains(out, secret) {
			t.Fatalf("the listing shows a secret (%s):\n%s", secret, out)
		}
	}
	sessions := e.sessionCount()
	out, err = e.cli("", "mfa-reset", "abel")
	want := fmt.Sprintf("removed 2 second factor(s) of abel; ended %d session(s)", sessions)
	if err != nil || !strings.Contains(out, want) {
		t.Fatalf("mfa-reset: %v\n%s\nwant %s", err, out, want)
	}
	id := e.userID("abel")
	for _, table := range []string{"totp", "recovery_codes"} {
		if n := e.scalar("SELECT count(*) FROM authgate."+table+" WHERE user_id = $1", id); n != int64(0) {
			t.Fatalf("%v rows left in %s", n, table)
		}
	}
	if n := e.sessionCount(); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
	e.expect(e.do(c, "GET", "/auth/users/info", nil), 401, false, "PLEASE_LOGIN")
	e.login(e.client(), "abel", "abel-password")
	if _, err := e.cli("", "mfa-reset", "nobody"); err == nil || !strings.Contains(err.Error(), "no such user") {
		t.Fatalf("mfa-reset nobody: %v", err)
	}
}

// The second factor's audit events go out through Caddy's events app,
// never with a code or a key; its metrics count by factor and result.
func TestMFAEventsAndMetrics(t *testing.T) {
	clock := pinClock(t)
	e := newEnv(t, options{apps: map[string]any{"events": map[string]any{"subscriptions": []any{map[string]any{
		"events":   []string{"authgate.mfa_enrolled", "authgate.mfa_removed", "authgate.mfa_failed"},
		"handlers": []any{map[string]any{"handler": "authgate_test_recorder"}},
	}}}}})
	e.register("bea", "bea-password", "")
	c := loggedIn(e, "bea", "bea-password")
	page := e.do(c, "GET", "/auth/account/totp", nil)
	key := keyOnPage.FindStringSubmatch(string(page.body))[1]
	wrong := clock.wrongCode(t, key)
	e.form(c, "/auth/account/totp", "action", "confirm", "totp", wrong)
	codes := recoveryCodes(t, e.form(c, "/auth/account/totp", "action", "confirm", "totp", clock.code(t, key, 0)))
	wrongLogin := clock.wrongCode(t, key)
	e.expect(e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "bea", "password": "bea-password", "totp": wrongLogin}),
		401, false, "ERROR_INVALID_OTP")
	right := clock.code(t, key, 1)
	e.expect(e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "bea", "password": "bea-password", "totp": right}),
		200, "true", "")
	e.form(c, "/auth/account/totp", "action", "remove", "password", "bea-password")

	want := []string{"mfa_failed/totp", "mfa_enrolled/totp", "mfa_enrolled/recovery", "mfa_failed/totp", "mfa_removed/totp", "mfa_removed/recovery"}
	var got []string
	for len(got) < len(want) {
		select {
		case ev := <-recorded:
			got = append(got, strings.TrimPrefix(ev.Name(), "authgate.")+"/"+fmt.Sprint(ev.Data["factor"]))
			data := fmt.Sprint(ev.Data)
			if ev.Data["username"] != "bea" || ev.Data["user_id"] != e.userID("bea") || ev.Data["client_ip"] != "127.0.0.1" {
				t.Errorf("%s: data %s", ev.Name(), data)
			}
			for _, secret := range append([]string{strings.ReplaceAll(key, " ", ""), wrong, wrongLogin, right, "bea-password"}, codes...) {
				if strings.Contains(data, secret) {
					t.Errorf("%s carries a secret: %s", ev.Name(), data)
				}
			}
		case <-time.After(testenv.Patience):
			t.Fatalf("events so far: %v", got)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	log := readLog(t, e)
	for _, secret := range append([]string{strings.ReplaceAll(key, " ", ""), wrongLogin, right}, codes...) {
		if strings.Contains(log, secret) {
			t.Fatalf("the log holds a secret (%s)", secret)
		}
	}

	metrics := metricValues(t)
	for key, n := range map[string]float64{
		"authgate_mfa_total/totp/enrolled":            1,
		"authgate_mfa_total/recovery/enrolled":        1,
		"authgate_mfa_total/totp/invalid":             2,
		"authgate_mfa_total/totp/success":             1,
		"authgate_mfa_total/totp/removed":             1,
		"authgate_mfa_total/recovery/removed":         1,
		"authgate_logins_total/invalid_second_factor": 1,
		"authgate_logins_total/success":               2,
	} {
		if metrics[key] != n {
			t.Errorf("%s = %v, want %v", key, metrics[key], n)
		}
	}
}

// readLog returns the env's Caddy log.
func readLog(t *testing.T, e *env) string {
	t.Helper()
	b, err := os.ReadFile(e.logFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// column runs a query returning one column.
func (e *env) column(query string, args ...any) []any {
	e.t.Helper()
	rows, err := e.db.QueryContext(e.t.Context(), query, args...)
	if err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []any
	for rows.Next() {
		var v any
		if err := rows.Scan(&v); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}
