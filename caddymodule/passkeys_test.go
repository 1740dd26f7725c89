package caddymodule

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/caddymodule/passkeys/passkeystest"
	"github.com/authgate/authgate/caddymodule/sessions"
)

// Passkeys over real stores, through the endpoints the page's script
// calls, with a software authenticator in place of the browser's: what is
// stored where, what the gate then lets through, and what is refused.

// passkeyEnv is a site on localhost, where browsers offer passkeys over
// plain HTTP, with the session cache off so that a test can age a login.
func passkeyEnv(t *testing.T, global string) (*env, string) {
	e := newEnv(t, options{address: "http://localhost:%d", host: "localhost", global: "session_cache off\n" + global})
	return e, "http://" + e.host
}

// post sends JSON to a passkey endpoint as the page's script does, from
// the site's own page.
func (e *env) passkeyPost(c *http.Client, origin, path string, body any) reply {
	e.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		raw, _ = json.Marshal(body)
	}
	return e.do(c, "POST", path, string(raw), "Content-Type", "application/json", "Origin", origin, "Sec-Fetch-Site", "same-origin")
}

// addPasskey adds a passkey named name to the account c is signed in to,
// and returns the answer of the finish.
func (e *env) addPasskey(c *http.Client, origin string, key *passkeystest.Authenticator, name, password string) reply {
	e.t.Helper()
	r := e.passkeyPost(c, origin, "/auth/account/passkeys/begin", map[string]any{"name": name, "current_password": password})
	if r.status != 200 {
		e.t.Fatalf("begin: %d %s", r.status, r.body)
	}
	resp, err := key.Create(r.body)
	if err != nil {
		e.t.Fatal(err)
	}
	r = e.passkeyPost(c, origin, "/auth/account/passkeys/finish", resp.JSON())
	if r.status != 200 || r.json["next"] != "/auth/account/passkeys?done=added" {
		e.t.Fatalf("finish: %d %s", r.status, r.body)
	}
	return r
}

