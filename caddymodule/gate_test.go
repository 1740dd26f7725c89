package caddymodule

import (
	"net/url"
	"strings"
	"testing"

	"github.com/authgate/authgate/caddymodule/testenv"
)

func TestGate(t *testing.T) {
	e := newEnv(t, options{})
	e.register("kate", "kate-password", "kate@example.com")

	// A browser without a session goes to the login page and may come back.
	r := e.do(nil, "GET", "/app/page?x=1&y=two", nil, "Accept", "text/html,application/xhtml+xml")
	if r.status != 302 {
		t.Fatalf("browser without session: %d %s", r.status, r.body)
	}
	loc, _ := url.Parse(r.header.Get("Location"))
	if loc.Path != "/auth/login" || loc.Query().Get("redirect") != "/app/page?x=1&y=two" {
		t.Fatalf("redirect to %q", r.header.Get("Location"))
	}
	// Anything else gets the users API's 401.
	r = e.do(nil, "GET", "/app/page", nil, "Accept", "application/json")
	e.expect(r, 401, false, "PLEASE_LOGIN")
	r = e.do(nil, "POST", "/app/form", "a=b", "Accept", "text/html")
	e.expect(r, 401, false, "PLEASE_LOGIN")

	// Public paths pass without a session, and without spoofed identity.
	r = e.do(nil, "GET", "/healthz", nil, "Remote-User", "admin", "Remote-User-Id", "1", "Remote-Email", "x@y")
	if r.status != 200 || r.json["user"] != "" || r.json["user_id"] != "" || r.json["email"] != "" {
		t.Fatalf("public path: %d %s", r.status, r.body)
	}
	r = e.do(nil, "GET", "/assets/app.css", nil)
	if r.status != 200 {
		t.Fatalf("public glob: %d", r.status)
	}
	// A path that only looks public once cleaned, decoded or lowercased is
	// gated: the upstream gets it as it is.
	for _, path := range []string{"/assets/../secret", "/assets/..%2fsecret", "/HEALTHZ", "/health%7a"} {
		r = e.do(nil, "GET", path, nil, "Accept", "application/json")
		e.expect(r, 401, false, "PLEASE_LOGIN")
	}

	// With a session the upstream learns who it is, and never the token.
	c := e.client()
	login := e.login(c, "kate", "kate-password")
	ssid := login.str("ssid")
	r = e.do(c, "GET", "/app/page?q=1", nil, "Remote-User", "admin", "Cookie", "theme=dark")
	if r.status != 200 || r.json["user"] != "kate" || r.json["email"] != "kate@example.com" || r.json["uri"] != "/app/page?q=1" {
		t.Fatalf("with session: %d %s", r.status, r.body)
	}
	if r.json["user_id"] == "" || r.json["user_id"] == "0" {
		t.Fatalf("user id %q", r.json["user_id"])
	}
	if cookie, _ := r.json["cookie"].(string); strings.Contains(cookie, ssid) || !strings.Contains(cookie, "theme=dark") {
		t.Fatalf("upstream saw cookie %q", cookie)
	}
	r = e.do(nil, "GET", "/api/data", nil, "Authorization", "Bearer "+ssid)
	if r.status != 200 || r.json["user"] != "kate" || r.json["authorization"] != "" {
		t.Fatalf("bearer: %d %s", r.status, r.body)
	}

	// Tampered tokens are refused.
	for _, bad := range []string{
		ssid[:len(ssid)-1] + flip(ssid[len(ssid)-1]),
		strings.Repeat("0", 32) + ssid[32:],
		ssid + "x",
		"../../etc",
		"{" + ssid[1:],
	} {
		r = e.do(nil, "GET", "/api/data", nil, "Authorization", "Bearer "+bad)
		e.expect(r, 401, false, "PLEASE_LOGIN")
	}
}

