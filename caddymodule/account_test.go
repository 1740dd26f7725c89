package caddymodule

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// The account page over real stores: what it lists, what its forms change
// in PostgreSQL and Redis, and what the gate then lets through.

const (
	firefoxUA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
	iphoneUA  = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
	formType  = "application/x-www-form-urlencoded"
)

// loginAs logs a new client in through the users API with a User-Agent,
// and returns the client (holding the cookies) and its session token.
func (e *env) loginAs(name, password, ua string) (*http.Client, string) {
	e.t.Helper()
	c := e.client()
	r := e.do(c, "POST", "/auth/users/login", map[string]any{"username": name, "password": password}, "User-Agent", ua)
	e.expect(r, 200, "true", "")
	return c, r.str("ssid")
}

// listedSession is one session as the account page lists it.
type listedSession struct {
	device, ip, id string
	current, times bool // marked as this one; shows when it started and was last seen
}

var (
	sessionItem  = regexp.MustCompile(`(?s)<li class="session( current)?">(.*?)</li>`)
	itemDevice   = regexp.MustCompile(`<h3 id="session-\d+">([^<]*)`)
	itemIP       = regexp.MustCompile(`<dt>Address</dt><dd>([^<]*)</dd>`)
	itemID       = regexp.MustCompile(`<input type="hidden" name="session" value="([^"]*)">`)
	itemTimes    = regexp.MustCompile(`<dt>Started</dt><dd><time datetime="\d{4}-\d\d-\d\dT[^"]+Z">[^<]+ UTC</time></dd>\s*<dt>Last seen</dt><dd><time datetime="[^"]+">(just now|\d+ \w+ ago)</time>`)
	errorMessage = regexp.MustCompile(`<p class="error" role="alert" id="error">([^<]*)</p>`)
)

// accountPage opens the account page as c and returns the reply and the
// sessions it lists.
func (e *env) accountPage(c *http.Client) (reply, []listedSession) {
	e.t.Helper()
	r := e.do(c, "GET", "/auth/account", nil)
	if r.status != 200 || r.header.Get("Cache-Control") != "no-store" || !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'none'") {
		e.t.Fatalf("account page: %d %v\n%s", r.status, r.header, r.body)
	}
	var list []listedSession
	for _, m := range sessionItem.FindAllStringSubmatch(string(r.body), -1) {
		s := listedSession{current: m[1] != "", times: itemTimes.MatchString(m[2])}
		if d := itemDevice.FindStringSubmatch(m[2]); d != nil {
			s.device = strings.TrimSpace(d[1])
		}
		if ip := itemIP.FindStringSubmatch(m[2]); ip != nil {
			s.ip = ip[1]
		}
		if id := itemID.FindStringSubmatch(m[2]); id != nil {
			s.id = id[1]
		}
		list = append(list, s)
	}
	return r, list
}

// postAccount posts one of the account page's forms as c.
func (e *env) postAccount(c *http.Client, header []string, kv ...string) reply {
	e.t.Helper()
	return e.do(c, "POST", "/auth/account", formBody(kv...), append([]string{"Content-Type", formType}, header...)...)
}

// pageError returns the error a page shows ("" for none).
func pageError(r reply) string {
	if m := errorMessage.FindSubmatch(r.body); m != nil {
		return string(m[1])
	}
	return ""
}

// gateSays asks the gate who the bearer of token is: the status and the
// identity the upstream received.
func (e *env) gateSays(token string) (int, string, string) {
	e.t.Helper()
	r := e.do(nil, "GET", "/app", nil, "Authorization", "Bearer "+token)
	user, _ := r.json["user"].(string)
	email, _ := r.json["email"].(string)
	return r.status, user, email
}