// passkeySignIn begins a sign-in as c and returns the authenticator's
// answer, not yet sent.
func (e *env) passkeySignIn(c *http.Client, origin string, key *passkeystest.Authenticator) *passkeystest.Response {
	e.t.Helper()
	r := e.passkeyPost(c, origin, "/auth/passkey/begin", map[string]any{})
	if r.status != 200 {
		e.t.Fatalf("begin: %d %s", r.status, r.body)
	}
	resp, err := key.Get(r.body, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

func (e *env) finishSignIn(c *http.Client, origin string, resp *passkeystest.Response, redirect string) reply {
	e.t.Helper()
	return e.passkeyPost(c, origin, "/auth/passkey/finish",
		fmt.Sprintf(`{"credential": %s, "redirect": %q}`, resp.JSON(), redirect))
}

// siteURL is the URL a client's cookie jar keeps the site's cookies
// under: the Host the requests carry.
func siteURL(origin, path string) *url.URL {
	u, _ := url.Parse(origin + path)
	return u
}

// sessionKeys lists the stored sessions of the user.
func (e *env) sessionKeys(username string) []sessions.Session {
	e.t.Helper()
	userhash := e.scalar(`SELECT userhash FROM authgate.users WHERE username = $1`, username).(string)
	var out []sessions.Session
	for _, s := range e.storedSessions() {
		if s.Userhash == userhash {
			out = append(out, s)
		}
	}
	return out
}

// siteCookie is the value of the client's cookie of that name for the
// site ("" when it has none).
func siteCookie(c *http.Client, origin, name string) string {
	for _, ck := range c.Jar.Cookies(siteURL(origin, "/")) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

func TestPasskeyAddAndSignIn(t *testing.T) {
	e, origin := passkeyEnv(t, "")
	e.register("alice", "alice-password", "alice@example.com")
	c, _ := e.loginAs("alice", "alice-password", firefoxUA)
	key := passkeystest.New(origin)

	before := e.sessionKeys("alice")
	added := e.addPasskey(c, origin, key, "Work laptop", "")
	userID := e.scalar(`SELECT id FROM authgate.users WHERE username = 'alice'`)
	// A first second factor brings recovery codes, shown once, stored
	// hashed; the session proved the passkey and says so, under a new id.
	if codes, _ := added.json["recovery_codes"].([]any); len(codes) != 10 ||
		e.scalar(`SELECT count(*) FROM authgate.recovery_codes WHERE user_id = $1`, userID) != int64(10) {
		t.Errorf("recovery codes: %v", added.json["recovery_codes"])
	}
	after := e.sessionKeys("alice")
	if len(before) != 1 || len(after) != 1 || before[0].ID == after[0].ID ||
		!slices.Equal(after[0].AMR, []string{"pwd", "webauthn"}) {
		t.Errorf("sessions before %+v, after %+v, want one with amr pwd webauthn", before, after)
	}
	// A password alone no longer logs in through the API: the passkey is
	// a second factor.
	e.expect(e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "alice", "password": "alice-password"}),
		401, false, "MFA_REQUIRED")
	if got := e.scalar(`SELECT name || ' ' || sign_count || ' ' || array_to_string(transports, ',') FROM authgate.passkeys WHERE user_id = $1`, userID); got != "Work laptop 0 internal" {
		t.Fatalf("stored passkey: %v", got)
	}
	if dump := e.redisDump(); strings.Contains(dump, ":passkey:") {
		t.Errorf("a ceremony outlived its answer:\n%s", dump)
	}

	// The page lists it, with the script allowed by its nonce only.
	page := e.do(c, "GET", "/auth/account/passkeys", nil)
	csp := page.header.Get("Content-Security-Policy")
	nonce := regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9_-]{43})'; connect-src 'self'`).FindStringSubmatch(csp)
	if page.status != 200 || nonce == nil || !strings.Contains(string(page.body), `<script src="/auth/passkeys.js" nonce="`+nonce[1]+`" defer>`) {
		t.Fatalf("passkeys page: %d, CSP %q\n%s", page.status, csp, page.body)
	}
	if !strings.Contains(string(page.body), "Work laptop") || strings.Contains(string(page.body), "Never") == false {
		t.Errorf("the page does not list the new passkey, never used:\n%s", page.body)
	}

	// Another browser signs in with it, no username given, and is sent
	// where it was going.
	b := e.client()
	resp := e.passkeySignIn(b, origin, key)
	if cookies := b.Jar.Cookies(siteURL(origin, "/auth/passkey/finish")); len(cookies) != 1 || cookies[0].Name != "authgate_session_passkey" {
		t.Fatalf("cookies for the finish: %v, want the ticket alone", cookies)
	}
	r := e.finishSignIn(b, origin, resp, "/hello?x=1")
	if r.status != 200 || r.json["next"] != "/hello?x=1" {
		t.Fatalf("finish: %d %s", r.status, r.body)
	}
	token := siteCookie(b, origin, "authgate_session")
	if record, ok := e.storedSession(token); !ok ||
		fmt.Sprint(record.AMR) != "[webauthn]" || fmt.Sprint(record.UserID) != fmt.Sprint(userID) {
		t.Fatalf("session record: %+v (%v), want alice's with amr [webauthn]", record, ok)
	}
	if got := e.scalar(`SELECT sign_count::text || ' ' || (last_used_at IS NOT NULL)::text FROM authgate.passkeys WHERE user_id = $1`, userID); got != "1 true" {
		t.Errorf("after the sign-in: %v, want count 1 and a last use", got)
	}
	gate := e.do(b, "GET", "/hello?x=1", nil)
	if gate.status != 200 || gate.json["user"] != "alice" {
		t.Fatalf("the gate: %d %s", gate.status, gate.body)
	}
	if dump := e.redisDump(); strings.Contains(dump, ":passkey:") {
		t.Errorf("a ceremony outlived its answer:\n%s", dump)
	}

	t.Run("the same answer again", func(t *testing.T) {
		again := e.client()
		e.passkeySignIn(again, origin, key) // a ticket of its own, whose challenge resp does not answer
		r := e.finishSignIn(again, origin, resp, "/")
		if r.status != 401 || r.json["error"] == nil {
			t.Fatalf("a replayed answer: %d %s", r.status, r.body)
		}
		if left := again.Jar.Cookies(siteURL(origin, "/auth/passkey/finish")); len(left) != 0 {
			t.Errorf("a replayed answer left cookies: %v", left)
		}
	})
	t.Run("an answer made on another site's page", func(t *testing.T) {
		other := e.client()
		key.Origin = "http://localhost:1"
		defer func() { key.Origin = origin }()
		r := e.finishSignIn(other, origin, e.passkeySignIn(other, origin, key), "/")
		if r.status != 401 {
			t.Fatalf("another origin: %d %s", r.status, r.body)
		}
	})
	t.Run("a request from another site", func(t *testing.T) {
		r := e.do(e.client(), "POST", "/auth/passkey/begin", "{}", "Content-Type", "application/json", "Origin", "http://evil.example")
		if r.status != 403 {
			t.Fatalf("a cross-site begin: %d %s", r.status, r.body)
		}
	})
	t.Run("a redirect off the site", func(t *testing.T) {
		other := e.client()
		r := e.finishSignIn(other, origin, e.passkeySignIn(other, origin, key), "//evil.example/")
		if r.status != 200 || r.json["next"] != "/" {
			t.Fatalf("finish: %d %s, want next /", r.status, r.body)
		}
	})
	t.Run("a counter gone backwards suspends the passkey", func(t *testing.T) {
		key.Credentials[0].SignCount = 0
		other := e.client()
		r := e.finishSignIn(other, origin, e.passkeySignIn(other, origin, key), "/")
		if r.status != 401 || !strings.Contains(fmt.Sprint(r.json["error"]), "copied") {
			t.Fatalf("a cloned passkey: %d %s", r.status, r.body)
		}
		if got := e.scalar(`SELECT (suspended_at IS NOT NULL)::text FROM authgate.passkeys WHERE user_id = $1`, userID); got != "true" {
			t.Fatalf("suspended: %v", got)
		}
		key.Credentials[0].SignCount = 100
		r = e.finishSignIn(other, origin, e.passkeySignIn(other, origin, key), "/")
		if r.status != 401 {
			t.Fatalf("a suspended passkey, its counter ahead again: %d %s", r.status, r.body)
		}
		if page := e.do(c, "GET", "/auth/account/passkeys", nil); !strings.Contains(string(page.body), "Blocked") {
			t.Errorf("the page does not say the passkey is blocked:\n%s", page.body)
		}
	})
}

