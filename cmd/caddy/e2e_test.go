package main

// End-to-end tests of the browser pages: the real binary, real PostgreSQL
// and Redis, the demo app upstream, and headless Chromium clicking through
// the pages as a person would. Each test also looks at what was stored.

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

const (
	cookieName = "authgate_session"
	// target is a protected URL with a query, to come back to after login.
	target = "/hello?x=1&y=two"
	submit = "form button[type=submit]"
)

// demoFacts returns what the demo app shows: Remote-User, Remote-Email,
// Remote-User-Id, Path and Query.
func (b *browser) demoFacts() map[string]string {
	b.t.Helper()
	return run(b, "reading the demo page", chromedp.Evaluate[map[string]string](
		`Object.fromEntries([...document.querySelectorAll("tr")].map(r => [r.cells[0].innerText, r.cells[1].innerText]))`))
}

// wantAt fails the test unless the browser shows path?query.
func wantAt(t *testing.T, b *browser, pathAndQuery string) {
	t.Helper()
	if got := b.location().RequestURI(); got != pathAndQuery {
		t.Fatalf("the browser is at %s, want %s", got, pathAndQuery)
	}
}

// wantLoginPage fails the test unless the browser shows the login page,
// set to come back to redirect.
func wantLoginPage(t *testing.T, b *browser, redirect string) {
	t.Helper()
	loc := b.location()
	if loc.Path != "/auth/login" || loc.Query().Get("redirect") != redirect {
		t.Fatalf("the browser is at %s, want the login page with redirect=%s", loc.RequestURI(), redirect)
	}
	if got := b.value("input[name=redirect]"); got != redirect {
		t.Errorf("the login form's redirect field holds %q, want %q", got, redirect)
	}
}

// wantUpstream fails the test unless the browser shows the demo app at
// pathAndQuery, reached as username.
func wantUpstream(t *testing.T, b *browser, pathAndQuery, username, email string) {
	t.Helper()
	wantAt(t, b, pathAndQuery)
	if h := b.text("h1"); h != "Hello, "+username {
		t.Errorf("the demo app says %q, want %q", h, "Hello, "+username)
	}
	facts := b.demoFacts()
	if facts["Remote-User"] != username || facts["Remote-Email"] != email || facts["Remote-User-Id"] == "" {
		t.Errorf("the demo app received Remote-User %q, Remote-Email %q, Remote-User-Id %q; want %q, %q and an id",
			facts["Remote-User"], facts["Remote-Email"], facts["Remote-User-Id"], username, email)
	}
}

// wantSession fails the test unless the browser holds a session cookie
// that names a live session in Redis, and returns its token.
func wantSession(t *testing.T, g *gate, b *browser) string {
	t.Helper()
	c := b.cookie(g.base, cookieName)
	if c == nil {
		t.Fatalf("the browser has no %s cookie", cookieName)
	}
	if !c.HTTPOnly || c.SameSite != "Lax" || c.Path != "/" {
		t.Errorf("cookie %s: HttpOnly=%v SameSite=%q Path=%q, want HttpOnly, Lax, /", cookieName, c.HTTPOnly, c.SameSite, c.Path)
	}
	if !g.sessionExists(c.Value) {
		t.Errorf("Redis has no session for the browser's cookie (key %s)", g.sessionKey(c.Value))
	}
	return c.Value
}