// The account endpoints answer only canonical paths: another spelling of
// one is a path like any other, gated, and forwarded as it is.
func TestGateAccountPathsAreCanonical(t *testing.T) {
	e := newEnv(t, options{site: "account_api /api/user"})
	e.register("nora", "nora-password", "")
	creds := map[string]any{"username": "nora", "password": "nora-password"}

	sessions := e.sessionCount
	// An escaped letter is the same path to everyone.
	r := e.do(nil, "POST", "/auth/users/%6Cogin", creds)
	e.expect(r, 200, "true", "")
	if r.str("ssid") == "" || sessions() != 1 {
		t.Fatalf("login: %s, %d sessions", r.body, sessions())
	}
	for _, path := range []string{"/auth/users/login;x=1", "/auth/users/.%2flogin", "/auth//users/login", "/x/../auth/users/login", "/api/user/..;/login"} {
		r = e.do(nil, "POST", path, creds)
		e.expect(r, 401, false, "PLEASE_LOGIN")
	}
	if n := sessions(); n != 1 {
		t.Fatalf("%d sessions after the other spellings", n)
	}
	c := e.client()
	e.login(c, "nora", "nora-password")
	r = e.do(c, "GET", "/auth/users/..;/info", nil)
	if r.status != 200 || r.json["user"] != "nora" || r.json["uri"] != "/auth/users/..;/info" {
		t.Fatalf("with a session: %d %s", r.status, r.body)
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// A Redis that stops answering closes the gate (503) and reopens it when it
// is back; it never lets a request through unchecked. (How soon the 503
// comes is a bench figure.)
func TestGateFailsClosedWithoutRedis(t *testing.T) {
	rs := testenv.OwnRedis(t)
	e := newEnv(t, options{redis: rs.URL()})
	e.register("liam", "liam-password", "")
	c := e.client()
	e.login(c, "liam", "liam-password")
	sessions := activeApp(t).stores.sessions
	testenv.WaitFor(t, "the session cache on", sessions.CacheLive)
	if r := e.do(c, "GET", "/app", nil); r.status != 200 || r.json["user"] != "liam" {
		t.Fatalf("before the pause: %d %s", r.status, r.body)
	}

	// The session is in the gate's cache now; the cache must be dropped as
	// soon as its subscription goes silent, and then the gate closes. Until
	// then a request may still pass, with the session's identity.
	if err := rs.Pause(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the session cache off", func() bool {
		if r := e.do(c, "GET", "/app", nil); r.status != 200 && r.status != 503 || r.status == 200 && r.json["user"] != "liam" {
			t.Fatalf("redis paused, cache still on: %d %s", r.status, r.body)
		}
		return !sessions.CacheLive()
	})
	if r := e.do(c, "GET", "/app", nil); r.status != 503 {
		t.Fatalf("redis paused, cache off: %d %s", r.status, r.body)
	}
	// Without a token there is nothing to look up: denied as always.
	r := e.do(nil, "GET", "/app", nil, "Accept", "application/json")
	e.expect(r, 401, false, "PLEASE_LOGIN")
	r = e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "liam", "password": "liam-password"})
	e.expect(r, 503, false, "SERVICE_UNAVAILABLE")

	if err := rs.Resume(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the session cache on again", sessions.CacheLive)
	r = e.do(c, "GET", "/app", nil)
	if r.status != 200 || r.json["user"] != "liam" {
		t.Fatalf("after redis came back: %d %s", r.status, r.body)
	}
}

// Without PostgreSQL, people already logged in keep working (the gate does
// not need it), while logins answer 503.
func TestGateWithoutPostgres(t *testing.T) {
	pg := testenv.OwnPostgres(t)
	e := newEnv(t, options{postgres: pg.URL()})
	e.register("mia", "mia-password", "")
	c := e.client()
	e.login(c, "mia", "mia-password")

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	r := e.do(c, "GET", "/app", nil)
	if r.status != 200 || r.json["user"] != "mia" {
		t.Fatalf("session without postgres: %d %s", r.status, r.body)
	}
	r = e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "mia", "password": "mia-password"})
	e.expect(r, 503, false, "SERVICE_UNAVAILABLE")
	r = e.do(nil, "POST", "/auth/users/register", map[string]any{"username": "noah", "password": "noah-password"})
	e.expect(r, 503, false, "SERVICE_UNAVAILABLE")

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "logins back", func() bool {
		r = e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "mia", "password": "mia-password"})
		return r.status == 200
	})
	e.expect(r, 200, "true", "")
}