func TestPasskeyChangesNeedThePassword(t *testing.T) {
	e, origin := passkeyEnv(t, "")
	e.register("bob", "bob-password", "")
	e.register("carol", "carol-password", "")
	c, _ := e.loginAs("bob", "bob-password", firefoxUA)
	key := passkeystest.New(origin)
	e.addPasskey(c, origin, key, "Phone", "")
	token := siteCookie(c, origin, "authgate_session")                // anew: it proved the passkey
	id := base64.RawURLEncoding.EncodeToString(key.Credentials[0].ID) // as the page spells it
	carol, _ := e.loginAs("carol", "carol-password", firefoxUA)
	e.age(c, token, time.Hour)

	form := func(c *http.Client, kv ...string) reply {
		return e.do(c, "POST", "/auth/account/passkeys", formBody(kv...), "Content-Type", formType, "Origin", origin)
	}
	count := func() any { return e.scalar(`SELECT count(*) FROM authgate.passkeys`) }
	for _, tc := range []struct {
		name   string
		do     func() reply
		status int
		says   string
		left   int64
	}{
		{"adding without the password", func() reply {
			return e.passkeyPost(c, origin, "/auth/account/passkeys/begin", map[string]any{"name": "Tablet"})
		}, 401, "Enter your current password", 1},
		{"adding with a wrong password", func() reply {
			return e.passkeyPost(c, origin, "/auth/account/passkeys/begin", map[string]any{"name": "Tablet", "current_password": "guess"})
		}, 401, "Your current password is wrong", 1},
		{"adding with a name of nothing", func() reply {
			return e.passkeyPost(c, origin, "/auth/account/passkeys/begin", map[string]any{"name": " ", "current_password": "bob-password"})
		}, 400, "Name it", 1},
		{"adding signed out", func() reply {
			return e.passkeyPost(e.client(), origin, "/auth/account/passkeys/begin", map[string]any{"name": "Tablet"})
		}, 401, "not signed in", 1},
		{"renaming another user's", func() reply { return form(carol, "action", "rename", "id", id, "name", "Mine") }, 404, "not one of yours", 1},
		{"removing another user's", func() reply {
			return form(carol, "action", "remove", "id", id, "current_password", "carol-password")
		}, 404, "not one of yours", 1},
		{"removing without the password", func() reply { return form(c, "action", "remove", "id", id) }, 401, "Enter your current password", 1},
		{"renaming, which needs no password", func() reply { return form(c, "action", "rename", "id", id, "name", "Old phone") }, 303, "", 1},
		{"removing with the password", func() reply {
			return form(c, "action", "remove", "id", id, "current_password", "bob-password")
		}, 303, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.do()
			if r.status != tc.status || !strings.Contains(string(r.body), tc.says) {
				t.Fatalf("got %d %s, want %d saying %q", r.status, r.body, tc.status, tc.says)
			}
			if n := count(); n != tc.left {
				t.Errorf("%v passkeys stored, want %d", n, tc.left)
			}
		})
	}
	if name := e.scalar(`SELECT count(*) FROM authgate.passkeys WHERE name = 'Old phone'`); name != int64(0) {
		t.Errorf("the removed passkey is still there")
	}
}