// 1. A protected URL with a query leads to the login page; a wrong
// password is explained and keeps the way back; the right one goes back.
func TestBrowserLogin(t *testing.T) {
	g := startGate(t)
	g.register("alice", "correct horse battery", "alice@example.com")
	b := newBrowser(t)

	if status := b.open(g.base + target); status != 200 {
		t.Errorf("the login page answered %d", status)
	}
	wantLoginPage(t, b, target)
	readable(t, b.pageText(), "Log in", "Username", "Password", "Create an account", "Forgot your password?")
	if b.has("#error") {
		t.Errorf("the login page shows an error before anything was sent: %q", b.text("#error"))
	}
	b.shot("01-login")

	b.fill("#username", "alice")
	b.fill("#password", "not the password")
	if status := b.click(submit); status != 401 {
		t.Errorf("a wrong password answered %d, want 401", status)
	}
	if got := b.text("#error"); got != "Wrong username or password." {
		t.Errorf("after a wrong password the page says %q", got)
	}
	if got := b.value("input[name=redirect]"); got != target {
		t.Errorf("after a wrong password the redirect field holds %q, want %q", got, target)
	}
	if got := b.value("#username"); got != "alice" {
		t.Errorf("after a wrong password the username field holds %q, want alice", got)
	}
	if b.cookie(g.base, cookieName) != nil {
		t.Errorf("a wrong password set a session cookie")
	}
	if keys := g.sessionKeys(); len(keys) != 0 {
		t.Errorf("a wrong password stored sessions: %v", keys)
	}
	b.shot("02-login-error")

	b.fill("#password", "correct horse battery")
	if status := b.click(submit); status != 200 {
		t.Errorf("the page after login answered %d", status)
	}
	wantUpstream(t, b, target, "alice", "alice@example.com")
	if facts := b.demoFacts(); facts["Path"] != "/hello" || facts["Query"] != "x=1&y=two" {
		t.Errorf("the demo app received path %q query %q", facts["Path"], facts["Query"])
	}
	wantSession(t, g, b)
	b.shot("10-demo-app")
}

// 2. Registration from the login page's link logs the new user in, on the
// way to where they were going, and stores the account.
func TestBrowserRegister(t *testing.T) {
	g := startGate(t)
	b := newBrowser(t)

	b.open(g.base + target)
	wantLoginPage(t, b, target)
	if status := b.click(`a[href^="/auth/register"]`); status != 200 {
		t.Errorf("the register page answered %d", status)
	}
	if loc := b.location(); loc.Path != "/auth/register" {
		t.Fatalf("the link leads to %s, want /auth/register", loc.RequestURI())
	}
	if got := b.value("input[name=redirect]"); got != target {
		t.Errorf("the register form's redirect field holds %q, want %q", got, target)
	}
	readable(t, b.pageText(), "Create an account", "Username", "Email", "Password", "At least 8 characters")
	b.shot("03-register")

	const password = "a long enough secret"
	b.fill("#username", "bob")
	b.fill("#email", "bob@example.com")
	b.fill("#password", password)
	if status := b.click(submit); status != 200 {
		t.Errorf("the page after registering answered %d", status)
	}
	wantUpstream(t, b, target, "bob", "bob@example.com")
	token := wantSession(t, g, b)

	var email, hash, userhash string
	err := g.db.QueryRow(`SELECT email, password_hash, userhash FROM authgate.users WHERE username = 'bob'`).
		Scan(&email, &hash, &userhash)
	if err != nil {
		t.Fatalf("the account is not in authgate.users: %v", err)
	}
	if email != "bob@example.com" {
		t.Errorf("stored email %q", email)
	}
	if !strings.HasPrefix(hash, "$argon2id$") || strings.Contains(hash, password) {
		t.Errorf("stored password hash %q is not an argon2id PHC string", hash)
	}
	if !strings.HasPrefix(token, userhash+".") {
		t.Errorf("the session is not the new account's (token of %s, account %s)", token[:32], userhash)
	}
}

