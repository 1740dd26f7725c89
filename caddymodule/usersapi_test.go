package caddymodule

import (
	"encoding/base64"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/caddymodule/testenv"
)

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestUsersLogin(t *testing.T) {
	e := newEnv(t, options{})
	e.register("alice", "correct horse", "alice@example.com")

	c := e.client()
	r := e.login(c, "alice", "correct horse")
	userhash, ssid := r.str("userhash"), r.str("ssid")
	if !hex32.MatchString(userhash) || !strings.HasPrefix(ssid, userhash+".") {
		t.Fatalf("userhash %q, ssid %q", userhash, ssid)
	}
	if strings.Contains(userhash, "alice") {
		t.Fatal("userhash reveals the username")
	}
	cookie := r.header.Get("Set-Cookie")
	for _, want := range []string{"authgate_session=" + ssid, "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("cookie %q lacks %q", cookie, want)
		}
	}
	if strings.Contains(cookie, "Secure") {
		t.Errorf("cookie over plain HTTP marked Secure: %q", cookie)
	}
	// Stored effect: one session in Redis, under the hash of the token.
	if dump := e.redisDump(); e.sessionCount() != 1 || strings.Contains(dump, ssid[33:]) {
		t.Fatalf("redis holds %q", dump)
	}
	// A second login gets a new session id.
	if r2 := e.login(e.client(), "alice", "correct horse"); r2.str("ssid") == ssid {
		t.Fatal("session id reused")
	}

	r = e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "alice", "password": "wrong horse"})
	e.expect(r, 401, false, "INVALID_PASSWORD")
	r = e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "bob", "password": "whatever1"})
	e.expect(r, 401, false, "REGISTER_FOR_A_PASSWORD")
	r = e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "alice"})
	e.expect(r, 400, false, "INVALID_INPUT")
	// Usernames ignore case; form bodies work like JSON.
	r = e.do(nil, "POST", "/auth/users/login", formBody("username", "ALICE", "password", "correct horse"),
		"Content-Type", "application/x-www-form-urlencoded")
	e.expect(r, 200, "true", "")
	if got := e.sessionCount(); got != 3 {
		t.Fatalf("want 3 sessions, got %d", got)
	}
}

func TestUsersRegister(t *testing.T) {
	e := newEnv(t, options{})
	r := e.do(nil, "GET", "/auth/users/settings/registrationstatus", nil)
	e.expect(r, 200, true, "")
	if r.message() != true {
		t.Fatalf("registration status %s", r.body)
	}

	// A JSON body labelled as a form is still JSON.
	r = e.do(nil, "POST", "/auth/users/register", `{"username":"carol","password":"s3cret-pass","email":"carol@example.com"}`,
		"Content-Type", "application/x-www-form-urlencoded")
	e.expect(r, 200, true, "USER_INSERT_OK")
	hash, _ := e.scalar("SELECT password_hash FROM authgate.users WHERE username = 'carol'").(string)
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("stored hash %q", hash)
	}
	if e.scalar("SELECT email FROM authgate.users WHERE username = 'carol'") != "carol@example.com" {
		t.Fatal("email not stored")
	}

	r = e.do(nil, "POST", "/auth/users/register", map[string]any{"username": "Carol", "password": "another-pass"})
	e.expect(r, 200, false, "ERROR_LOGIN_WITH_PASSWORD")
	r = e.do(nil, "POST", "/auth/users/register", formBody("username", "dave", "password", "short"),
		"Content-Type", "application/x-www-form-urlencoded")
	e.expect(r, 422, false, "PASSWORD_TOO_WEAK")
	r = e.do(nil, "POST", "/auth/users/register", map[string]any{"username": "davidson", "password": "DAVIDSON"})
	e.expect(r, 422, false, "PASSWORD_TOO_WEAK")
	r = e.do(nil, "POST", "/auth/users/register", map[string]any{"username": "eve", "password": strings.Repeat("x", 1025)})
	e.expect(r, 422, false, "PASSWORD_TOO_WEAK")
	r = e.do(nil, "POST", "/auth/users/register", map[string]any{"username": "eve", "password": "good-password", "email": "not an address"})
	e.expect(r, 400, false, "INVALID_INPUT")
	r = e.do(nil, "POST", "/auth/users/register", map[string]any{"username": "e ve", "password": "good-password"})
	e.expect(r, 400, false, "INVALID_INPUT")
	r = e.do(nil, "POST", "/auth/users/register", map[string]any{"password": "good-password"})
	e.expect(r, 400, false, "INVALID_INPUT")
	if n := e.scalar("SELECT count(*) FROM authgate.users"); n != int64(1) {
		t.Fatalf("%v accounts, want 1", n)
	}
}

