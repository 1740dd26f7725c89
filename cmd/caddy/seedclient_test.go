package main

// The users dialect as its own front-end speaks it (issue 12): the real
// binary with users_api /api in front of an app whose own API is under
// /api too, driven by plain HTTP requests here and by a small front-end in
// headless Chromium in browser_seed_test.go.

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// seedApp is the app behind the gate: it serves the test front-end at
// /client/ (public) and answers every other request with what it received,
// keeping every request's headers so that a test can tell whether a
// session token ever reached it.
type seedApp struct {
	mu   sync.Mutex
	seen []http.Header
}

// seedAnswer is what the app tells about a request.
type seedAnswer struct {
	User          string   `json:"remote_user"`
	Email         string   `json:"remote_email"`
	UserID        string   `json:"remote_user_id"`
	URI           string   `json:"uri"`
	Authorization []string `json:"authorization"`
	Cookie        []string `json:"cookie"`
}

func (a *seedApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.seen = append(a.seen, r.Header.Clone())
	a.mu.Unlock()
	if r.URL.Path == "/client/" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, seedClientPage)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(seedAnswer{
		User: r.Header.Get("Remote-User"), Email: r.Header.Get("Remote-Email"), UserID: r.Header.Get("Remote-User-Id"),
		URI: r.RequestURI, Authorization: r.Header["Authorization"], Cookie: r.Header["Cookie"],
	})
}

// requests is how many requests reached the app.
func (a *seedApp) requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen)
}

// sawToken returns a header in which the app received the session token,
// as it is or in the seed client's Basic userhash:ssid, or "".
func (a *seedApp) sawToken(token string) string {
	basic := base64.StdEncoding.EncodeToString([]byte(token[:32] + ":" + token))
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, h := range a.seen {
		for name, vals := range h {
			for _, v := range vals {
				if strings.Contains(v, token) || strings.Contains(v, basic) {
					return name + ": " + v
				}
			}
		}
	}
	return ""
}

// startSeedGate starts the binary with users_api /api in front of a
// seedApp, with the test front-end public.
func startSeedGate(t *testing.T) (*gate, *seedApp) {
	app := &seedApp{}
	g := startGate(t, withUpstream(app), withSite("public /healthz /client/*"), withUsersAPI("/api"))
	return g, app
}

// seedReply is an answer of the gate or the app.
type seedReply struct {
	status int
	header http.Header
	raw    string
	json   map[string]any
}

func (r seedReply) message() any {
	data, _ := r.json["data"].(map[string]any)
	return data["message"]
}

func (r seedReply) field(name string) string {
	m, _ := r.message().(map[string]any)
	s, _ := m[name].(string)
	return s
}

func (r seedReply) app() seedAnswer {
	var a seedAnswer
	_ = json.Unmarshal([]byte(r.raw), &a)
	return a
}

// fetch sends a request as the seed client's fetch does: a body labelled as
// JSON unless the headers (name, value, ...) say otherwise, no cookie jar.
func (g *gate) fetch(method, path, body string, header ...string) seedReply {
	g.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, g.base+path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := seedReply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.json)
	return r
}

// want fails the test unless r is the users dialect's answer: status, the
// raw "success" member (true, false or "true") and a string message.
func (g *gate) want(r seedReply, status int, success, message string) {
	g.t.Helper()
	if r.status != status || !strings.Contains(r.raw, `"success":`+success) {
		g.t.Fatalf("%d %s, want %d with success %s", r.status, r.raw, status, success)
	}
	if message != "" && r.message() != message {
		g.t.Fatalf("message %v (%s), want %s", r.message(), r.raw, message)
	}
}

func seedBasic(userhash, ssid string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(userhash+":"+ssid))
}