// 3. The whole reset by mailed code, in the browser: the old password stops
// working, the new one works, the old sessions end, and the user comes back
// to the page the gate sent them from.
func TestBrowserPasswordReset(t *testing.T) {
	const oldPassword, newPassword = "the old password", "the brand new password"
	g := startGate(t)
	g.register("carol", oldPassword, "carol@example.com")
	oldSession := g.login("carol", oldPassword)
	oldHash := g.passwordHash("carol")
	b := newBrowser(t)

	b.open(g.base + target)
	wantLoginPage(t, b, target)
	if status := b.click(`a[href^="/auth/reset"]`); status != 200 {
		t.Errorf("the reset page answered %d", status)
	}
	if loc := b.location(); loc.Path != "/auth/reset" || loc.Query().Get("redirect") != target {
		t.Fatalf("the browser is at %s, want the reset page with redirect=%s", loc.RequestURI(), target)
	}
	readable(t, b.pageText(), "Reset your password", "Enter your username", "Mail me a code")
	b.shot("04-reset-request")

	b.fill("#username", "carol")
	if status := b.click(submit); status != 200 {
		t.Errorf("asking for a code answered %d", status)
	}
	if !b.has("#otp") || !b.has("#password") {
		t.Fatalf("the page does not ask for the code and a new password:\n%s", b.pageText())
	}
	readable(t, b.pageText(), "6-digit code", "Code from the mail", "New password")
	b.shot("05-reset-code")

	to, body := g.newestMail()
	if !strings.Contains(to, "carol@example.com") {
		t.Errorf("the code was mailed to %q", to)
	}
	b.fill("#otp", otpFrom(t, body))
	b.fill("#password", newPassword)
	if status := b.click(submit); status != 200 {
		t.Errorf("setting the new password answered %d", status)
	}
	if h := b.text("h1"); h != "Password changed" {
		t.Fatalf("after the code the page says %q:\n%s", h, b.pageText())
	}
	readable(t, b.pageText(), "Your password was changed", "Log in with the new password")
	b.shot("06-password-changed")

	if hash := g.passwordHash("carol"); hash == oldHash || !strings.HasPrefix(hash, "$argon2id$") {
		t.Errorf("the stored hash did not change to a new argon2id hash: %q", hash)
	}
	if g.sessionExists(oldSession) {
		t.Errorf("the session from before the reset still lives in Redis")
	}

	if status := b.click(`a[href^="/auth/login"]`); status != 200 {
		t.Errorf("the login page answered %d", status)
	}
	wantLoginPage(t, b, target)
	b.fill("#username", "carol")
	b.fill("#password", oldPassword)
	if status := b.click(submit); status != 401 {
		t.Errorf("the old password answered %d, want 401", status)
	}
	if got := b.text("#error"); got != "Wrong username or password." {
		t.Errorf("the old password: the page says %q", got)
	}
	b.fill("#password", newPassword)
	if status := b.click(submit); status != 200 {
		t.Errorf("the new password answered %d", status)
	}
	wantUpstream(t, b, target, "carol", "carol@example.com")
	wantSession(t, g, b)
}

// 4. Logout asks first (a GET changes nothing), then ends the session in
// the browser and in Redis.
func TestBrowserLogout(t *testing.T) {
	g := startGate(t)
	g.register("dave", "dave's password", "")
	b := newBrowser(t)

	b.open(g.base + "/hello")
	wantLoginPage(t, b, "/hello")
	b.fill("#username", "dave")
	b.fill("#password", "dave's password")
	b.click(submit)
	wantUpstream(t, b, "/hello", "dave", "")
	token := wantSession(t, g, b)

	if status := b.click(`a[href="/auth/logout"]`); status != 200 {
		t.Errorf("the logout page answered %d", status)
	}
	wantAt(t, b, "/auth/logout")
	readable(t, b.pageText(), "You are logged in as dave", "Log out")
	if !b.has(submit) {
		t.Fatalf("the logout page has no button:\n%s", b.pageText())
	}
	if !g.sessionExists(token) {
		t.Fatalf("opening the logout page ended the session")
	}
	b.shot("07-logout-confirm")

	if status := b.click(submit); status != 200 {
		t.Errorf("logging out answered %d", status)
	}
	if h := b.text("h1"); h != "Logged out" {
		t.Errorf("after logging out the page says %q", h)
	}
	readable(t, b.pageText(), "You are logged out.", "Log in again")
	b.shot("08-logged-out")
	if b.cookie(g.base, cookieName) != nil {
		t.Errorf("the browser still has the session cookie")
	}
	if g.sessionExists(token) {
		t.Errorf("the session is still in Redis (key %s)", g.sessionKey(token))
	}
	if keys := g.sessionKeys(); len(keys) != 0 {
		t.Errorf("sessions left in Redis: %v", keys)
	}

	b.open(g.base + "/hello")
	wantLoginPage(t, b, "/hello")
}