// wantDone fails unless r is the redirect of a successful change, and
// returns the notice the page shows after it.
func (e *env) wantDone(c *http.Client, r reply, done string) string {
	e.t.Helper()
	if r.status != 303 || r.header.Get("Location") != "/auth/account?done="+done {
		e.t.Fatalf("got %d Location %q, want 303 to ?done=%s\n%s", r.status, r.header.Get("Location"), done, r.body)
	}
	page := e.do(c, "GET", "/auth/account?done="+done, nil)
	m := regexp.MustCompile(`<p class="notice" role="status">([^<]*)</p>`).FindSubmatch(page.body)
	if page.status != 200 || m == nil {
		e.t.Fatalf("after the change: %d, no notice\n%s", page.status, page.body)
	}
	return string(m[1])
}

func TestAccountPage(t *testing.T) {
	e := newEnv(t, options{})
	ctx := context.Background()
	const pw = "olga-password-1"
	e.register("olga", pw, "olga@example.com")

	t.Run("needs a session", func(t *testing.T) {
		for _, tc := range []struct {
			name, method string
			header       []string
		}{
			{"no cookie", "GET", nil},
			{"an ended session's cookie", "GET", []string{"Cookie", "authgate_session=0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},
			{"a malformed cookie", "GET", []string{"Cookie", "authgate_session=x"}},
			{"a post without one", "POST", []string{"Content-Type", formType}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do(nil, tc.method, "/auth/account", formBody("action", "end-others"), tc.header...)
				if r.status != 303 || r.header.Get("Location") != "/auth/login?redirect=%2Fauth%2Faccount" {
					t.Fatalf("got %d Location %q\n%s", r.status, r.header.Get("Location"), r.body)
				}
			})
		}
	})

	firefox, firefoxToken := e.loginAs("olga", pw, firefoxUA)
	_, iphoneToken := e.loginAs("olga", pw, iphoneUA)

	t.Run("lists the sessions", func(t *testing.T) {
		r, list := e.accountPage(firefox)
		want := []listedSession{
			{device: "Firefox on Linux", ip: "127.0.0.1", current: true, times: true},
			{device: "Safari on iOS", ip: "127.0.0.1", id: e.sessionID(iphoneToken), times: true},
		}
		if len(list) != len(want) {
			t.Fatalf("listed %+v, want %+v\n%s", list, want, r.body)
		}
		for i := range want {
			if list[i] != want[i] {
				t.Errorf("session %d: %+v, want %+v", i, list[i], want[i])
			}
		}
		page := string(r.body)
		for _, s := range []string{"Signed in as <strong>olga</strong>", "olga@example.com", "End all other sessions",
			`<label for="pw-current">Current password</label>`, `<label for="email">Email address</label>`,
			`href="/auth/account/totp"`, `href="/auth/account/recovery"`, `href="/auth/account/passkeys"`} {
			if !strings.Contains(page, s) {
				t.Errorf("the page lacks %q", s)
			}
		}
		if strings.Contains(page, firefoxToken[33:]) || strings.Contains(page, iphoneToken[33:]) {
			t.Error("the page shows a session token")
		}
	})

	t.Run("ends one", func(t *testing.T) {
		r := e.postAccount(firefox, nil, "action", "end", "session", e.sessionID(iphoneToken))
		if notice := e.wantDone(firefox, r, "ended"); notice != "The session was ended." {
			t.Errorf("notice %q", notice)
		}
		if _, ok := e.storedSession(iphoneToken); ok {
			t.Fatal("the session is still in Redis")
		}
		if status, _, _ := e.gateSays(iphoneToken); status != 401 {
			t.Fatalf("the gate let the ended session through: %d", status)
		}
		if status, user, _ := e.gateSays(firefoxToken); status != 200 || user != "olga" {
			t.Fatalf("this session: %d %q", status, user)
		}
		if _, list := e.accountPage(firefox); len(list) != 1 || !list[0].current {
			t.Fatalf("listed %+v", list)
		}
		if logged(t, e.logFile, `"event":"sessions_revoked"`) != 1 {
			t.Error("no sessions_revoked audit line")
		}
	})

	t.Run("ends only the user's own", func(t *testing.T) {
		e.register("piotr", "piotr-password-1", "")
		_, piotrToken := e.loginAs("piotr", "piotr-password-1", firefoxUA)
		_, otherToken := e.loginAs("olga", pw, iphoneUA)
		before := e.redisDump()
		for _, tc := range []struct{ name, id string }{
			{"another user's session", e.sessionID(piotrToken)},
			{"no session", strings.Repeat("0", 64)},
			{"the token instead of the ID", otherToken},
			{"a key pattern", "*"},
			{"a path", "../" + e.sessionID(otherToken)},
			{"none", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.postAccount(firefox, nil, "action", "end", "session", tc.id)
				if r.status != 404 || pageError(r) != "That session is not one of yours, or it has ended already." {
					t.Fatalf("got %d %q\n%s", r.status, pageError(r), r.body)
				}
			})
		}
		if after := e.redisDump(); after != before {
			t.Fatalf("Redis changed:\n%s\n---\n%s", before, after)
		}
		for _, token := range []string{piotrToken, otherToken, firefoxToken} {
			if status, _, _ := e.gateSays(token); status != 200 {
				t.Fatalf("a session the forged IDs named no longer passes: %d", status)
			}
		}
	})

	t.Run("ends all others", func(t *testing.T) {
		others := []string{e.login(e.client(), "olga", pw).str("ssid"), e.login(e.client(), "olga", pw).str("ssid")}
		r := e.postAccount(firefox, nil, "action", "end-others")
		if notice := e.wantDone(firefox, r, "others"); notice != "Every other session was ended." {
			t.Errorf("notice %q", notice)
		}
		keys := e.userSessions(firefoxToken[:32])
		if len(keys) != 1 || keys[0] != e.sessionID(firefoxToken) {
			t.Fatalf("olga's sessions left in Redis: %v", keys)
		}
		for _, token := range others {
			if status, _, _ := e.gateSays(token); status != 401 {
				t.Fatalf("the gate let an ended session through: %d", status)
			}
		}
		if status, _, _ := e.gateSays(firefoxToken); status != 200 {
			t.Fatalf("this session: %d", status)
		}
		if r, _ := e.accountPage(firefox); strings.Contains(string(r.body), "End all other sessions") {
			t.Error("the page offers to end other sessions when there are none")
		}
	})

	newPW := "olga-new-password-2"
	t.Run("changes the password", func(t *testing.T) {
		other := e.login(e.client(), "olga", pw).str("ssid")
		oldHash := e.scalar(`SELECT password_hash FROM authgate.users WHERE username = 'olga'`)
		for _, tc := range []struct {
			name   string
			kv     []string
			status int
			msg    string
		}{
			{"wrong current password", []string{"current_password", "not-the-password", "new_password", newPW, "new_password_again", newPW},
				401, "Your current password is wrong. Nothing was changed."},
			{"no current password", []string{"new_password", newPW, "new_password_again", newPW},
				400, "Enter your current password and a new one."},
			{"the repetition differs", []string{"current_password", pw, "new_password", newPW, "new_password_again", newPW + "x"},
				400, "The new password and its repetition differ. Type them again."},
			{"the username", []string{"current_password", pw, "new_password", "olga", "new_password_again", "olga"},
				422, "Choose a password of 8 to 1024 characters that is not your username and not a common password."},
			{"a common password", []string{"current_password", pw, "new_password", "password123", "new_password_again", "password123"},
				422, "Choose a password of 8 to 1024 characters that is not your username and not a common password."},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.postAccount(firefox, nil, append([]string{"action", "password"}, tc.kv...)...)
				if r.status != tc.status || pageError(r) != tc.msg {
					t.Fatalf("got %d %q, want %d %q", r.status, pageError(r), tc.status, tc.msg)
				}
				if h := e.scalar(`SELECT password_hash FROM authgate.users WHERE username = 'olga'`); h != oldHash {
					t.Fatal("the stored hash changed")
				}
				if status, _, _ := e.gateSays(other); status != 200 {
					t.Fatalf("another session ended: %d", status)
				}
			})
		}
		// The wrong password counted as a failed login of this browser
		// (its device cookie) and was audited as one.
		if n := len(e.rdb.Keys(ctx, e.prefix+":throttle:login:device:*").Val()); n != 1 {
			t.Errorf("%d device counters\n%s", n, e.redisDump())
		}
		if logged(t, e.logFile, `"event":"login_failed"`) != 1 {
			t.Error("the wrong current password was not audited as a failed login")
		}

		r := e.postAccount(firefox, nil, "action", "password", "current_password", pw, "new_password", newPW, "new_password_again", newPW)
		if notice := e.wantDone(firefox, r, "password"); notice != "Your password was changed, and every other session was ended." {
			t.Errorf("notice %q", notice)
		}
		if h, _ := e.scalar(`SELECT password_hash FROM authgate.users WHERE username = 'olga'`).(string); h == oldHash || !strings.HasPrefix(h, "$argon2id$") {
			t.Fatalf("stored hash %q", h)
		}
		if status, _, _ := e.gateSays(other); status != 401 {
			t.Fatalf("the other session survived the password change: %d", status)
		}
		if status, _, _ := e.gateSays(firefoxToken); status != 200 {
			t.Fatalf("this session ended with the password change: %d", status)
		}
		e.expect(e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "olga", "password": pw}), 401, false, "INVALID_PASSWORD")
		e.login(e.client(), "olga", newPW)
	})

	t.Run("changes the email address", func(t *testing.T) {
		other := e.login(e.client(), "olga", newPW).str("ssid")
		for range 2 { // cached by the gate
			if status, _, email := e.gateSays(other); status != 200 || email != "olga@example.com" {
				t.Fatalf("before: %d %q", status, email)
			}
		}
		for _, tc := range []struct {
			name   string
			kv     []string
			status int
			msg    string
		}{
			{"wrong current password", []string{"email", "olga@example.org", "current_password", "not-the-password"},
				401, "Your current password is wrong. Nothing was changed."},
			{"no current password", []string{"email", "olga@example.org"},
				400, "Enter your current password to change the address."},
			{"not an address", []string{"email", "olga at example", "current_password", newPW},
				400, "Enter a plain address such as name@example.com, or leave the field empty to remove it."},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.postAccount(firefox, nil, append([]string{"action", "email"}, tc.kv...)...)
				if r.status != tc.status || pageError(r) != tc.msg {
					t.Fatalf("got %d %q, want %d %q", r.status, pageError(r), tc.status, tc.msg)
				}
				if typed := tc.kv[1]; !strings.Contains(string(r.body), `value="`+typed+`"`) {
					t.Errorf("the field does not keep what was typed (%q)", typed)
				}
				if got := e.scalar(`SELECT email FROM authgate.users WHERE username = 'olga'`); got != "olga@example.com" {
					t.Fatalf("stored %v", got)
				}
			})
		}

		r := e.postAccount(firefox, nil, "action", "email", "email", " olga@example.org ", "current_password", newPW)
		if notice := e.wantDone(firefox, r, "email"); notice != "Your email address was changed." {
			t.Errorf("notice %q", notice)
		}
		if got := e.scalar(`SELECT email FROM authgate.users WHERE username = 'olga'`); got != "olga@example.org" {
			t.Fatalf("stored %v", got)
		}
		for _, token := range []string{firefoxToken, other} {
			if status, user, email := e.gateSays(token); status != 200 || user != "olga" || email != "olga@example.org" {
				t.Fatalf("upstream got %d %q %q, want the new Remote-Email at once", status, user, email)
			}
		}
		if logged(t, e.logFile, `"event":"email_changed"`) != 1 {
			t.Error("no email_changed audit line")
		}

		r = e.postAccount(firefox, nil, "action", "email", "email", "", "current_password", newPW)
		if notice := e.wantDone(firefox, r, "email-removed"); !strings.HasPrefix(notice, "Your email address was removed.") {
			t.Errorf("notice %q", notice)
		}
		if got := e.scalar(`SELECT email FROM authgate.users WHERE username = 'olga'`); got != nil {
			t.Fatalf("stored %v, want NULL", got)
		}
		if status, _, email := e.gateSays(other); status != 200 || email != "" {
			t.Fatalf("upstream got %d %q, want no Remote-Email", status, email)
		}
	})

	t.Run("refuses cross-site posts", func(t *testing.T) {
		other := e.login(e.client(), "olga", newPW).str("ssid")
		before := e.redisDump()
		for _, tc := range []struct {
			name   string
			header []string
			kv     []string
		}{
			{"end others, cross-site fetch", []string{"Sec-Fetch-Site", "cross-site"}, []string{"action", "end-others"}},
			{"end one, same-site sibling", []string{"Sec-Fetch-Site", "same-site"}, []string{"action", "end", "session", e.sessionID(other)}},
			{"end others, foreign Origin", []string{"Origin", "https://evil.example"}, []string{"action", "end-others"}},
			{"email, foreign Referer", []string{"Referer", "https://evil.example/page"},
				[]string{"action", "email", "email", "evil@example.net", "current_password", newPW}},
			{"password, opaque Origin", []string{"Origin", "null"},
				[]string{"action", "password", "current_password", newPW, "new_password", "evil-password-9", "new_password_again", "evil-password-9"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := e.postAccount(firefox, tc.header, tc.kv...)
				if r.status != 403 || !strings.Contains(string(r.body), "This form was sent from another site, so it was refused.") {
					t.Fatalf("got %d\n%s", r.status, r.body)
				}
			})
		}
		if after := e.redisDump(); after != before {
			t.Fatalf("Redis changed:\n%s\n---\n%s", before, after)
		}
		if got := e.scalar(`SELECT email FROM authgate.users WHERE username = 'olga'`); got != nil {
			t.Fatalf("stored email %v", got)
		}
		e.login(e.client(), "olga", newPW)
		// The page's own post, as a browser sends it, passes.
		r := e.postAccount(firefox, []string{"Sec-Fetch-Site", "same-origin", "Origin", e.base}, "action", "end-others")
		e.wantDone(firefox, r, "others")
	})

	t.Run("ending this one logs out", func(t *testing.T) {
		r := e.postAccount(firefox, nil, "action", "end", "session", e.sessionID(firefoxToken))
		if r.status != 303 || r.header.Get("Location") != "/auth/login?redirect=%2Fauth%2Faccount" {
			t.Fatalf("got %d Location %q", r.status, r.header.Get("Location"))
		}
		if c := r.header.Get("Set-Cookie"); !strings.HasPrefix(c, "authgate_session=;") || !strings.Contains(c, "Max-Age=0") {
			t.Errorf("the cookie is not cleared: %q", c)
		}
		if status, _, _ := e.gateSays(firefoxToken); status != 401 {
			t.Fatalf("the session passes the gate: %d", status)
		}
	})
}

// A session ended from the account page on one instance is refused by
// another at once, although that one had it in its session cache.
func TestAccountEndAcrossInstances(t *testing.T) {
	e := newEnv(t, options{})
	b, _ := e.secondInstance("")
	e.register("quinn", "quinn-password-1", "")
	here, _ := e.loginAs("quinn", "quinn-password-1", firefoxUA)
	_, there := e.loginAs("quinn", "quinn-password-1", iphoneUA)
	for range 3 { // the first fills B's cache, the others are served from it
		if status, who := whoOn(t, b, there); status != 200 || who != "quinn" {
			t.Fatalf("B before: %d %q", status, who)
		}
	}
	_, list := e.accountPage(here)
	if len(list) != 2 || list[1].id != e.sessionID(there) {
		t.Fatalf("listed %+v", list)
	}
	e.wantDone(here, e.postAccount(here, nil, "action", "end", "session", list[1].id), "ended")
	if status, _ := whoOn(t, b, there); status != 401 {
		t.Fatalf("B after the session was ended on A: %d", status)
	}
}