// Each row of issue 12 with plain HTTP: the dialect where users_api puts
// it, its login at /api/login and /api/login/ answering "success": "true",
// the rest of /api gated for the app, and the client's Basic session.
func TestSeedClientHTTP(t *testing.T) {
	g, app := startSeedGate(t)

	r := g.fetch("GET", "/api/users/settings/registrationstatus", "")
	if g.want(r, 200, "true", ""); r.message() != true {
		t.Fatalf("registration status %s", r.raw)
	}
	g.want(g.fetch("GET", "/auth/users/settings/registrationstatus", ""), 404, "false", "NOT_FOUND")
	g.want(g.fetch("POST", "/api/users/register", `{"username":"sid","password":"sid-password","email":"sid@example.com"}`), 200, "true", "USER_INSERT_OK")
	g.want(g.fetch("POST", "/api/users/register", `{"username":"SID","password":"other-password"}`), 200, "false", "ERROR_LOGIN_WITH_PASSWORD")
	var email string
	if err := g.db.QueryRow(`SELECT email FROM authgate.users WHERE username = 'sid'`).Scan(&email); err != nil || email != "sid@example.com" {
		t.Fatalf("the account: %q, %v", email, err)
	}

	// The login at each of its paths: the string "true", and a session.
	var ssid, userhash string
	for _, path := range []string{"/api/login/", "/api/login", "/api/users/login"} {
		r = g.fetch("POST", path, `{"password":"sid-password","username":"sid"}`)
		g.want(r, 200, `"true"`, "")
		ssid, userhash = r.field("ssid"), r.field("userhash")
		if len(userhash) != 32 || !strings.HasPrefix(ssid, userhash+".") || !g.sessionExists(ssid) ||
			!strings.Contains(r.header.Get("Set-Cookie"), "authgate_session="+ssid) {
			t.Fatalf("%s: %s (Set-Cookie %q)", path, r.raw, r.header.Get("Set-Cookie"))
		}
	}
	if n := len(g.sessionKeys()); n != 3 {
		t.Fatalf("%d sessions, want 3", n)
	}
	// Failures stay the boolean false.
	g.want(g.fetch("POST", "/api/login/", `{"password":"wrong-password","username":"sid"}`), 401, "false", "INVALID_PASSWORD")
	g.want(g.fetch("POST", "/api/login", `{"password":"sid-password","username":"nobody"}`), 401, "false", "REGISTER_FOR_A_PASSWORD")
	g.want(g.fetch("GET", "/api/login/", ""), 405, "false", "METHOD_NOT_ALLOWED")
	g.want(g.fetch("POST", "/api/login/", `{"password":"sid-password\u0000","username":"sid"}`), 400, "false", "INVALID_INPUT")
	if n := len(g.sessionKeys()); n != 3 {
		t.Fatalf("%d sessions after the failures, want 3", n)
	}
	if app.requests() != 0 {
		t.Fatalf("the app received %d requests of the dialect", app.requests())
	}

	// The app's API with the client's Basic: Remote-User, and no token.
	own := "userhash=" + userhash + "; ssid=" + ssid
	r = g.fetch("GET", "/api/things?x=1", "", "Authorization", seedBasic(userhash, ssid), "Cookie", own)
	if a := r.app(); r.status != 200 || a.User != "sid" || a.Email != "sid@example.com" || a.UserID == "" || a.URI != "/api/things?x=1" ||
		len(a.Authorization) != 0 || strings.Join(a.Cookie, ";") != "userhash="+userhash {
		t.Fatalf("Basic: %d %s", r.status, r.raw)
	}
	// Other Basic credentials are the app's: untouched, and no session.
	appBasic := "Basic " + base64.StdEncoding.EncodeToString([]byte("app:app-secret"))
	before := app.requests()
	g.want(g.fetch("GET", "/api/things", "", "Authorization", appBasic), 401, "false", "PLEASE_LOGIN")
	g.want(g.fetch("GET", "/api/things", "", "Authorization", seedBasic(strings.Repeat("0", 32), ssid)), 401, "false", "PLEASE_LOGIN")
	if app.requests() != before {
		t.Fatal("a request without a session reached the app")
	}
	r = g.fetch("GET", "/api/things", "", "Authorization", appBasic, "Cookie", "authgate_session="+ssid)
	if a := r.app(); r.status != 200 || a.User != "sid" || strings.Join(a.Authorization, ",") != appBasic || len(a.Cookie) != 0 {
		t.Fatalf("the app's Basic beside the session cookie: %d %s", r.status, r.raw)
	}
	// The rest of /api is the app's, gated, whatever its spelling.
	for _, path := range []string{"/api/users", "/api/users/", "/api/%75sers/login", "/api/login/x"} {
		r = g.fetch("GET", path, "", "Authorization", seedBasic(userhash, ssid))
		if a := r.app(); r.status != 200 || a.User != "sid" || a.URI != path {
			t.Fatalf("%s: %d %s", path, r.status, r.raw)
		}
	}
	if h := app.sawToken(ssid); h != "" {
		t.Fatalf("the app received the session token in %s", h)
	}

	// The client's session ends at logout; its Basic then opens nothing.
	g.want(g.fetch("POST", "/api/users/logout", "", "Authorization", seedBasic(userhash, ssid)), 200, "true", "LOGOUT_OK")
	if g.sessionExists(ssid) {
		t.Fatal("the session outlived its logout")
	}
	g.want(g.fetch("GET", "/api/things", "", "Authorization", seedBasic(userhash, ssid)), 401, "false", "PLEASE_LOGIN")
}

