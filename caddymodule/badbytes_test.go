package caddymodule

import (
	"context"
	"os"
	"strings"
	"testing"
)

// NUL and invalid UTF-8 in any parameter, in any front door, are invalid
// input: they change nothing, reach no query, and a login carrying them
// counts as a failed one.
func TestBadBytes(t *testing.T) {
	e := newRESTEnv(t, "")
	e.register("victim", "victim-secret-words", "victim@example.com")
	r := e.do(nil, "POST", "/auth/users/requestotp", map[string]any{"username": "victim"})
	e.expect(r, 200, true, "")
	reqid, userhash := r.str("reqid"), r.str("userhash")
	victim := e.login(e.client(), "victim", "victim-secret-words").str("ssid")
	if err := os.RemoveAll(e.mailDir); err != nil {
		t.Fatal(err)
	}

	const form = "application/x-www-form-urlencoded"
	const (
		notCounted       = iota
		countedForVictim // the name can be read: the victim's counter and the IP's
		countedRaw       // the name cannot be read: the IP's, and a counter of its bytes
	)
	users, rest, page := "users", "rest", "page"
	for _, tc := range []struct {
		name, method, path, body string
		header                   []string
		dialect                  string
		counted                  int
	}{
		{"users login, JSON NUL escape in the username", "POST", "/auth/users/login",
			`{"username":"victim\u0000","password":"victim-secret-words"}`, nil, users, countedRaw},
		{"users login, raw invalid UTF-8 in the password", "POST", "/auth/users/login",
			"{\"username\":\"VICTIM\",\"password\":\"victim-secret-words\xff\"}", nil, users, countedForVictim},
		{"users login, half a surrogate pair in the password", "POST", "/auth/users/login",
			`{"username":"victim","password":"victim-secret-words\ud800"}`, nil, users, countedForVictim},
		{"users login, low half alone", "POST", "/auth/users/login",
			`{"username":"victim","password":"\udc00victim-secret-words"}`, nil, users, countedForVictim},
		{"users login, form NUL in the password", "POST", "/auth/users/login",
			"username=victim&password=victim-secret-words%00", []string{"Content-Type", form}, users, countedForVictim},
		{"users login, form invalid UTF-8 in the username", "POST", "/auth/users/login",
			"username=vic%FFtim&password=victim-secret-words", []string{"Content-Type", form}, users, countedRaw},
		{"users login, NUL in the query string", "POST", "/auth/users/login?username=victim%00",
			`{"password":"victim-secret-words"}`, nil, users, countedRaw},
		{"users login, NUL in a parameter's name", "POST", "/auth/users/login",
			`{"username":"victim","password":"victim-secret-words","x\u0000":"1"}`, nil, users, countedForVictim},
		{"users register, NUL in the username", "POST", "/auth/users/register",
			`{"username":"mallory\u0000","password":"mallory-secret-words"}`, nil, users, notCounted},
		{"users register, invalid UTF-8 in the password", "POST", "/auth/users/register",
			"{\"username\":\"mallory\",\"password\":\"mallory-secret\xc3words\"}", nil, users, notCounted},
		{"users register, NUL in the email", "POST", "/auth/users/register",
			`{"username":"mallory","password":"mallory-secret-words","email":"m@example.com\u0000"}`, nil, users, notCounted},
		{"users requestotp, invalid UTF-8 in the query", "GET", "/auth/users/requestotp?username=victim%FF",
			"", nil, users, notCounted},
		{"users requestotp, NUL in the body", "POST", "/auth/users/requestotp",
			`{"username":"victim\u0000"}`, nil, users, notCounted},
		{"users modifypassword, NUL in the OTP", "POST", "/auth/users/modifypassword",
			`{"userhash":"` + userhash + `","reqid":"` + reqid + `","OTP":"12345\u0000","password":"other-secret-words"}`, nil, users, notCounted},
		{"users info, NUL in the query", "GET", "/auth/users/info?x=%00",
			"", []string{"Authorization", "Bearer " + victim}, users, notCounted},
		{"REST login, NUL in the Basic username", "POST", "/api/user/account",
			"", []string{"Authorization", basic("victim\x00", "victim-secret-words")}, rest, countedRaw},
		{"REST login, invalid UTF-8 in the Basic password", "POST", "/api/user/account",
			"", []string{"Authorization", basic("Victim", "victim-secret-words\xfe")}, rest, countedForVictim},
		{"REST register, NUL in the path", "PUT", "/api/user/account/mallory%00",
			`{"password":"mallory-secret-words","email":"m@example.com"}`, nil, rest, notCounted},
		{"REST register, invalid UTF-8 in the path", "PUT", "/api/user/account/mal%C0lory",
			`{"password":"mallory-secret-words","email":"m@example.com"}`, nil, rest, notCounted},
		{"REST register, NUL in the password", "PUT", "/api/user/account/mallory",
			`{"password":"mallory-secret\u0000words","email":"m@example.com"}`, nil, rest, notCounted},
		{"REST recovery, NUL in the username", "POST", "/api/user/password/victim%00",
			`{"uid_type":"username"}`, nil, rest, notCounted},
		{"REST recovery, NUL in the uid type", "POST", "/api/user/password/victim",
			`{"uid_type":"username\u0000"}`, nil, rest, notCounted},
		{"REST password change by token, NUL in the password", "PUT", "/api/user/password",
			`{"password":"other-secret\u0000words","token":"` + strings.Repeat("0", 56) + `"}`, nil, rest, notCounted},
		{"REST password change by Basic, half a surrogate in the new password", "PUT", "/api/user/password",
			`{"password":"other-secret-words\udbff"}`, []string{"Authorization", basic("victim", "victim-secret-words")}, rest, countedForVictim},
		{"login page, NUL in the password", "POST", "/auth/login",
			"username=victim&password=%00victim-secret-words", []string{"Content-Type", form, "Accept", "text/html"}, page, countedForVictim},
		{"the seed client's login at the login page's path, JSON NUL in the username", "POST", "/auth/login",
			`{"username":"victim\u0000","password":"victim-secret-words"}`, []string{"Accept", "text/html"}, users, countedRaw},
		{"the seed client's login at the login page's path, form invalid UTF-8 in the password", "POST", "/auth/login/",
			"username=victim&password=victim-secret-words%FF", []string{"Content-Type", form}, users, countedForVictim},
		{"register page, invalid UTF-8 in the username", "POST", "/auth/register",
			"username=mal%E2%28lory&password=mallory-secret-words", []string{"Content-Type", form}, page, notCounted},
		{"reset page, NUL in the username", "POST", "/auth/reset",
			"step=request&username=victim%00", []string{"Content-Type", form}, page, notCounted},
		{"login page, invalid UTF-8 in the query", "GET", "/auth/login?redirect=/%FF",
			"", nil, page, notCounted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.in(t)
			ctx := context.Background()
			if keys := e.rdb.Keys(ctx, e.prefix+":throttle:*").Val(); len(keys) > 0 {
				e.rdb.Del(ctx, keys...)
			}
			redisBefore, rowsBefore := e.redisDump(), e.accountRows()

			var body any
			if tc.body != "" {
				body = tc.body
			}
			r := e.do(nil, tc.method, tc.path, body, tc.header...)
			switch tc.dialect {
			case users:
				e.expect(r, 400, false, "INVALID_INPUT")
			case rest:
				e.expectREST(r, 400, false, "Invalid request")
			case page:
				if r.status != 400 || !strings.Contains(string(r.body), "The form could not be read.") {
					t.Fatalf("got %d %s", r.status, r.body)
				}
			}

			if rows := e.accountRows(); rows != rowsBefore {
				t.Errorf("accounts changed:\n%s\nthen\n%s", rowsBefore, rows)
			}
			if _, err := os.Stat(e.mailDir); err == nil {
				t.Error("a mail was sent")
			}
			userCounts, ipCount := e.throttleCounts()
			redisAfter := e.redisDump()
			if tc.counted == notCounted {
				if redisAfter != redisBefore {
					t.Fatalf("redis changed:\n%s\nthen\n%s", redisBefore, redisAfter)
				}
				return
			}
			// Only the failure counters changed.
			if withoutCounters(e, redisAfter) != withoutCounters(e, redisBefore) {
				t.Fatalf("redis changed beyond the counters:\n%s\nthen\n%s", redisBefore, redisAfter)
			}
			if ipCount != "1" || len(userCounts) != 1 || userCounts[0] != "1" {
				t.Fatalf("counted: users %v, ip %q", userCounts, ipCount)
			}
			// A wrong password for the victim counts on the same counter
			// exactly when the name could be read.
			r = e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "victim", "password": "wrong-secret-words"})
			e.expect(r, 401, false, "INVALID_PASSWORD")
			userCounts, _ = e.throttleCounts()
			want := []string{"2"}
			if tc.counted == countedRaw {
				want = []string{"1", "1"}
			}
			if strings.Join(userCounts, ",") != strings.Join(want, ",") {
				t.Fatalf("after a wrong password: users %v, want %v", userCounts, want)
			}
		})
	}
}

