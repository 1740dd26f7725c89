package caddymodule

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/authgate/authgate/caddymodule/testenv"
)

// messages returns messages[0] of the REST dialect's envelope.
func (r reply) firstMessage() string {
	list, _ := r.json["messages"].([]any)
	if len(list) == 0 {
		return ""
	}
	s, _ := list[0].(string)
	return s
}

// expectREST checks a REST-dialect reply.
func (e *env) expectREST(r reply, status int, success bool, message string) {
	e.t.Helper()
	if r.status != status || r.success() != success || r.firstMessage() != message {
		e.t.Fatalf("got %d %s, want %d success=%v %q", r.status, r.body, status, success, message)
	}
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

var resetLinkInMail = regexp.MustCompile(`(https?://\S+[?&]token=([0-9a-f]{56}))`)

func mailedResetToken(t *testing.T, message string) (link, token string) {
	t.Helper()
	m := resetLinkInMail.FindStringSubmatch(mailBody(t, message))
	if m == nil {
		t.Fatalf("no reset link in mail:\n%s", message)
	}
	return m[1], m[2]
}

func newRESTEnv(t *testing.T, global string) *env {
	return newEnv(t, options{global: global, site: "account_api /api/user"})
}

func TestRESTRegisterAndLogin(t *testing.T) {
	e := newRESTEnv(t, "")
	// jQuery sends JSON labelled as a form.
	form := "application/x-www-form-urlencoded; charset=UTF-8"
	r := e.do(nil, "PUT", "/api/user/account/sam", `{"password":"sam-password","email":"sam@example.com"}`, "Content-Type", form)
	e.expectREST(r, 201, true, "User registered")
	if id, _ := r.json["user_id"].(float64); id <= 0 {
		t.Fatalf("user_id %v", r.json["user_id"])
	}
	if r.header.Get("Set-Cookie") != "" {
		t.Fatal("logged in without autologin")
	}
	r = e.do(nil, "PUT", "/api/user/account/sam", `{"password":"sam-password","email":"sam@example.com"}`, "Content-Type", form)
	e.expectREST(r, 200, false, "User already exists")
	for _, body := range []string{`{"password":"","email":"x@example.com"}`, `{"password":"long-enough"}`, `{}`} {
		r = e.do(nil, "PUT", "/api/user/account/tom", body)
		e.expectREST(r, 200, false, "Username/email/password cannot be empty")
	}
	r = e.do(nil, "PUT", "/api/user/account/tom", `{"password":"tom-password","email":"tom@example.com","autologin":true}`)
	e.expectREST(r, 201, true, "User registered")
	if !strings.Contains(r.header.Get("Set-Cookie"), "authgate_session=") {
		t.Fatal("autologin set no cookie")
	}
	if n := e.scalar("SELECT count(*) FROM authgate.users"); n != int64(2) {
		t.Fatalf("%v accounts", n)
	}

	// Login by Basic credentials, then "who am I" by the session.
	c := e.client()
	r = e.do(c, "POST", "/api/user/account", nil, "Authorization", basic("sam", "sam-password"))
	e.expectREST(r, 200, true, "Successful login")
	if r.json["username"] != "sam" || r.json["user_id"].(float64) <= 0 {
		t.Fatalf("login %s", r.body)
	}
	r = e.do(c, "POST", "/api/user/account", nil)
	e.expectREST(r, 200, true, "Successful login")
	if r.json["username"] != "sam" {
		t.Fatalf("who am I: %s", r.body)
	}
	// Wrong Basic credentials are refused even with a valid session.
	r = e.do(c, "POST", "/api/user/account", nil, "Authorization", basic("sam", "wrong-password"))
	e.expectREST(r, 200, false, "Invalid username/password")
	r = e.do(nil, "POST", "/api/user/account", nil, "Authorization", basic("nobody", "whatever-pass"))
	e.expectREST(r, 200, false, "Invalid username/password")
	r = e.do(nil, "POST", "/api/user/account", nil)
	e.expectREST(r, 200, false, "Invalid username/password")

	// Logout ends the session.
	r = e.do(c, "DELETE", "/api/user/account", nil)
	e.expectREST(r, 200, true, "Logged out")
	r = e.do(c, "POST", "/api/user/account", nil)
	e.expectREST(r, 200, false, "Invalid username/password")

	r = e.do(nil, "PUT", "/api/user/account/uma", `{"password":"uma-password","email":"uma@example.com"}`,
		"Origin", "https://evil.example")
	e.expectREST(r, 403, false, "Cross-site request refused")
	r = e.do(nil, "PUT", "/api/user/account/uma", `{"password": "x"`)
	e.expectREST(r, 400, false, "Invalid request body: send a JSON object of at most 64 KiB")
	r = e.do(nil, "GET", "/api/user/account", nil)
	if r.status != 405 || r.header.Get("Allow") != "POST, DELETE" || r.success() != false {
		t.Fatalf("GET account: %d %s", r.status, r.body)
	}
}

func TestRESTRegistrationClosed(t *testing.T) {
	e := newRESTEnv(t, "registration closed")
	r := e.do(nil, "PUT", "/api/user/account/vic", `{"password":"vic-password","email":"vic@example.com"}`)
	e.expectREST(r, 200, false, "Registration is closed")
}

// One account store, two dialects.
func TestRESTAndUsersShareAccounts(t *testing.T) {
	e := newRESTEnv(t, "")
	r := e.do(nil, "PUT", "/api/user/account/wendy", `{"password":"wendy-password","email":"wendy@example.com"}`)
	e.expectREST(r, 201, true, "User registered")
	e.login(e.client(), "wendy", "wendy-password")
	e.register("xavier", "xavier-password", "xavier@example.com")
	r = e.do(nil, "POST", "/api/user/account", nil, "Authorization", basic("xavier", "xavier-password"))
	e.expectREST(r, 200, true, "Successful login")
}

func TestRESTPasswordRecovery(t *testing.T) {
	e := newRESTEnv(t, "")
	r := e.do(nil, "PUT", "/api/user/account/yara", `{"password":"yara-password","email":"yara@example.com"}`)
	e.expectREST(r, 201, true, "User registered")
	id := int64(r.json["user_id"].(float64))
	old := e.client()
	e.do(old, "POST", "/api/user/account", nil, "Authorization", basic("yara", "yara-password"))

	r = e.do(nil, "POST", "/api/user/password/yara", `{"uid_type":"email"}`)
	e.expectREST(r, 200, false, "Unknown uid type")
	r = e.do(nil, "POST", "/api/user/password/999999", `{}`)
	e.expectREST(r, 200, false, "User not found")
	r = e.do(nil, "POST", "/api/user/password/nobody", `{"uid_type":"username"}`)
	e.expectREST(r, 200, false, "User not found")

	// By username: the mail links to the reset page with a 56-hex token.
	r = e.do(nil, "POST", "/api/user/password/yara", `{"uid_type":"username"}`)
	e.expectREST(r, 200, true, "Password recovery email sent")
	link, first := mailedResetToken(t, e.lastMail())
	if !strings.HasPrefix(link, e.base+"/auth/reset?token=") {
		t.Fatalf("link %q", link)
	}
	if strings.Contains(e.redisDump(), first) {
		t.Fatal("reset token stored in clear")
	}
	// By user id (the default uid type, also when absent).
	r = e.do(nil, "POST", fmt.Sprintf("/api/user/password/%d", id), `{"uid_type":"user_id"}`)
	e.expectREST(r, 200, true, "Password recovery email sent")
	r = e.do(nil, "POST", fmt.Sprintf("/api/user/password/%d", id), "")
	e.expectREST(r, 200, true, "Password recovery email sent")
	_, token := mailedResetToken(t, e.lastMail())

	r = e.do(nil, "PUT", "/api/user/password", `{"password":"yara-new-password","token":"`+strings.Repeat("0", 56)+`"}`)
	e.expectREST(r, 200, false, "Unauthorized request")
	c := e.client()
	r = e.do(c, "PUT", "/api/user/password", `{"password":"yara-new-password","token":"`+token+`","autologin":true}`)
	e.expectREST(r, 200, true, "Password changed")
	if !strings.Contains(r.header.Get("Set-Cookie"), "authgate_session=") {
		t.Fatal("autologin after reset set no cookie")
	}
	r = e.do(nil, "PUT", "/api/user/password", `{"password":"yara-newer-password","token":"`+token+`"}`)
	e.expectREST(r, 200, false, "Unauthorized request")
	// Old sessions ended; the new password works, the old one does not.
	e.expectREST(e.do(old, "POST", "/api/user/account", nil), 200, false, "Invalid username/password")
	e.expectREST(e.do(c, "POST", "/api/user/account", nil), 200, true, "Successful login")
	e.expectREST(e.do(nil, "POST", "/api/user/account", nil, "Authorization", basic("yara", "yara-password")),
		200, false, "Invalid username/password")
	e.expectREST(e.do(nil, "POST", "/api/user/account", nil, "Authorization", basic("yara", "yara-new-password")),
		200, true, "Successful login")

	// The first token died with the password change it did not make.
	r = e.do(nil, "PUT", "/api/user/password", `{"password":"yara-third-password","token":"`+first+`"}`)
	e.expectREST(r, 200, false, "Unauthorized request")
	// An expired token is refused.
	e.expectREST(e.do(nil, "POST", "/api/user/password/yara", `{"uid_type":"username"}`), 200, true, "Password recovery email sent")
	_, expired := mailedResetToken(t, e.lastMail())
	keys := e.rdb.Keys(context.Background(), e.prefix+":reset:*").Val()
	if len(keys) == 0 {
		t.Fatalf("no reset token in redis:\n%s", e.redisDump())
	}
	for _, k := range keys {
		e.rdb.PExpire(context.Background(), k, time.Millisecond)
	}
	testenv.WaitFor(t, "the reset tokens to expire", func() bool {
		return e.rdb.Exists(context.Background(), keys...).Val() == 0
	})
	r = e.do(nil, "PUT", "/api/user/password", `{"password":"yara-third-password","token":"`+expired+`"}`)
	e.expectREST(r, 200, false, "Unauthorized request")
	e.expectREST(e.do(nil, "POST", "/api/user/account", nil, "Authorization", basic("yara", "yara-new-password")),
		200, true, "Successful login")
}

func TestRESTPasswordChangeBySession(t *testing.T) {
	e := newRESTEnv(t, "")
	r := e.do(nil, "PUT", "/api/user/account/zoe", `{"password":"zoe-password","email":"zoe@example.com"}`)
	zoe := int64(r.json["user_id"].(float64))
	r = e.do(nil, "PUT", "/api/user/account/adam", `{"password":"adam-password","email":"adam@example.com"}`)
	adam := int64(r.json["user_id"].(float64))
	c, other := e.client(), e.client()
	e.do(c, "POST", "/api/user/account", nil, "Authorization", basic("zoe", "zoe-password"))
	e.do(other, "POST", "/api/user/account", nil, "Authorization", basic("zoe", "zoe-password"))

	r = e.do(c, "PUT", fmt.Sprintf("/api/user/password/%d", adam), `{"password":"stolen-password"}`)
	e.expectREST(r, 200, false, "Unauthorized request")
	r = e.do(nil, "PUT", "/api/user/password", `{"password":"anon-password"}`)
	e.expectREST(r, 200, false, "Unauthorized request")

	r = e.do(c, "PUT", fmt.Sprintf("/api/user/password/%d", zoe), `{"password":"zoe-new-password"}`)
	e.expectREST(r, 200, true, "Password changed")
	// This session lives on; the user's other session ended.
	e.expectREST(e.do(c, "POST", "/api/user/account", nil), 200, true, "Successful login")
	e.expectREST(e.do(other, "POST", "/api/user/account", nil), 200, false, "Invalid username/password")
	e.expectREST(e.do(nil, "POST", "/api/user/account", nil, "Authorization", basic("adam", "adam-password")),
		200, true, "Successful login")
	e.expectREST(e.do(nil, "POST", "/api/user/account", nil, "Authorization", basic("zoe", "zoe-new-password")),
		200, true, "Successful login")
}

// A session that cannot be checked is an outage, not a wrong password.
func TestRESTSessionWithoutRedis(t *testing.T) {
	rs := testenv.OwnRedis(t)
	e := newEnv(t, options{redis: rs.URL(), site: "account_api /api/user", global: "session_cache off"})
	e.register("olga", "olga-password", "olga@example.com")
	c := e.client()
	e.login(c, "olga", "olga-password")
	if err := rs.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rs.Resume() }()
	r := e.do(c, "POST", "/api/user/account", nil)
	e.expectREST(r, 503, false, "Service unavailable, try again later")
	r = e.do(c, "PUT", "/api/user/password", `{"password":"olga-new-password"}`)
	e.expectREST(r, 503, false, "Service unavailable, try again later")
}

