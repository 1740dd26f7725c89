package main

// Several instances of the real binary behind a load balancer, sharing one
// PostgreSQL and one Redis deployment: a single server, a Redis Cluster and
// a Sentinel group.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/authgate/authgate/caddymodule/testenv"
)

// answer is a decoded JSON response: the users API's envelope, the REST
// dialect's, or the demo app's whoami.
type answer struct {
	status int
	body   string
	json   map[string]any
}

// message returns data.message of the users API's envelope.
func (a answer) message() any {
	data, _ := a.json["data"].(map[string]any)
	return data["message"]
}

// call sends a request with the session ssid as a bearer token ("" for
// none) and a form or JSON body (a url.Values or a string), and decodes the
// answer.
func (g *gate) call(method, path, ssid string, body any) answer {
	g.t.Helper()
	var rd io.Reader
	contentType := ""
	switch b := body.(type) {
	case url.Values:
		rd, contentType = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	case string:
		rd, contentType = strings.NewReader(b), "application/json"
	}
	req, err := http.NewRequest(method, g.base+path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if ssid != "" {
		req.Header.Set("Authorization", "Bearer "+ssid)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, body: string(raw)}
	_ = json.Unmarshal(raw, &a.json)
	return a
}

// passes fails the test unless the gate lets ssid through to the demo app
// as user.
func (g *gate) passes(what, ssid, user string) {
	g.t.Helper()
	if a := g.call("GET", "/api/whoami", ssid, nil); a.status != 200 || a.json["remote_user"] != user {
		g.t.Fatalf("%s: %s answered %d %s, want the demo app as %s", what, g.base, a.status, a.body, user)
	}
}

// refuses fails the test unless the gate refuses ssid as no session; the
// test goes on, to show how often it happens.
func (g *gate) refuses(what, ssid string) {
	g.t.Helper()
	if a := g.call("GET", "/api/whoami", ssid, nil); a.status != 401 || a.message() != "PLEASE_LOGIN" {
		g.t.Errorf("%s: %s answered %d %s, want 401 PLEASE_LOGIN", what, g.base, a.status, a.body)
	}
}

// logged counts the lines of the gate's log that contain text.
func (g *gate) logged(text string) int {
	g.t.Helper()
	b, err := os.ReadFile(g.log)
	if err != nil {
		g.t.Fatal(err)
	}
	return strings.Count(string(b), text)
}

// userKeys lists the keys of the gate's prefix that match pattern after it.
func (g *gate) userKeys(pattern string) []string {
	g.t.Helper()
	keys, err := testenv.Keys(context.Background(), g.rdb, g.prefix+pattern)
	if err != nil {
		g.t.Fatal(err)
	}
	return keys
}

// Two instances over one PostgreSQL and each Redis deployment: a login on
// one passes the gate of the other; a logout, a password change and
// `caddy authgate revoke` through one (or beside both) are refused by the
// other on its very next request, although it keeps validated sessions in
// memory; the throttle's counts, an OTP's guesses and max_sessions hold
// across both.
func TestInstances(t *testing.T) {
	testenv.EachTopology(t, testInstances)
}

func testInstances(t *testing.T, tp testenv.Topology) {
	const global = "max_sessions 2\n\t\tthrottle_user 6 15m"
	const site = "public /healthz\n\t\taccount_api /api/user"
	a := startGate(t, withRedis(tp), withGlobal(global), withSite(site))
	b := startGate(t, besides(a), withGlobal(global), withSite(site))
	for _, g := range []*gate{a, b} {
		testenv.WaitFor(t, "the session cache on at "+g.base, func() bool { return g.logged("session cache on") > 0 })
	}

	// run runs a subtest in which the gates' helpers fail the subtest.
	outer := t
	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			a.t, b.t = t, t
			defer func() { a.t, b.t = outer, outer }()
			f(t)
		})
	}

	// Users of several hash slots: on a cluster some live on another node
	// than the announcements of ended sessions.
	const users = 4
	for i := range users {
		name := fmt.Sprintf("user%d", i)
		a.register(name, name+"-password", name+"@example.com")
	}

	run("a login on one passes the other; a logout on the other ends it on both", func(t *testing.T) {
		for i := range users {
			name := fmt.Sprintf("user%d", i)
			for range 2 {
				ssid := a.login(name, name+"-password")
				for range 3 { // the first fills the cache, the others are served from it
					b.passes("B before the logout", ssid, name)
					a.passes("A before the logout", ssid, name)
				}
				if msg := b.call("POST", "/auth/users/logout", ssid, nil).message(); msg != "LOGOUT_OK" {
					t.Fatalf("logout on B: %v", msg)
				}
				a.refuses("A right after the logout on B", ssid)
				b.refuses("B after its logout", ssid)
				if a.sessionExists(ssid) {
					t.Errorf("the session outlived its logout in Redis")
				}
			}
		}
	})

	run("a password change on one ends the other sessions on both", func(t *testing.T) {
		name := "user0"
		other := a.login(name, name+"-password")
		a.passes("A before the change", other, name)
		changing := b.login(name, name+"-password")
		// A login under 5 minutes old may change the password.
		r := b.call("PUT", "/api/user/password", changing, `{"password":"user0-new-password"}`)
		if r.status != 200 || r.json["success"] != true || !slices.Contains(toStrings(r.json["messages"]), "Password changed") {
			t.Fatalf("password change on B: %d %s", r.status, r.body)
		}
		a.refuses("A right after the password change on B", other)
		a.passes("A: the changing session", changing, name)
		if ids := a.sessionKeys(); len(ids) != 1 {
			t.Fatalf("sessions after the change: %v", ids)
		}
		if a.call("POST", "/auth/users/logout", changing, nil).message() != "LOGOUT_OK" {
			t.Fatal("logout")
		}
	})

	run("caddy authgate revoke ends every session on both", func(t *testing.T) {
		name := "user1"
		s1, s2 := a.login(name, name+"-password"), b.login(name, name+"-password")
		for _, g := range []*gate{a, b, a, b} {
			g.passes("before the revocation", s1, name)
			g.passes("before the revocation", s2, name)
		}
		out := runCLI(t, nil, "authgate", "revoke", name, "--config", b.config, "--adapter", "caddyfile")
		if !strings.Contains(out, "ended 2 session(s) of "+name) {
			t.Errorf("revoke said: %s", out)
		}
		for _, g := range []*gate{a, b} {
			g.refuses("right after the revocation", s1)
			g.refuses("right after the revocation", s2)
		}
		if a.sessionExists(s1) || a.sessionExists(s2) {
			t.Fatal("sessions outlived their revocation in Redis")
		}
	})

	run("max_sessions counts the sessions made on both", func(t *testing.T) {
		name := "user2"
		s1 := a.login(name, name+"-password")
		a.passes("A", s1, name)
		b.passes("B", s1, name)
		s2 := b.login(name, name+"-password")
		s3 := a.login(name, name+"-password") // one more than max_sessions 2
		for _, g := range []*gate{a, b} {
			g.refuses("the oldest, beyond max_sessions", s1)
			g.passes("the second", s2, name)
			g.passes("the newest", s3, name)
		}
		if a.sessionExists(s1) || !a.sessionExists(s2) || !a.sessionExists(s3) {
			t.Fatal("Redis keeps the wrong sessions")
		}
	})

	run("failed logins count on both", func(t *testing.T) {
		name := "user3"
		for i := range 6 { // throttle_user 6
			g := []*gate{a, b}[i%2]
			r := g.call("POST", "/auth/users/login", "", url.Values{"username": {name}, "password": {"wrong-password"}})
			if r.status != 401 || r.message() != "INVALID_PASSWORD" {
				t.Fatalf("wrong password %d: %d %s", i, r.status, r.body)
			}
		}
		counters := a.userKeys(":throttle:login:user:*")
		if len(counters) != 1 || a.rdb.Get(context.Background(), counters[0]).Val() != "6" {
			t.Fatalf("user counters %v", counters)
		}
		for _, g := range []*gate{a, b} {
			r := g.call("POST", "/auth/users/login", "", url.Values{"username": {name}, "password": {name + "-password"}})
			if r.status != 429 || r.message() != "TOO_MANY_ATTEMPTS" {
				t.Fatalf("the right password after 6 failures on %s: %d %s", g.base, r.status, r.body)
			}
		}
	})

	run("an OTP's guesses count on both", func(t *testing.T) {
		name := "user1"
		r := a.call("POST", "/auth/users/requestotp", "", url.Values{"username": {name}})
		m, _ := r.message().(map[string]any)
		userhash, reqid := fmt.Sprint(m["userhash"]), fmt.Sprint(m["reqid"])
		if r.status != 200 || len(userhash) != 32 || len(reqid) != 32 {
			t.Fatalf("requestotp: %d %s", r.status, r.body)
		}
		_, body := a.newestMail()
		otp := otpFrom(t, body)
		n, _ := strconv.Atoi(otp)
		wrong := fmt.Sprintf("%06d", (n+1)%1000000)
		guess := func(g *gate, code string) answer {
			return g.call("POST", "/auth/users/modifypassword", "", url.Values{
				"userhash": {userhash}, "OTP": {code}, "reqid": {reqid}, "password": {"user1-new-password"}})
		}
		otpKey := a.prefix + ":{" + userhash + "}:otp"
		for i := range 5 { // the OTP allows 5 guesses
			if r := guess([]*gate{a, b}[i%2], wrong); r.status != 401 || r.message() != "ERROR_INVALID_OTP" {
				t.Fatalf("wrong guess %d: %d %s", i, r.status, r.body)
			}
		}
		if tries := a.rdb.HGet(context.Background(), otpKey, "tries").Val(); tries != "5" {
			t.Fatalf("tries after 5 wrong guesses on both: %q", tries)
		}
		if r := guess(b, otp); r.status != 401 || r.message() != "ERROR_INVALID_OTP" {
			t.Fatalf("the right code after 5 wrong guesses: %d %s", r.status, r.body)
		}
		if n := a.rdb.Exists(context.Background(), otpKey).Val(); n != 0 {
			t.Fatal("the OTP outlived a guess beyond its five")
		}
		a.login(name, name+"-password") // the password did not change
	})
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	return out
}