func TestUsersRegistrationClosed(t *testing.T) {
	e := newEnv(t, options{global: "registration closed"})
	r := e.do(nil, "POST", "/auth/users/register", map[string]any{"username": "mallory", "password": "good-password"})
	e.expect(r, 401, false, "CANT_CREATE_USER")
	r = e.do(nil, "GET", "/auth/users/settings/registrationstatus", nil)
	if r.status != 200 || r.message() != false {
		t.Fatalf("registration status %d %s", r.status, r.body)
	}
	if n := e.scalar("SELECT count(*) FROM authgate.users"); n != int64(0) {
		t.Fatalf("%v accounts, want 0", n)
	}
}

func TestUsersSharedMessages(t *testing.T) {
	e := newEnv(t, options{})
	r := e.do(nil, "POST", "/auth/users/login", `{"username": "alice",`, "Content-Type", "application/json")
	e.expect(r, 400, false, "INVALID_INPUT")
	big := `{"username":"alice","password":"` + strings.Repeat("a", 70<<10) + `"}`
	r = e.do(nil, "POST", "/auth/users/register", big, "Content-Type", "application/json")
	e.expect(r, 400, false, "INVALID_INPUT")
	r = e.do(nil, "GET", "/auth/users/login", nil)
	e.expect(r, 405, false, "METHOD_NOT_ALLOWED")
	if r.header.Get("Allow") != "POST" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	r = e.do(nil, "DELETE", "/auth/users/requestotp", nil)
	e.expect(r, 405, false, "METHOD_NOT_ALLOWED")
	if r.header.Get("Allow") != "GET, POST" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	r = e.do(nil, "GET", "/auth/users/nothing", nil)
	e.expect(r, 404, false, "NOT_FOUND")
	// A text/plain form on another site can carry JSON; the browser's Origin
	// gives it away.
	r = e.do(nil, "POST", "/auth/users/register", `{"username":"csrf","password":"csrf-password"}`,
		"Content-Type", "text/plain", "Origin", "https://evil.example")
	e.expect(r, 403, false, "CROSS_SITE_REQUEST")
	r = e.do(nil, "POST", "/auth/users/register", `{"username":"same","password":"same-password"}`,
		"Content-Type", "text/plain", "Origin", e.base)
	e.expect(r, 200, true, "USER_INSERT_OK")
	if r.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("content type %q", r.header.Get("Content-Type"))
	}
	if n := e.scalar("SELECT count(*) FROM authgate.users WHERE username <> 'same'"); n != int64(0) {
		t.Fatalf("%v accounts after bad input", n)
	}
}

func TestUsersInfoAndLogout(t *testing.T) {
	e := newEnv(t, options{})
	e.register("frank", "frank-password", "frank@example.com")
	r := e.do(nil, "GET", "/auth/users/info", nil)
	e.expect(r, 401, false, "PLEASE_LOGIN")

	c := e.client()
	login := e.login(c, "frank", "frank-password")
	ssid, userhash := login.str("ssid"), login.str("userhash")

	r = e.do(c, "GET", "/auth/users/info", nil)
	e.expect(r, 200, true, "")
	if id, _ := r.field("user_id").(float64); id <= 0 {
		t.Fatalf("user_id %v", r.field("user_id"))
	}
	if r.str("username") != "frank" || r.str("email") != "frank@example.com" || r.str("userhash") != userhash {
		t.Fatalf("info %s", r.body)
	}
	created := e.scalar("SELECT created_at FROM authgate.users WHERE username = 'frank'").(time.Time)
	if r.str("created_at") != created.UTC().Format(time.RFC3339) {
		t.Fatalf("created_at %q, the account's %s", r.str("created_at"), created)
	}
	if strings.Contains(string(r.body), "argon2") || len(r.message().(map[string]any)) != 5 {
		t.Fatalf("info tells too much: %s", r.body)
	}
	// The same session by Bearer and by the seed client's Basic userhash:ssid.
	r = e.do(nil, "GET", "/auth/users/info", nil, "Authorization", "Bearer "+ssid)
	e.expect(r, 200, true, "")
	basic := base64.StdEncoding.EncodeToString([]byte(userhash + ":" + ssid))
	r = e.do(nil, "GET", "/auth/users/info", nil, "Authorization", "Basic "+basic)
	e.expect(r, 200, true, "")
	other := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("0", 32) + ":" + ssid))
	r = e.do(nil, "GET", "/auth/users/info", nil, "Authorization", "Basic "+other)
	e.expect(r, 401, false, "PLEASE_LOGIN")

	r = e.do(c, "POST", "/auth/users/logout", nil)
	e.expect(r, 200, true, "LOGOUT_OK")
	if ck := r.header.Get("Set-Cookie"); !strings.Contains(ck, "authgate_session=;") || !strings.Contains(ck, "Max-Age=0") {
		t.Fatalf("logout cookie %q", ck)
	}
	if stored := e.storedSessions(); len(stored) != 0 {
		t.Fatalf("sessions left in redis: %v", stored)
	}
	r = e.do(nil, "GET", "/auth/users/info", nil, "Authorization", "Bearer "+ssid)
	e.expect(r, 401, false, "PLEASE_LOGIN")
	// Logging out without a session is fine.
	r = e.do(nil, "POST", "/auth/users/logout", nil)
	e.expect(r, 200, true, "LOGOUT_OK")
}