// recoveryLink asks for yara's recovery mail with extra request headers and
// returns the mailed link.
func recoveryLink(t *testing.T, e *env, header ...string) string {
	t.Helper()
	r := e.do(nil, "POST", "/api/user/password/yara", `{"uid_type":"username"}`, header...)
	e.expectREST(r, 200, true, "Password recovery email sent")
	link, _ := mailedResetToken(t, e.lastMail())
	return link
}

// The mailed link's host is the site's configured one, whatever Host (or
// X-Forwarded-Host) the asker sends: a forged one would hand the victim's
// token to the forger's server.
func TestRESTResetLinkFromConfiguredOrigin(t *testing.T) {
	t.Run("named site", func(t *testing.T) {
		e := newEnv(t, options{site: "account_api /api/user", address: "http://app.example.test:%d", host: "app.example.test"})
		e.expectREST(e.do(nil, "PUT", "/api/user/account/yara", `{"password":"yara-password","email":"yara@example.com"}`),
			201, true, "User registered")
		want := "http://" + e.host + "/auth/reset?token="
		for name, header := range map[string][]string{
			"own host":           nil,
			"forged port":        {"Host", "app.example.test:4444"},
			"forged case":        {"Host", "APP.example.test"},
			"forwarded host":     {"X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https"},
			"forwarded and port": {"Host", "app.example.test:1", "X-Forwarded-Host", "evil.example:443"},
		} {
			if link := recoveryLink(t, e, header...); !strings.HasPrefix(link, want) {
				t.Errorf("%s: mailed link %q, want it to start with %s", name, link, want)
			}
		}
		if n := len(e.rdb.Keys(context.Background(), e.prefix+":reset:*").Val()); n != 5 {
			t.Errorf("%d reset tokens in redis, want 5", n)
		}
	})
	// A site without a host name may mail links only to an absolute
	// reset_url, which is used as it is.
	t.Run("absolute reset_url", func(t *testing.T) {
		e := newEnv(t, options{site: "account_api /api/user", address: "http://:%d",
			global: "reset_url https://accounts.example.com/reset?token={token}"})
		e.expectREST(e.do(nil, "PUT", "/api/user/account/yara", `{"password":"yara-password","email":"yara@example.com"}`),
			201, true, "User registered")
		for _, host := range []string{"", "evil.example", "evil.example:8080"} {
			link := recoveryLink(t, e, "Host", cmp.Or(host, strings.TrimPrefix(e.base, "http://")))
			if !strings.HasPrefix(link, "https://accounts.example.com/reset?token=") {
				t.Errorf("Host %q: mailed link %q", host, link)
			}
		}
	})
}

