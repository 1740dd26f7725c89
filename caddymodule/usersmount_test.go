package caddymodule

import (
	"strings"
	"testing"

	"github.com/authgate/authgate/caddymodule/gatepath/gatepathtest"
)

// users_api is checked as written: a path of its own whose served paths
// meet neither prefix, nor account_api, nor a public pattern.
func TestUsersAPIValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Handler
		ok   bool
	}{
		{"beside the default prefix", Handler{UsersAPI: "/api"}, true},
		{"beside account_api /api/user", Handler{UsersAPI: "/api", AccountAPI: "/api/user"}, true},
		{"beside account_api /api/user/", Handler{UsersAPI: "/api", AccountAPI: "/api/user/"}, true},
		{"beside public patterns of the app", Handler{UsersAPI: "/api", Public: []string{"/healthz", "/api/public/*", "/api/userinfo", "/api/user/*"}}, true},
		{"public by a prefix that takes its users path", Handler{UsersAPI: "/api", Public: []string{"/api/user*"}}, false},
		{"a prefix under it, apart from its paths", Handler{UsersAPI: "/api", Prefix: "/api/auth"}, true},
		{"a deeper path", Handler{UsersAPI: "/app/api/v1"}, true},

		{"relative", Handler{UsersAPI: "api"}, false},
		{"the root", Handler{UsersAPI: "/"}, false},
		{"a trailing slash", Handler{UsersAPI: "/api/"}, false},
		{"a dot segment", Handler{UsersAPI: "/x/../api"}, false},
		{"a double slash", Handler{UsersAPI: "//api"}, false},
		{"an escape", Handler{UsersAPI: "/%61pi"}, false},
		{"a wildcard", Handler{UsersAPI: "/api*"}, false},
		{"a placeholder", Handler{UsersAPI: "/{env.API}"}, false},
		{"a semicolon", Handler{UsersAPI: "/api;v=1"}, false},
		{"the prefix", Handler{UsersAPI: "/auth"}, false},
		{"under the prefix", Handler{UsersAPI: "/auth/api"}, false},
		{"a prefix that is its users path", Handler{UsersAPI: "/api", Prefix: "/api/users"}, false},
		{"a prefix inside its users path", Handler{UsersAPI: "/api", Prefix: "/api/users/auth"}, false},
		{"a prefix that is its login path", Handler{UsersAPI: "/api", Prefix: "/api/login"}, false},
		{"a prefix above it", Handler{UsersAPI: "/auth/x", Prefix: "/auth"}, false},
		{"account_api at its users path", Handler{UsersAPI: "/api", AccountAPI: "/api/users"}, false},
		{"account_api at the same path", Handler{UsersAPI: "/api", AccountAPI: "/api"}, false},
		{"account_api at its login path", Handler{UsersAPI: "/api", AccountAPI: "/api/login/"}, false},
		{"public over the whole API", Handler{UsersAPI: "/api", Public: []string{"/api/*"}}, false},
		{"public at one endpoint", Handler{UsersAPI: "/api", Public: []string{"/api/users/settings/registrationstatus"}}, false},
		{"public at the login", Handler{UsersAPI: "/api", Public: []string{"/api/login/"}}, false},
		{"public by suffix", Handler{UsersAPI: "/api", Public: []string{"*/login"}}, false},
		{"public by glob", Handler{UsersAPI: "/api", Public: []string{"/api/*/info"}}, false},
		{"public everywhere", Handler{UsersAPI: "/api", Public: []string{"*"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.Validate()
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && (err == nil || !strings.HasPrefix(err.Error(), "authgate: users_api: ")) {
				t.Fatalf("error %v, want one naming authgate: users_api", err)
			}
		})
	}
}

