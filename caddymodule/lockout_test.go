package caddymodule

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/caddymodule/device"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/testenv"
	"github.com/authgate/authgate/caddymodule/throttle"
)

const deviceCookie = "authgate_session_device"

// newProxiedEnv is an env behind a trusted proxy on loopback, so that a
// test sets each request's client IP with X-Forwarded-For.
func newProxiedEnv(t *testing.T, opts options) *env {
	opts.caddy = "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"
	return newEnv(t, opts)
}

// from is the header of a request from client address ip.
func from(ip string) []string { return []string{"X-Forwarded-For", ip} }

func withDevice(value string, header ...string) []string {
	return append([]string{"Cookie", deviceCookie + "=" + value}, header...)
}

func userPass(username, password string) map[string]any {
	return map[string]any{"username": username, "password": password}
}

// setCookie returns the cookie name that a reply set, checking the flags
// every cookie of ours has.
func setCookie(t *testing.T, r reply, name string) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == name {
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure {
				t.Fatalf("cookie %s: %+v", name, c)
			}
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", name, r.header["Set-Cookie"])
	return nil
}

// deviceID is the device id inside a device cookie's value.
func deviceID(t *testing.T, value string) string {
	t.Helper()
	parts := strings.Split(value, ".")
	if len(parts) != 5 || parts[0] != "v1" || len(parts[2]) != 32 {
		t.Fatalf("device cookie %q", value)
	}
	return parts[2]
}