func TestPasskeySignInThrottled(t *testing.T) {
	e, origin := passkeyEnv(t, "throttle_ip 3 15m")
	key := passkeystest.New(origin)
	key.Credentials = nil
	for i := range 4 {
		c := e.client()
		r := e.passkeyPost(c, origin, "/auth/passkey/begin", map[string]any{})
		if r.status != 200 {
			t.Fatalf("begin: %d", r.status)
		}
		// An answer with a credential nobody registered.
		fake := &passkeystest.Response{ID: []byte("unknown credential"), ClientDataJSON: []byte("{}"),
			AuthenticatorData: make([]byte, 37), Signature: []byte("sig")}
		r = e.finishSignIn(c, origin, fake, "/")
		want := 401
		if i == 3 {
			want = 429
		}
		if r.status != want {
			t.Fatalf("attempt %d: %d %s, want %d", i+1, r.status, r.body, want)
		}
		if want == 429 && r.header.Get("Retry-After") == "" {
			t.Errorf("429 without Retry-After")
		}
	}
	// The password login from that address is throttled too: one
	// allowance for every kind of guess.
	e.register("dave", "dave-password", "")
	r := e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "dave", "password": "dave-password"})
	e.expect(r, 429, false, "TOO_MANY_ATTEMPTS")
}

func TestPasskeysUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts options
		says string
	}{
		{"a site without a host name", options{}, "this site has no host name"}, // http://127.0.0.1:port
		{"mfa off", options{address: "http://localhost:%d", host: "localhost", global: "mfa off"}, "second factors, passkeys among them, are turned off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts)
			e.register("erin", "erin-password", "")
			c, _ := e.loginAs("erin", "erin-password", firefoxUA)
			page := e.do(c, "GET", "/auth/account/passkeys", nil)
			if page.status != 200 || !strings.Contains(string(page.body), "Passkeys are not available on this site: "+tc.says) ||
				strings.Contains(string(page.body), "<script") {
				t.Fatalf("page: %d\n%s", page.status, page.body)
			}
			login := e.do(nil, "GET", "/auth/login", nil)
			if strings.Contains(string(login.body), "passkey") || strings.Contains(login.header.Get("Content-Security-Policy"), "script-src") {
				t.Errorf("the login page offers passkeys on a site without them:\n%s", login.body)
			}
			r := e.do(nil, "POST", "/auth/passkey/begin", "{}", "Content-Type", "application/json")
			if r.status != 404 || strings.Contains(e.redisDump(), ":passkey:") {
				t.Fatalf("begin on a site without passkeys: %d %s", r.status, r.body)
			}
		})
	}
}

func TestPasskeyScript(t *testing.T) {
	e, _ := passkeyEnv(t, "")
	r := e.do(nil, "GET", "/auth/passkeys.js", nil)
	etag := r.header.Get("Etag")
	if r.status != 200 || r.header.Get("Content-Type") != "text/javascript; charset=utf-8" || etag == "" ||
		!strings.Contains(string(r.body), "navigator.credentials.create") {
		t.Fatalf("script: %d %v", r.status, r.header)
	}
	if r := e.do(nil, "GET", "/auth/passkeys.js", nil, "If-None-Match", etag); r.status != 304 {
		t.Errorf("revalidation: %d, want 304", r.status)
	}
	if r := e.do(nil, "GET", "/auth/passkey/begin", nil); r.status != 405 || r.header.Get("Allow") != "POST" {
		t.Errorf("GET begin: %d %v", r.status, r.header)
	}
	login := e.do(nil, "GET", "/auth/login", nil)
	if !strings.Contains(string(login.body), "Sign in with a passkey") {
		t.Errorf("the login page does not offer passkeys:\n%s", login.body)
	}
}