// 5. A login form posted from another site is refused with a page that
// says why, and logs nobody in, although the password is right.
func TestBrowserForeignPost(t *testing.T) {
	const password = "erin's password"
	g := startGate(t)
	g.register("erin", password, "")
	site := foreignSite(t, g.base+"/auth/login", "erin", password)
	b := newBrowser(t)

	b.open(site.URL)
	if status := b.click("#send"); status != 403 {
		t.Errorf("the foreign post answered %d, want 403", status)
	}
	wantAt(t, b, "/auth/login")
	if h := b.text("h1"); h != "Request refused" {
		t.Errorf("the refusal's heading is %q", h)
	}
	readable(t, b.pageText(), "This form was sent from another site, so it was refused.", "Go to log in")
	b.shot("09-foreign-post-refused")
	if b.cookie(g.base, cookieName) != nil {
		t.Errorf("the foreign post set a session cookie")
	}
	if keys := g.sessionKeys(); len(keys) != 0 {
		t.Errorf("the foreign post stored sessions: %v", keys)
	}

	// The same credentials from the gate's own page do log in.
	if status := b.click(`a[href="/auth/login"]`); status != 200 {
		t.Errorf("the login page answered %d", status)
	}
	b.fill("#username", "erin")
	b.fill("#password", password)
	b.click(submit)
	wantUpstream(t, b, "/", "erin", "")
	wantSession(t, g, b)
}

// 6. The account page, reached from the app: two browsers signed in as one
// user; from one, the other's session is ended, and the other's next
// navigation lands on the login page.
func TestBrowserAccountEndsAnotherSession(t *testing.T) {
	const password = "frank's password"
	g := startGate(t)
	g.register("frank", password, "frank@example.com")
	b := newBrowser(t)
	other := b.otherDevice()
	for _, br := range []*browser{other, b} {
		br.open(g.base + "/hello")
		wantLoginPage(t, br, "/hello")
		br.fill("#username", "frank")
		br.fill("#password", password)
		br.click(submit)
		wantUpstream(t, br, "/hello", "frank", "frank@example.com")
	}
	mine, theirs := wantSession(t, g, b), wantSession(t, g, other)
	if mine == theirs {
		t.Fatal("the two browsers share one session")
	}

	if status := b.click(`a[href="/auth/account"]`); status != 200 {
		t.Errorf("the account page answered %d", status)
	}
	wantAt(t, b, "/auth/account")
	readable(t, b.pageText(), "Your account", "Signed in as frank", "Sessions", "This session", "Chrome on Linux",
		"127.0.0.1", "Started", "Last seen", "just now", "End this session", "End all other sessions",
		"Current password", "New password", "Change password", "Email address", "Change email address",
		"Second factors", "Authenticator app", "Recovery codes", "Passkeys", "Log out")
	if n := run(b, "counting the sessions", chromedp.Evaluate[int](`document.querySelectorAll("li.session").length`)); n != 2 {
		t.Fatalf("the page lists %d sessions, want 2:\n%s", n, b.pageText())
	}
	if got := b.text("li.session.current h3"); !strings.Contains(got, "This session") {
		t.Errorf("the first session is %q, not marked as this one", got)
	}
	// Nothing on the page is wider than a phone's screen.
	b.do("setting the phone viewport", phone.emulate())
	if wide := run(b, "measuring the page", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); wide > int(phone.width) {
		t.Errorf("at %d px the page is %d px wide: it scrolls sideways", phone.width, wide)
	}
	b.shot("11-account")

	if status := b.click("li.session:not(.current) button"); status != 200 {
		t.Errorf("ending the other session answered %d", status)
	}
	wantAt(t, b, "/auth/account?done=ended")
	readable(t, b.pageText(), "The session was ended.")
	if n := run(b, "counting the sessions", chromedp.Evaluate[int](`document.querySelectorAll("li.session").length`)); n != 1 {
		t.Errorf("the page lists %d sessions after ending one, want 1", n)
	}
	b.shot("12-account-session-ended")
	if g.sessionExists(theirs) {
		t.Errorf("the ended session is still in Redis (key %s)", g.sessionKey(theirs))
	}
	if !g.sessionExists(mine) {
		t.Errorf("ending the other session ended this one")
	}

	other.open(g.base + "/hello")
	wantLoginPage(t, other, "/hello")
	b.open(g.base + "/hello")
	wantUpstream(t, b, "/hello", "frank", "frank@example.com")
}
