package caddymodule

import (
	"os"
	"strings"
	"testing"
)

// Nothing in Redis, PostgreSQL or the log holds a password, OTP or token in
// clear.
func TestNoSecretsAtRest(t *testing.T) {
	e := newEnv(t, options{})
	const pw, newPW = "olivia-password", "olivia-new-password"
	e.register("olivia", pw, "olivia@example.com")
	login := e.login(e.client(), "olivia", pw)
	ssid := login.str("ssid")
	r := e.do(nil, "POST", "/auth/users/requestotp", map[string]any{"username": "olivia"})
	e.expect(r, 200, true, "")
	otp := mailedOTP(t, e.lastMail())
	e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "olivia", "password": "wrong-" + pw})
	e.login(e.client(), "olivia", pw)

	secrets := map[string]string{"password": pw, "token": ssid[33:], "otp": otp}
	check := func(where, text string) {
		t.Helper()
		for name, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s holds the %s in clear", where, name)
			}
		}
		if strings.Contains(text, "wrong-"+pw) {
			t.Errorf("%s holds a wrong password", where)
		}
	}
	check("redis", e.redisDump())
	var rows strings.Builder
	for _, q := range []string{
		"SELECT string_agg(concat_ws('|', id, userhash, username, email, password_hash), '\n') FROM authgate.users",
		"SELECT string_agg(encode(value, 'escape'), '\n') FROM authgate.secrets",
	} {
		v, _ := e.scalar(q).(string)
		rows.WriteString(v)
	}
	check("postgres", rows.String())

	r = e.do(nil, "POST", "/auth/users/modifypassword", map[string]any{
		"userhash": r.str("userhash"), "OTP": otp, "reqid": r.str("reqid"), "password": newPW})
	e.expect(r, 200, true, "PASSWORD_RESET_OK")
	secrets["new password"] = newPW

	logText, err := os.ReadFile(e.logFile)
	if err != nil {
		t.Fatal(err)
	}
	check("the log", string(logText))
	for _, want := range []string{`"login succeeded"`, `"login failed"`, `"password changed"`, `"client_ip":"127.0.0.1"`, `"username":"olivia"`} {
		if !strings.Contains(string(logText), want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

// Failed logins are counted per username; the 429 says when to come back.
func TestLoginThrottle(t *testing.T) {
	e := newEnv(t, options{})
	e.register("paul", "paul-password", "")
	var last reply
	for i := 0; i < 30; i++ {
		last = e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "paul", "password": "wrong-password"})
		if last.status == 429 {
			break
		}
		e.expect(last, 401, false, "INVALID_PASSWORD")
	}
	e.expect(last, 429, false, "TOO_MANY_ATTEMPTS")
	if ra := last.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("Retry-After %q", ra)
	}
	// Even the right password waits now.
	r := e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "paul", "password": "paul-password"})
	e.expect(r, 429, false, "TOO_MANY_ATTEMPTS")
	if keys := e.rdb.Keys(t.Context(), e.prefix+":throttle:login:user:*").Val(); len(keys) != 1 || strings.Contains(keys[0], "paul") {
		t.Fatalf("throttle keys %v", keys)
	}
}

// An unknown user's login costs what a wrong password costs: one hash at
// the configured cost each, so the answer time does not tell which names
// exist. Counted, not timed (make bench compares the times).
func TestLoginTimingOfUnknownUser(t *testing.T) {
	e := newEnv(t, options{global: "throttle_user 1000 1m\n\t\tthrottle_ip 1000 1m\n\t\targon2 19456 3 1"})
	e.register("quinn", "quinn-password", "")
	// The account's hash, which a wrong password is checked against, has
	// the configured cost; an unknown name burns a hash of the same cost.
	if h := e.scalar("SELECT password_hash FROM authgate.users WHERE username = 'quinn'").(string); !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=3,p=1$") {
		t.Fatalf("stored hash %s", h)
	}
	for _, tc := range []struct{ name, username, message, result string }{
		{"wrong password", "quinn", "INVALID_PASSWORD", "invalid_password"},
		{"unknown user", "nobody-at-all", "REGISTER_FOR_A_PASSWORD", "unknown_user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := metricValues(t)
			const attempts = 5
			for range attempts {
				r := e.do(nil, "POST", "/auth/users/login", map[string]any{"username": tc.username, "password": "not-the-password"})
				e.expect(r, 401, false, tc.message)
			}
			after := metricValues(t)
			if n := after["authgate_password_hash_seconds"] - before["authgate_password_hash_seconds"]; n != attempts {
				t.Errorf("%v hashes for %d logins, want one each", n, attempts)
			}
			if n := after["authgate_logins_total/"+tc.result] - before["authgate_logins_total/"+tc.result]; n != attempts {
				t.Errorf("logins_total{%s} grew by %v, want %d", tc.result, n, attempts)
			}
		})
	}
}