var ticketField = regexp.MustCompile(`id="passkey-second"[^>]* data-ticket="([^"]+)"`)

// A user with a passkey gives it after the password: the login page's
// second step offers it, bound to the step's ticket.
func TestPasskeySecondFactor(t *testing.T) {
	e, origin := passkeyEnv(t, "")
	e.register("frank", "frank-password", "")
	e.register("grace", "grace-password", "")
	key := passkeystest.New(origin)
	for _, name := range []string{"frank", "grace"} {
		c, _ := e.loginAs(name, name+"-password", firefoxUA)
		e.addPasskey(c, origin, key, name+"'s key", "")
	}
	franks, graces := key.Credentials[0], key.Credentials[1]

	// passwordStep posts frank's password on the login page and returns
	// the client and the second step's ticket.
	passwordStep := func(t *testing.T) (*http.Client, string) {
		c := e.client()
		r := e.do(c, "POST", "/auth/login", formBody("username", "frank", "password", "frank-password", "redirect", "/hello"),
			"Content-Type", formType, "Origin", origin, "Accept", "text/html")
		m := ticketField.FindStringSubmatch(string(r.body))
		if r.status != 200 || m == nil || !strings.Contains(r.header.Get("Content-Security-Policy"), "script-src 'nonce-") {
			t.Fatalf("the password step: %d %v\n%s", r.status, r.header, r.body)
		}
		return c, m[1]
	}
	begin := func(t *testing.T, c *http.Client, ticket string) []byte {
		r := e.passkeyPost(c, origin, "/auth/passkey/second/begin", map[string]any{"ticket": ticket})
		if r.status != 200 {
			t.Fatalf("begin: %d %s", r.status, r.body)
		}
		return r.body
	}
	finish := func(c *http.Client, ticket string, resp *passkeystest.Response) reply {
		return e.passkeyPost(c, origin, "/auth/passkey/second/finish",
			fmt.Sprintf(`{"ticket": %q, "credential": %s, "redirect": "/hello"}`, ticket, resp.JSON()))
	}

	t.Run("frank's passkey", func(t *testing.T) {
		c, ticket := passwordStep(t)
		options := begin(t, c, ticket)
		resp, err := key.Get(options, franks.ID)
		if err != nil {
			t.Fatal(err)
		}
		r := finish(c, ticket, resp)
		if r.status != 200 || r.json["next"] != "/hello" {
			t.Fatalf("finish: %d %s", r.status, r.body)
		}
		token := siteCookie(c, origin, "authgate_session")
		if rec, _ := e.storedSession(token); !slices.Equal(rec.AMR, []string{"pwd", "webauthn"}) {
			t.Errorf("session record %+v, want amr pwd webauthn", rec)
		}
		// The step is over: its ticket serves no second login.
		if r := finish(e.client(), ticket, resp); r.status != 401 {
			t.Errorf("the same step again: %d %s", r.status, r.body)
		}
	})
	t.Run("grace's passkey for frank's step", func(t *testing.T) {
		c, ticket := passwordStep(t)
		options := begin(t, c, ticket)
		// Grace's authenticator would not offer it; a forged answer does.
		resp, err := key.Get([]byte(strings.Replace(string(options), `"allowCredentials"`, `"ignored"`, 1)), graces.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r := finish(c, ticket, resp); r.status != 401 || siteCookie(c, origin, "authgate_session") != "" {
			t.Fatalf("another user's passkey: %d %s", r.status, r.body)
		}
	})
	t.Run("an answer to another step's challenge", func(t *testing.T) {
		c, ticket := passwordStep(t)
		_, other := passwordStep(t)
		resp, err := key.Get(begin(t, c, other), franks.ID)
		if err != nil {
			t.Fatal(err)
		}
		begin(t, c, ticket)
		if r := finish(c, ticket, resp); r.status != 401 || siteCookie(c, origin, "authgate_session") != "" {
			t.Fatalf("an answer to another challenge: %d %s", r.status, r.body)
		}
	})
	t.Run("a ticket of no step", func(t *testing.T) {
		r := e.passkeyPost(e.client(), origin, "/auth/passkey/second/begin", map[string]any{"ticket": "no-such-ticket"})
		if r.status != 401 || !strings.Contains(string(r.body), "expired") {
			t.Fatalf("begin: %d %s", r.status, r.body)
		}
	})
}