func TestUsersAPICaddyfile(t *testing.T) {
	out, err := adapt(t, gateCaddyfile("postgres postgres://u@localhost/db\nredis redis://localhost:6379",
		"users_api /api\naccount_api /api/user\norigin https://app.example.com\npublic /healthz"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"users_api":"/api"`) || !strings.Contains(string(out), `"account_api":"/api/user"`) {
		t.Fatalf("the handler does not carry users_api: %s", out)
	}
}

// With users_api the dialect is where the seed's front-end calls it, its
// login also at <users_api>/login and /login/, and the rest of the path is
// the app's, gated.
func TestUsersAPIMount(t *testing.T) {
	e := newEnv(t, options{usersAPI: "/api", site: "account_api /api/user"})
	sessions := func() int { return e.sessionCount() }

	r := e.do(nil, "GET", "/api/users/settings/registrationstatus", nil)
	if e.expect(r, 200, true, ""); r.message() != true {
		t.Fatalf("registration status %s", r.body)
	}
	e.register("uma", "uma-password", "uma@example.com")
	if n := e.scalar("SELECT count(*) FROM authgate.users WHERE username = 'uma' AND email = 'uma@example.com'"); n != int64(1) {
		t.Fatalf("%v accounts", n)
	}
	// Not under prefix any more: that is only the pages'.
	r = e.do(nil, "GET", "/auth/users/settings/registrationstatus", nil)
	e.expect(r, 404, false, "NOT_FOUND")

	creds := map[string]any{"password": "uma-password", "username": "uma"}
	for i, path := range []string{"/api/login/", "/api/login", "/api/users/login"} {
		r = e.do(nil, "POST", path, creds)
		e.expect(r, 200, "true", "")
		ssid, userhash := r.str("ssid"), r.str("userhash")
		if !hex32.MatchString(userhash) || !strings.HasPrefix(ssid, userhash+".") ||
			!strings.Contains(r.header.Get("Set-Cookie"), "authgate_session="+ssid) || sessions() != i+1 {
			t.Fatalf("%s: %s, Set-Cookie %q, %d sessions", path, r.body, r.header.Get("Set-Cookie"), sessions())
		}
	}
	// Those paths are the login's whatever the method, and its failures
	// are the dialect's.
	r = e.do(nil, "GET", "/api/login/", nil)
	if e.expect(r, 405, false, "METHOD_NOT_ALLOWED"); r.header.Get("Allow") != "POST" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	r = e.do(nil, "POST", "/api/login/", map[string]any{"password": "wrong-password", "username": "uma"})
	e.expect(r, 401, false, "INVALID_PASSWORD")
	r = e.do(nil, "POST", "/api/login", map[string]any{"password": "uma-password", "username": "nobody"})
	e.expect(r, 401, false, "REGISTER_FOR_A_PASSWORD")
	r = e.do(nil, "GET", "/api/users/nothing", nil)
	e.expect(r, 404, false, "NOT_FOUND")
	if n := sessions(); n != 3 {
		t.Fatalf("%d sessions after the failures", n)
	}

	// The rest of /api is the app's: gated, then passed on as it is.
	c := e.client()
	ssid := e.login(c, "uma", "uma-password").str("ssid")
	for _, path := range []string{"/api/things", "/api/users", "/api/users/", "/api/loginx", "/api/login/x", "/api/%75sers/login", "/api/%6Cogin", "/api/users/login;x", "/api//login"} {
		r = e.do(nil, "GET", path, nil, "Accept", "application/json")
		e.expect(r, 401, false, "PLEASE_LOGIN")
		r = e.do(c, "GET", path, nil)
		if r.status != 200 || r.json["user"] != "uma" || r.json["uri"] != path || strings.Contains(r.json["cookie"].(string), ssid) {
			t.Fatalf("%s with a session: %d %s", path, r.status, r.body)
		}
	}
	// account_api beside it is served as ever.
	r = e.do(nil, "POST", "/api/user/account", nil, "Authorization", basic("uma", "uma-password"))
	e.expectREST(r, 200, true, "Successful login")
}

// Bad bytes at the login alias are a failed login like users/login's.
func TestUsersAPILoginBadBytes(t *testing.T) {
	e := newEnv(t, options{usersAPI: "/api"})
	e.register("victor", "victor-password", "")
	before := e.accountRows()
	for i, path := range []string{"/api/login/", "/api/login"} {
		r := e.do(nil, "POST", path, `{"password":"victor-password\u0000","username":"victor"}`)
		e.expect(r, 400, false, "INVALID_INPUT")
		if users, ip := e.throttleCounts(); len(users) != 1 || users[0] != string(rune('1'+i)) || ip != string(rune('1'+i)) {
			t.Fatalf("%s: counted users %v, ip %q", path, users, ip)
		}
	}
	if e.accountRows() != before || e.sessionCount() != 0 {
		t.Fatal("bad bytes changed an account or started a session")
	}
}

// Without users_api, POST {prefix}/login is the seed client's login when
// the body is JSON or the client does not ask for HTML, and the login page
// otherwise.
func TestLoginPathNegotiation(t *testing.T) {
	e := newEnv(t, options{})
	e.register("nia", "nia-password", "nia@example.com")
	sessions := func() int { return e.sessionCount() }
	const form = "application/x-www-form-urlencoded"
	const browser = "text/html,application/xhtml+xml,*/*;q=0.8"
	creds := formBody("username", "nia", "password", "nia-password")
	for i, tc := range []struct {
		name, path string
		body       any
		header     []string
	}{
		{"JSON from a browser's fetch", "/auth/login/", `{"password":"nia-password","username":"nia"}`, []string{"Accept", browser}},
		{"JSON labelled as a form", "/auth/login", `{"password":"nia-password","username":"nia"}`, []string{"Content-Type", form, "Accept", browser}},
		{"a form from a client that asks for no HTML", "/auth/login", creds, []string{"Content-Type", form}},
		{"a form asking for JSON", "/auth/login/", creds, []string{"Content-Type", form, "Accept", "application/json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.in(t)
			r := e.do(nil, "POST", tc.path, tc.body, tc.header...)
			e.expect(r, 200, "true", "")
			if r.header.Get("Content-Type") != "application/json; charset=utf-8" || !strings.HasPrefix(r.str("ssid"), r.str("userhash")+".") ||
				sessions() != i+1 {
				t.Fatalf("%s %s, %d sessions", r.header.Get("Content-Type"), r.body, sessions())
			}
		})
	}
	r := e.do(nil, "POST", "/auth/login", `{"password":"wrong-password","username":"nia"}`, "Accept", browser)
	e.expect(r, 401, false, "INVALID_PASSWORD")

	// A browser's form post gets the page, and its redirect.
	r = e.do(nil, "POST", "/auth/login", creds+"&redirect=%2Fhello", "Content-Type", form, "Accept", browser)
	if r.status != 303 || r.header.Get("Location") != "/hello" || !strings.HasPrefix(r.header.Get("Set-Cookie"), "authgate_session=") {
		t.Fatalf("form post: %d %s, Location %q", r.status, r.body, r.header.Get("Location"))
	}
	r = e.do(nil, "POST", "/auth/login", formBody("username", "nia", "password", "wrong"), "Content-Type", form, "Accept", browser)
	if r.status != 401 || !strings.Contains(string(r.body), "Wrong username or password.") {
		t.Fatalf("wrong password by form: %d %s", r.status, r.body)
	}
	r = e.do(nil, "GET", "/auth/login", nil, "Accept", "application/json")
	if r.status != 200 || !strings.Contains(string(r.body), "<form") {
		t.Fatalf("GET: %d %s", r.status, r.body)
	}
	if n := sessions(); n != 5 {
		t.Fatalf("%d sessions, want 5", n)
	}
}

// The mount answers exactly the targets of gatepathtest.UsersMountCases
// that it should, and only targets every upstream reads inside it.
func TestUsersMountRouting(t *testing.T) {
	h := &Handler{UsersAPI: gatepathtest.UsersMount}
	for _, tc := range gatepathtest.UsersMountCases {
		t.Run(tc.Target, func(t *testing.T) {
			u, ok := gatepathtest.Forwarded(tc.Target)
			if !ok {
				t.Fatal("Go refuses it")
			}
			name, ours := h.usersMount(u.EscapedPath(), u.Path)
			if ours != tc.Ours {
				t.Fatalf("answered by the users dialect: %v (as %q), want %v", ours, name, tc.Ours)
			}
			for _, p := range gatepathtest.Readings(tc.Target) {
				if ours && !gatepathtest.InUsersMount(p) {
					t.Errorf("answered, but an upstream reads %q", p)
				}
			}
		})
	}
}
