package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
)

// Common passwords are too weak in every front door, however long; the
// threshold is password_min_score.
func TestCommonPasswordsRefused(t *testing.T) {
	e := newRESTEnv(t, "")
	e.register("ursula", "ursula-secret-words", "ursula@example.com")
	hash := func() any { return e.scalar("SELECT password_hash FROM authgate.users WHERE username = 'ursula'") }
	before := hash()
	const restWeak = "Password must be 8 to 1024 characters, not the username and not a common password"

	for _, pw := range []string{"12345678", "password", "Password1", "qwertyuiop", "victor2024", "victor@example.com"} {
		r := e.do(nil, "POST", "/auth/users/register", map[string]any{"username": "victor", "password": pw, "email": "victor@example.com"})
		e.expect(r, 422, false, "PASSWORD_TOO_WEAK")
		r = e.do(nil, "PUT", "/api/user/account/victor", `{"password":"`+pw+`","email":"victor@example.com"}`)
		e.expectREST(r, 200, false, restWeak)
		r = e.do(nil, "POST", "/auth/register", formBody("username", "victor", "password", pw, "email", "victor@example.com"),
			"Content-Type", "application/x-www-form-urlencoded")
		if r.status != 422 || !strings.Contains(string(r.body), "not your username and not a common password") {
			t.Fatalf("register page with %q: %d %s", pw, r.status, r.body)
		}
		if strings.HasPrefix(pw, "victor") {
			continue // common for victor only
		}
		// A change of password too: by the REST session, and by a mailed code.
		c := e.client()
		e.expectREST(e.do(c, "POST", "/api/user/account", nil, "Authorization", basic("ursula", "ursula-secret-words")),
			200, true, "Successful login")
		e.expectREST(e.do(c, "PUT", "/api/user/password", `{"password":"`+pw+`"}`), 200, false, restWeak)
	}
	r := e.do(nil, "POST", "/auth/users/requestotp", map[string]any{"username": "ursula"})
	e.expect(r, 200, true, "")
	modify := map[string]any{"userhash": r.str("userhash"), "reqid": r.str("reqid"), "OTP": mailedOTP(t, e.lastMail()), "password": "qwertyuiop"}
	e.expect(e.do(nil, "POST", "/auth/users/modifypassword", modify), 422, false, "PASSWORD_TOO_WEAK")
	out, err := e.cli("password1\n", "passwd", "ursula")
	if err == nil || !strings.Contains(err.Error(), "not a common password") {
		t.Fatalf("CLI passwd: %v\n%s", err, out)
	}
	if n := e.scalar("SELECT count(*) FROM authgate.users"); n != int64(1) || hash() != before {
		t.Fatalf("%v accounts; password changed: %v", n, hash() != before)
	}
	// The code was not spent on a weak password.
	modify["password"] = "ursula-other-secret-words"
	e.expect(e.do(nil, "POST", "/auth/users/modifypassword", modify), 200, true, "PASSWORD_RESET_OK")

	// Random letters and passphrases pass.
	for _, pw := range []string{"kjhgqpwz", "purple elephant dances"} {
		name := "victor" + strings.Repeat("x", len(pw)%3)
		r = e.do(nil, "POST", "/auth/users/register", map[string]any{"username": name, "password": pw})
		e.expect(r, 200, true, "USER_INSERT_OK")
	}
}

// password_min_score sets the threshold; 0 turns the check off.
func TestPasswordMinScore(t *testing.T) {
	out, err := adapt(t, "{\n\tauthgate {\n\t\tpostgres postgres://u@localhost/db\n\t\tredis redis://localhost:6379\n\t\tpassword_min_score 0\n\t}\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			Authgate map[string]any `json:"authgate"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if v, ok := cfg.Apps.Authgate["password_min_score"]; !ok || v != 0.0 {
		t.Fatalf("password_min_score 0 adapts to %v (present: %v)", v, ok)
	}

	e := newEnv(t, options{global: "password_min_score 0"})
	e.register("wanda", "password", "")
	e.login(e.client(), "wanda", "password")
	// Length and the username still count.
	r := e.do(nil, "POST", "/auth/users/register", map[string]any{"username": "xena", "password": "Xena"})
	e.expect(r, 422, false, "PASSWORD_TOO_WEAK")
	if n := e.scalar("SELECT count(*) FROM authgate.users"); n != int64(1) {
		t.Fatalf("%v accounts", n)
	}
}