// jarCookie returns the value of a cookie that client c holds.
func (e *env) jarCookie(c *http.Client, name string) string {
	e.t.Helper()
	u, _ := url.Parse(e.base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	e.t.Fatalf("client holds no %s cookie", name)
	return ""
}

// serverSecret is the hmac secret the server keys its hashes with.
func (e *env) serverSecret() []byte {
	e.t.Helper()
	return e.scalar("SELECT value FROM authgate.secrets WHERE name = 'hmac'").([]byte)
}

// userKey is the throttle's hash of a username, as the server computes it.
func (e *env) userKey(username string) string {
	return throttle.New(nil, "", e.serverSecret(), throttle.Limits{}).UserKey(username)
}

// counter returns a throttle counter (0 when absent) and its time to live.
func (e *env) counter(name string) (int, time.Duration) {
	e.t.Helper()
	key := e.prefix + ":throttle:" + name
	n, _ := e.rdb.Get(context.Background(), key).Int()
	return n, e.rdb.PTTL(context.Background(), key).Val()
}

func (e *env) expectCounter(name string, want int) {
	e.t.Helper()
	if n, _ := e.counter(name); n != want {
		e.t.Fatalf("counter %s = %d, want %d\n%s", name, n, want, e.redisDump())
	}
}

// awaitGone polls until a throttle counter's window has passed.
func (e *env) awaitGone(name string) {
	e.t.Helper()
	key := e.prefix + ":throttle:" + name
	testenv.WaitFor(e.t, key+" to expire", func() bool {
		return e.rdb.Exists(context.Background(), key).Val() == 0
	})
}

func retryAfter(t *testing.T, r reply) int {
	t.Helper()
	n, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || n < 1 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	return n
}

func (e *env) passwordHash(username string) string {
	e.t.Helper()
	return e.scalar("SELECT password_hash FROM authgate.users WHERE username = $1", username).(string)
}

// storedSessions returns every session Redis holds under the env's prefix.
func (e *env) storedSessions() []sessions.Session {
	e.t.Helper()
	list, err := sessions.Stored(context.Background(), e.rdb, e.prefix)
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

func (e *env) sessionCount() int { return len(e.storedSessions()) }

// sessionID is the ID that names the session of token (in List, on the
// account page, in Stored).
func (e *env) sessionID(token string) string {
	e.t.Helper()
	_, field, ok := sessions.Where(e.prefix, token)
	if !ok {
		e.t.Fatalf("session token %q is not <userhash>.<secret>", token)
	}
	return hex.EncodeToString([]byte(field))
}

// storedSession returns what Redis holds for the session of token.
func (e *env) storedSession(token string) (sessions.Session, bool) {
	e.t.Helper()
	id := e.sessionID(token)
	for _, s := range e.storedSessions() {
		if s.ID == id {
			return s, true
		}
	}
	return sessions.Session{}, false
}

// userSessions lists the IDs of the stored sessions of the user whose
// userhash is given.
func (e *env) userSessions(userhash string) []string {
	var ids []string
	for _, s := range e.storedSessions() {
		if s.Userhash == userhash {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// Guesses from many addresses spend the user's shared allowance and are
// stopped by it; the owner's client, with its device cookie, still gets in.
// A device cookie that is forged, expired or for another user counts as none.
func TestDeviceCookieSparesTheOwner(t *testing.T) {
	e := newProxiedEnv(t, options{})
	e.register("olive", "olive-password", "")
	e.register("mallory", "mallory-password", "")
	owner := e.client()
	r := e.login(owner, "olive", "olive-password")
	ck := setCookie(t, r, deviceCookie)
	if ck.MaxAge < 179*24*3600 || ck.MaxAge > 180*24*3600 {
		t.Fatalf("device cookie lives %ds", ck.MaxAge)
	}
	if setCookie(t, r, "authgate_session").Value != r.str("ssid") {
		t.Fatal("session cookie is not the ssid")
	}
	first := deviceID(t, ck.Value)
	uk := e.userKey("olive")
	if !strings.Contains(ck.Value, "."+uk+".") || strings.Contains(ck.Value, "olive") {
		t.Fatalf("device cookie %q does not carry the user key %s", ck.Value, uk)
	}

	for i := range 12 {
		r := e.do(nil, "POST", "/auth/users/login", userPass("olive", "guess-"+strconv.Itoa(i)), from(fmt.Sprintf("203.0.113.%d", i))...)
		if i < 10 {
			e.expect(r, 401, false, "INVALID_PASSWORD")
		} else {
			e.expect(r, 429, false, "TOO_MANY_ATTEMPTS")
			retryAfter(t, r)
		}
	}
	// The shared allowance stopped them, not the addresses' own.
	e.expectCounter("login:user:"+uk, 10)
	e.expectCounter("login:ip:203.0.113.9", 1)
	e.expectCounter("login:ip:203.0.113.11", 0)

	sessions := e.sessionCount()
	mallory := e.client()
	e.login(mallory, "mallory", "mallory-password")
	expired := device.New(e.serverSecret()).Sign(uk, first, time.Now().Add(-time.Minute))
	flip := []byte(ck.Value)
	flip[len(flip)/2] ^= 1
	for _, tc := range []struct {
		name   string
		client *http.Client
		header []string
	}{
		{"no device cookie", nil, from("198.51.100.1")},
		{"another user's device cookie", mallory, nil},
		{"an expired device cookie", nil, withDevice(expired)},
		{"a forged device cookie", nil, withDevice(string(flip))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.client, "POST", "/auth/users/login", userPass("olive", "olive-password"), tc.header...)
			e.expect(r, 429, false, "TOO_MANY_ATTEMPTS")
			if r.header.Get("Set-Cookie") != "" {
				t.Fatalf("a refused login set %v", r.header["Set-Cookie"])
			}
		})
	}
	if n := e.sessionCount(); n != sessions+1 {
		t.Fatalf("%d sessions, want %d (mallory's new one only)", n, sessions+1)
	}
	e.expectCounter("login:user:"+uk, 10)

	// The owner's own client, and a cookie signed alike but not expired.
	r = e.do(owner, "POST", "/auth/users/login", userPass("olive", "olive-password"), from("198.51.100.2")...)
	e.expect(r, 200, "true", "")
	if next := deviceID(t, setCookie(t, r, deviceCookie).Value); next == first {
		t.Fatal("a login kept the old device id")
	}
	live := device.New(e.serverSecret()).Sign(uk, first, time.Now().Add(time.Hour))
	r = e.do(nil, "POST", "/auth/users/login", userPass("olive", "olive-password"), withDevice(live)...)
	e.expect(r, 200, "true", "")
	if n := e.sessionCount(); n != sessions+3 {
		t.Fatalf("%d sessions, want %d", n, sessions+3)
	}
	// A device's success leaves the shared allowance as the guessers left it.
	e.expectCounter("login:user:"+uk, 10)
}

// The device cookie, like the session cookie, stays with the gate.
func TestDeviceCookieNotPassedUpstream(t *testing.T) {
	e := newEnv(t, options{})
	e.register("gus", "gus-password", "")
	c := e.client()
	e.login(c, "gus", "gus-password")
	device := e.jarCookie(c, deviceCookie)
	r := e.do(c, "GET", "/app", nil, "Cookie", "theme=dark")
	cookie, _ := r.json["cookie"].(string)
	if r.status != 200 || r.json["user"] != "gus" || strings.Contains(cookie, device) || strings.Contains(cookie, deviceCookie) ||
		!strings.Contains(cookie, "theme=dark") {
		t.Fatalf("upstream saw %d %s", r.status, r.body)
	}
	r = e.do(nil, "GET", "/app", nil, "Authorization", "Bearer "+e.jarCookie(c, "authgate_session"), "Cookie", deviceCookie+"="+device)
	if cookie, _ := r.json["cookie"].(string); r.status != 200 || cookie != "" {
		t.Fatalf("upstream saw %d %s", r.status, r.body)
	}
}

// A device that guesses wrong itself is stopped on its own allowance, and
// spends neither the user's nor its address's.
func TestDeviceGuessingIsStopped(t *testing.T) {
	e := newProxiedEnv(t, options{})
	e.register("dora", "dora-password", "")
	owner := e.client()
	id := deviceID(t, setCookie(t, e.login(owner, "dora", "dora-password"), deviceCookie).Value)
	uk := e.userKey("dora")
	for i := range 11 {
		r := e.do(owner, "POST", "/auth/users/login", userPass("dora", "guess-"+strconv.Itoa(i)), from("192.0.2.1")...)
		if i < 10 {
			e.expect(r, 401, false, "INVALID_PASSWORD")
		} else {
			e.expect(r, 429, false, "TOO_MANY_ATTEMPTS")
			retryAfter(t, r)
		}
	}
	e.expectCounter("login:device:"+id, 10)
	e.expectCounter("login:user:"+uk, 0)
	e.expectCounter("login:ip:192.0.2.1", 0)
	r := e.do(owner, "POST", "/auth/users/login", userPass("dora", "dora-password"), from("192.0.2.1")...)
	e.expect(r, 429, false, "TOO_MANY_ATTEMPTS")
	// Anyone else, the owner on another browser included, is not held up.
	r = e.do(nil, "POST", "/auth/users/login", userPass("dora", "dora-password"), from("192.0.2.1")...)
	e.expect(r, 200, "true", "")
	setCookie(t, r, deviceCookie)
}

// Every front door that logs in sets a device cookie, and honours one.
func TestDeviceCookieAtEveryFrontDoor(t *testing.T) {
	e := newProxiedEnv(t, options{site: "account_api /api/user"})
	form := []string{"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html"}

	restReg := e.client()
	r := e.do(restReg, "PUT", "/api/user/account/pat", `{"password":"pat-password","email":"pat@example.com","autologin":true}`)
	e.expectREST(r, 201, true, "User registered")
	setCookie(t, r, deviceCookie)
	restLogin := e.client()
	r = e.do(restLogin, "POST", "/api/user/account", nil, "Authorization", basic("pat", "pat-password"))
	e.expectREST(r, 200, true, "Successful login")
	setCookie(t, r, deviceCookie)
	page := e.client()
	r = e.do(page, "POST", "/auth/login", formBody("username", "pat", "password", "pat-password"), form...)
	if r.status != 303 {
		t.Fatalf("login page: %d %s", r.status, r.body)
	}
	setCookie(t, r, deviceCookie)
	pageReg := e.client()
	r = e.do(pageReg, "POST", "/auth/register", formBody("username", "quincy", "password", "quincy-password"), form...)
	if r.status != 303 {
		t.Fatalf("register page: %d %s", r.status, r.body)
	}
	setCookie(t, r, deviceCookie)
	if !strings.Contains(e.jarCookie(pageReg, deviceCookie), "."+e.userKey("quincy")+".") {
		t.Fatal("the register page's device cookie is not quincy's")
	}

	// Lock pat's shared allowance through the REST dialect.
	for i := range 11 {
		r := e.do(nil, "POST", "/api/user/account", nil, "Authorization", basic("pat", "guess-"+strconv.Itoa(i)), "X-Forwarded-For", "203.0.113.50")
		if i < 10 {
			e.expectREST(r, 200, false, "Invalid username/password")
		} else {
			e.expectREST(r, 429, false, "Too many attempts, try again later")
		}
	}
	e.expectCounter("login:user:"+e.userKey("pat"), 10)
	r = e.do(nil, "POST", "/auth/login", formBody("username", "pat", "password", "pat-password"), form...)
	if r.status != 429 || !strings.Contains(string(r.body), "Too many attempts") || r.header.Get("Retry-After") == "" {
		t.Fatalf("login page without a device cookie: %d %s", r.status, r.body)
	}

	// Each client with pat's device cookie still gets in, at either door.
	for _, c := range []*http.Client{restReg, restLogin, page} {
		r := e.do(c, "POST", "/api/user/account", nil, "Authorization", basic("pat", "pat-password"))
		e.expectREST(r, 200, true, "Successful login")
		r = e.do(c, "POST", "/auth/login", formBody("username", "pat", "password", "pat-password"), form...)
		if r.status != 303 {
			t.Fatalf("login page with a device cookie: %d %s", r.status, r.body)
		}
	}
	// quincy's browser holds a device cookie, but not pat's.
	r = e.do(pageReg, "POST", "/api/user/account", nil, "Authorization", basic("pat", "pat-password"))
	e.expectREST(r, 429, false, "Too many attempts, try again later")
	e.expectCounter("login:user:"+e.userKey("pat"), 10)
}

// Wrong OTPs count against a daily cap per user, which outlasts the window:
// once reached, even the right code is refused until the day is over.
func TestDailyCapOnOTPs(t *testing.T) {
	e := newEnv(t, options{global: "throttle_user 2 1s\n\t\tthrottle_codes 4 1h"})
	e.register("ivan", "ivan-password", "ivan@example.com")
	hashBefore := e.passwordHash("ivan")
	r := e.do(nil, "POST", "/auth/users/requestotp", map[string]any{"username": "ivan"})
	e.expect(r, 200, true, "")
	userhash, reqid := r.str("userhash"), r.str("reqid")
	otp := mailedOTP(t, e.lastMail())
	uk := e.userKey("ivan")

	// Guesses alternate between the users API and the reset page.
	guess := func(i int, code string) reply {
		if i%2 == 0 {
			return e.do(nil, "POST", "/auth/users/modifypassword",
				map[string]any{"userhash": userhash, "OTP": code, "reqid": reqid, "password": "ivan-new-password"})
		}
		return e.do(nil, "POST", "/auth/reset", formBody("step", "code", "userhash", userhash, "reqid", reqid,
			"otp", code, "password", "ivan-new-password"), "Content-Type", "application/x-www-form-urlencoded")
	}
	wrong := func(i int) string { return fmt.Sprintf("%06d", (atoi(otp)+1+i)%1000000) }
	counted := 0
	for i := 0; counted < 4; i++ {
		if i > 20 {
			t.Fatal("the cap never came")
		}
		r := guess(i, wrong(i))
		switch {
		case r.status == 401:
			counted++
		case r.status == 429 && retryAfter(t, r) <= 1:
			// The window's limit: wait it out, as a patient guesser would.
			e.awaitGone("otp:user:" + uk)
		default:
			t.Fatalf("guess %d: %d %s", i, r.status, r.body)
		}
	}
	n, ttl := e.counter("otp:day:user:" + uk)
	if n != 4 || ttl < 50*time.Minute || ttl > time.Hour {
		t.Fatalf("daily counter %d, ttl %s", n, ttl)
	}
	// The cap holds after the window has passed, at both doors, for the
	// right code too.
	e.awaitGone("otp:user:" + uk)
	for i := range 2 {
		r := guess(i, otp)
		if r.status != 429 || retryAfter(t, r) < 60 {
			t.Fatalf("capped guess at door %d: %d %v %s", i, r.status, r.header, r.body)
		}
	}
	e.expect(guess(0, otp), 429, false, "TOO_MANY_ATTEMPTS")
	if e.passwordHash("ivan") != hashBefore {
		t.Fatal("password changed past the cap")
	}
	e.expectCounter("otp:day:user:"+uk, 4)
	// Logging in is another matter.
	e.login(e.client(), "ivan", "ivan-password")
}

// Wrong reset tokens count against a daily cap per client IP; other
// addresses are not held up, and no counter is shared by everyone.
func TestDailyCapOnResetTokens(t *testing.T) {
	e := newProxiedEnv(t, options{global: "throttle_ip 2 1s\n\t\tthrottle_codes 4 1h", site: "account_api /api/user"})
	r := e.do(nil, "PUT", "/api/user/account/yves", `{"password":"yves-password","email":"yves@example.com"}`)
	e.expectREST(r, 201, true, "User registered")
	hashBefore := e.passwordHash("yves")
	r = e.do(nil, "POST", "/api/user/password/yves", `{"uid_type":"username"}`, from("198.51.100.9")...)
	e.expectREST(r, 200, true, "Password recovery email sent")
	_, token := mailedResetToken(t, e.lastMail())

	const guesser = "203.0.113.77"
	put := func(token, ip string) reply {
		return e.do(nil, "PUT", "/api/user/password", `{"password":"yves-new-password","token":"`+token+`"}`, from(ip)...)
	}
	counted := 0
	for i := 0; counted < 4; i++ {
		if i > 20 {
			t.Fatal("the cap never came")
		}
		r := put(fmt.Sprintf("%056x", i+1), guesser)
		switch {
		case r.status == 200:
			e.expectREST(r, 200, false, "Unauthorized request")
			counted++
		case r.status == 429 && retryAfter(t, r) <= 1:
			e.awaitGone("reset:ip:" + guesser)
		default:
			t.Fatalf("guess %d: %d %s", i, r.status, r.body)
		}
	}
	e.awaitGone("reset:ip:" + guesser)
	r = put(token, guesser)
	e.expectREST(r, 429, false, "Too many attempts, try again later")
	if retryAfter(t, r) < 60 {
		t.Fatalf("Retry-After %s", r.header.Get("Retry-After"))
	}
	n, ttl := e.counter("reset:day:ip:" + guesser)
	if n != 4 || ttl < 50*time.Minute {
		t.Fatalf("daily counter %d, ttl %s", n, ttl)
	}
	if keys := e.rdb.Keys(context.Background(), e.prefix+":throttle:reset:*user*").Val(); len(keys) != 0 {
		t.Fatalf("reset failures counted per user: %v", keys)
	}
	if e.passwordHash("yves") != hashBefore {
		t.Fatal("password changed past the cap")
	}
	r = put(token, "198.51.100.9")
	e.expectREST(r, 200, true, "Password changed")
	if e.passwordHash("yves") == hashBefore {
		t.Fatal("password not changed")
	}
	// A success does not use up the cap.
	e.expectCounter("reset:day:ip:198.51.100.9", 0)
}

// A burst of concurrent guesses gets no more tries than the allowance: each
// attempt is counted before its password is checked, not after.
func TestConcurrentGuessesCountedUpFront(t *testing.T) {
	e := newEnv(t, options{})
	e.register("bruno", "bruno-password", "")
	const burst = 30
	statuses := make(chan int, burst)
	var wg sync.WaitGroup
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"username":"bruno","password":"guess-%d"}`, i)
			resp, err := http.Post(e.base+"/auth/users/login", "application/json", strings.NewReader(body))
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[401] != 10 || count[429] != burst-10 {
		t.Fatalf("answers %v, want 10 × 401 and %d × 429", count, burst-10)
	}
	e.expectCounter("login:user:"+e.userKey("bruno"), 10)
	e.expectCounter("login:ip:127.0.0.1", 10)
	e.expect(e.do(nil, "POST", "/auth/users/login", userPass("bruno", "bruno-password")), 429, false, "TOO_MANY_ATTEMPTS")
}

// age gives client c, in place of its session token, a session of the
// same user whose login was long ago, and returns its token.
func (e *env) age(c *http.Client, token string, by time.Duration) string {
	e.t.Helper()
	ctx := context.Background()
	store := sessions.New(e.rdb, sessions.Config{Prefix: e.prefix, TTL: time.Hour})
	sess, err := store.Lookup(ctx, token)
	if err != nil {
		e.t.Fatal(err)
	}
	sess.Created = time.Now().Add(-by).Unix()
	sess.Expires, sess.Seen = sess.Created+int64(24*time.Hour/time.Second), 0
	p := e.rdb.Pipeline()
	aged, err := store.Seed(ctx, p, sess)
	if err == nil {
		_, err = p.Exec(ctx)
	}
	if err == nil {
		err = store.Delete(ctx, token)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	sites := []string{e.base}
	if e.host != "" { // the jar keeps the cookies under the Host sent
		sites = append(sites, "http://"+e.host)
	}
	for _, site := range sites {
		u, _ := url.Parse(site)
		c.Jar.SetCookies(u, []*http.Cookie{{Name: "authgate_session", Value: aged[0], Path: "/"}})
	}
	return aged[0]
}

// A session may change the password alone only in the minutes after its
// login; later it needs current_password, checked like a login.
func TestRESTPasswordChangeNeedsReauth(t *testing.T) {
	e := newEnv(t, options{site: "account_api /api/user", global: "session_cache off"})
	r := e.do(nil, "PUT", "/api/user/account/zelda", `{"password":"zelda-password","email":"zelda@example.com"}`)
	zelda := int64(r.json["user_id"].(float64))
	r = e.do(nil, "PUT", "/api/user/account/abel", `{"password":"abel-password","email":"abel@example.com"}`)
	abel := int64(r.json["user_id"].(float64))
	c, other := e.client(), e.client()
	e.expectREST(e.do(c, "POST", "/api/user/account", nil, "Authorization", basic("zelda", "zelda-password")), 200, true, "Successful login")
	e.expectREST(e.do(other, "POST", "/api/user/account", nil, "Authorization", basic("zelda", "zelda-password")), 200, true, "Successful login")
	token := e.jarCookie(c, "authgate_session")
	id := deviceID(t, e.jarCookie(c, deviceCookie))
	uk := e.userKey("zelda")
	alive := func(c *http.Client) bool {
		return e.do(c, "POST", "/api/user/account", nil).success() == true
	}
	change := func(c *http.Client, path, body string, header ...string) reply {
		return e.do(c, "PUT", "/api/user/password"+path, body, header...)
	}

	// Fresh from its login, the session alone will do.
	hash := e.passwordHash("zelda")
	r = change(c, "", `{"password":"zelda-password-2"}`)
	e.expectREST(r, 200, true, "Password changed")
	if e.passwordHash("zelda") == hash || !alive(c) || alive(other) {
		t.Fatal("fresh change: hash, or sessions, not as expected")
	}

	// Later, it will not.
	e.expectREST(e.do(other, "POST", "/api/user/account", nil, "Authorization", basic("zelda", "zelda-password-2")), 200, true, "Successful login")
	token = e.age(c, token, 10*time.Minute)
	hash = e.passwordHash("zelda")
	for _, body := range []string{`{"password":"stolen-password"}`, `{"password":"stolen-password","current_password":""}`} {
		r = change(c, "", body)
		e.expectREST(r, 200, false, "Unauthorized request")
		r = change(c, fmt.Sprintf("/%d", zelda), body)
		e.expectREST(r, 200, false, "Unauthorized request")
	}
	if e.passwordHash("zelda") != hash || !alive(c) || !alive(other) {
		t.Fatal("refused change touched the password or the sessions")
	}

	// A wrong current password is a failed login: on the device's allowance
	// with the device cookie, on the user's and the IP's without.
	r = change(c, "", `{"password":"stolen-password","current_password":"wrong-password"}`)
	e.expectREST(r, 200, false, "Unauthorized request")
	e.expectCounter("login:device:"+id, 1)
	e.expectCounter("login:user:"+uk, 0)
	r = change(nil, "", `{"password":"stolen-password","current_password":"wrong-password"}`, "Cookie", "authgate_session="+token)
	e.expectREST(r, 200, false, "Unauthorized request")
	e.expectCounter("login:user:"+uk, 1)
	e.expectCounter("login:ip:127.0.0.1", 1)
	// The right one, for another account's id, is no better.
	r = change(c, fmt.Sprintf("/%d", abel), `{"password":"stolen-password","current_password":"zelda-password-2"}`)
	e.expectREST(r, 200, false, "Unauthorized request")
	if e.passwordHash("zelda") != hash || !alive(other) {
		t.Fatal("refused change touched the password or the sessions")
	}

	// With the right current password the old session may.
	r = change(c, fmt.Sprintf("/%d", zelda), `{"password":"zelda-password-3","current_password":"zelda-password-2"}`)
	e.expectREST(r, 200, true, "Password changed")
	if e.passwordHash("zelda") == hash || !alive(c) || alive(other) {
		t.Fatal("change with the current password: hash, or sessions, not as expected")
	}
	e.expectCounter("login:device:"+id, 0) // a success clears the device's count
	e.expectREST(e.do(nil, "POST", "/api/user/account", nil, "Authorization", basic("zelda", "zelda-password-3")), 200, true, "Successful login")
	e.expectREST(e.do(nil, "POST", "/api/user/account", nil, "Authorization", basic("abel", "abel-password")), 200, true, "Successful login")
}