// make run's Caddyfile.example still adapts, and its REST recovery mails a
// link to the address it names, http://localhost:8080, also when the request
// says another port. The server listens on a free port instead of 8080.
func TestExampleCaddyfileMailsItsOwnOrigin(t *testing.T) {
	text, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, pg: testenv.PostgresURL(t), redisURL: testenv.RedisURL(t), prefix: testenv.Prefix(t), mailDir: t.TempDir()}
	t.Setenv("AUTHGATE_POSTGRES", e.pg)
	t.Setenv("AUTHGATE_REDIS", e.redisURL)
	t.Setenv("AUTHGATE_MAIL_DIR", e.mailDir)
	// Its own Redis keys, like every test.
	withPrefix := strings.Replace(string(text), "redis {env.AUTHGATE_REDIS}", "redis {env.AUTHGATE_REDIS}\n\t\tredis_prefix "+e.prefix, 1)
	out, err := adapt(t, withPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if origin := adaptedGate(t, out)["origin"]; origin != "http://localhost:8080" {
		t.Fatalf("origin %v", origin)
	}
	var cfg map[string]any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	servers := cfg["apps"].(map[string]any)["http"].(map[string]any)["servers"].(map[string]any)
	if len(servers) != 1 {
		t.Fatalf("servers %v", servers)
	}
	for _, srv := range servers {
		srv.(map[string]any)["listen"] = []string{fmt.Sprintf("127.0.0.1:%d", port)}
	}
	cfg["admin"] = map[string]any{"disabled": true, "config": map[string]any{"persist": false}}
	if out, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(out, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	e.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	e.host = "localhost:8080"

	e.expectREST(e.do(nil, "PUT", "/api/user/account/yara", `{"password":"yara-password","email":"yara@example.com"}`),
		201, true, "User registered")
	for _, host := range []string{"localhost:8080", "localhost:9999", "localhost"} {
		if link := recoveryLink(t, e, "Host", host); !strings.HasPrefix(link, "http://localhost:8080/auth/reset?token=") {
			t.Errorf("Host %s: mailed link %q", host, link)
		}
	}
}