// users/info answers from the session, as the gate does, and reads only
// the account's creation time, once: with PostgreSQL down it keeps
// answering for an account it has read, while logins answer 503; once
// PostgreSQL is back, logins work again by themselves.
func TestUsersInfoWhilePostgresIsDown(t *testing.T) {
	pg := testenv.OwnPostgres(t)
	e := newEnv(t, options{postgres: pg.URL()})
	e.register("gina", "gina-password", "gina@example.com")
	c := e.client()
	ssid := e.login(c, "gina", "gina-password").str("ssid")
	before := e.do(c, "GET", "/auth/users/info", nil)
	e.expect(before, 200, true, "")
	created := e.scalar("SELECT created_at FROM authgate.users WHERE username = 'gina'").(time.Time)
	if before.str("created_at") != created.UTC().Format(time.RFC3339) || before.str("email") != "gina@example.com" {
		t.Fatalf("info %s, created_at of the account %s", before.body, created)
	}

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	r := e.do(c, "GET", "/auth/users/info", nil)
	e.expect(r, 200, true, "")
	if string(r.body) != string(before.body) {
		t.Fatalf("info with PostgreSQL down %s, before %s", r.body, before.body)
	}
	r = e.do(e.client(), "POST", "/auth/users/login", map[string]any{"username": "gina", "password": "gina-password"})
	e.expect(r, 503, false, "SERVICE_UNAVAILABLE")
	if keys := e.storedSessions(); len(keys) != 1 {
		t.Fatalf("sessions in Redis with PostgreSQL down: %v, want gina's one", keys)
	}

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	var status int
	testenv.WaitFor(t, "a login once PostgreSQL is back", func() bool {
		r = e.do(e.client(), "POST", "/auth/users/login", map[string]any{"username": "gina", "password": "gina-password"})
		status = r.status
		return status != http.StatusServiceUnavailable
	})
	e.expect(r, 200, "true", "")
	r = e.do(nil, "GET", "/auth/users/info", nil, "Authorization", "Bearer "+ssid)
	e.expect(r, 200, true, "")
}

func TestUsersMaxSessions(t *testing.T) {
	e := newEnv(t, options{global: "max_sessions 2"})
	e.register("gina", "gina-password", "")
	first := e.login(e.client(), "gina", "gina-password").str("ssid")
	e.login(e.client(), "gina", "gina-password")
	e.login(e.client(), "gina", "gina-password")
	if n := e.sessionCount(); n != 2 {
		t.Fatalf("%d sessions, want 2", n)
	}
	r := e.do(nil, "GET", "/auth/users/info", nil, "Authorization", "Bearer "+first)
	e.expect(r, 401, false, "PLEASE_LOGIN")
}

func TestUsersConcurrentRegistrations(t *testing.T) {
	e := newEnv(t, options{})
	var wg sync.WaitGroup
	statuses := make(chan int, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "user" + string(rune('a'+i%20))
			req, _ := http.NewRequest("POST", e.base+"/auth/users/register",
				strings.NewReader(`{"username":"`+name+`","password":"pass-`+name+`-word"}`))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 {
			t.Errorf("status %d", s)
		}
	}
	if n := e.scalar("SELECT count(*) FROM authgate.users"); n != int64(20) {
		t.Fatalf("%v accounts, want 20", n)
	}
}