// Bad bytes are failed logins: enough of them and the client waits.
func TestBadBytesAreThrottled(t *testing.T) {
	e := newEnv(t, options{global: "throttle_ip 3 15m"})
	for i := range 4 {
		r := e.do(nil, "POST", "/auth/users/login", `{"username":"x`+strings.Repeat("y", i)+`","password":"z\u0000"}`)
		if i < 3 {
			e.expect(r, 400, false, "INVALID_INPUT")
		} else {
			e.expect(r, 429, false, "TOO_MANY_ATTEMPTS")
		}
	}
	if _, ip := e.throttleCounts(); ip != "3" {
		t.Fatalf("IP count %q", ip)
	}
}

// withoutCounters drops the login failure counters from a redisDump.
func withoutCounters(e *env, dump string) string {
	var kept []string
	for _, line := range strings.Split(dump, "\n") {
		if !strings.HasPrefix(line, e.prefix+":throttle:login:") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}

// in returns the env for a subtest, whose failures end the subtest alone.
func (e *env) in(t *testing.T) *env {
	sub := *e
	sub.t = t
	return &sub
}

// accountRows returns every account row as text, to tell whether any changed.
func (e *env) accountRows() string {
	e.t.Helper()
	v, _ := e.scalar("SELECT coalesce(string_agg(concat_ws('|', id, userhash, username, canonical, email, password_hash, updated_at), E'\\n' ORDER BY id), '') FROM authgate.users").(string)
	return v
}