// Without users_api, POST /auth/login is the seed client's JSON login for
// JSON and for clients that do not ask for HTML; a browser's form post
// still gets the login page.
func TestLoginPathNegotiationHTTP(t *testing.T) {
	g := startGate(t)
	g.register("lena", "lena-password", "")
	browser := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	form := "username=lena&password=lena-password"

	r := g.fetch("POST", "/auth/login/", `{"password":"lena-password","username":"lena"}`, "Accept", browser)
	g.want(r, 200, `"true"`, "")
	if !g.sessionExists(r.field("ssid")) {
		t.Fatalf("no session for %s", r.raw)
	}
	r = g.fetch("POST", "/auth/login", "", "Content-Type", "application/x-www-form-urlencoded")
	g.want(r, 400, "false", "INVALID_INPUT")

	r = g.fetch("POST", "/auth/login", form, "Content-Type", "application/x-www-form-urlencoded", "Accept", "*/*")
	g.want(r, 200, `"true"`, "")
	r = g.fetch("POST", "/auth/login", form, "Content-Type", "application/x-www-form-urlencoded", "Accept", browser)
	if r.status != 303 || r.header.Get("Location") != "/" || !strings.HasPrefix(r.header.Get("Set-Cookie"), "authgate_session=") {
		t.Fatalf("a browser's form post: %d %s", r.status, r.raw)
	}
	if n := len(g.sessionKeys()); n != 3 {
		t.Fatalf("%d sessions, want 3", n)
	}
}

// A users_api that meets another mount or a public pattern fails
// `caddy validate`, naming the directive.
func TestUsersAPIValidateCLI(t *testing.T) {
	for _, tc := range []struct{ name, site string }{
		{"public opens its paths", "users_api /api\n\t\tpublic /api/*"},
		{"under prefix", "users_api /auth/api"},
		{"account_api at its users path", "users_api /api\n\t\taccount_api /api/users\n\t\torigin https://app.example.com"},
		{"a trailing slash", "users_api /api/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			config := filepath.Join(t.TempDir(), "Caddyfile")
			text := "{\n\tauthgate {\n\t\tpostgres postgres://authgate@127.0.0.1:1/authgate\n\t\tredis redis://127.0.0.1:1/0\n\t}\n}\n" +
				"http://127.0.0.1:8080 {\n\tauthgate {\n\t\t" + tc.site + "\n\t}\n\treverse_proxy 127.0.0.1:3000\n}\n"
			if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(binary(t), "validate", "--config", config, "--adapter", "caddyfile").CombinedOutput()
			if err == nil || !strings.Contains(string(out), "authgate: users_api: ") {
				t.Fatalf("caddy validate: %v\n%s", err, out)
			}
		})
	}
}
