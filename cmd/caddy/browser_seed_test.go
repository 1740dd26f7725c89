package main

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// seedClientPage is a small front-end of our own that talks to its API the
// way the users dialect's own Next.js front-end does (issue 12): API base
// /api/; login by POST /api/login/ with {"password", "username"} as JSON,
// taken only if success === "true" and data.message holds userhash and
// ssid, which it keeps in cookies of its own; later API calls carry
// Authorization: Basic base64(userhash:ssid); registration status taken as
// open for true, "true" or "1"; register reads a truthy success and
// USER_INSERT_OK (or ERROR_LOGIN_WITH_PASSWORD); reset by GET
// requestotp?username= (data.message.userhash and .reqid), then POST
// modifypassword as JSON. Its functions are what the test calls.
const seedClientPage = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Seed client</title></head>
<body>
<h1>Seed client</h1>
<p id="status">loading</p>
<script>
"use strict";
const API = "/api/";

function cookie(name) {
	for (const part of document.cookie.split("; ")) {
		const i = part.indexOf("=");
		if (i > 0 && part.slice(0, i) === name) return decodeURIComponent(part.slice(i + 1));
	}
	return "";
}

async function call(method, path, body, withSession) {
	const init = {method: method, headers: {}};
	if (body !== undefined) {
		init.headers["Content-Type"] = "application/json";
		init.body = JSON.stringify(body);
	}
	if (withSession) {
		init.headers["Authorization"] = "Basic " + btoa(cookie("userhash") + ":" + cookie("ssid"));
	}
	const resp = await fetch(API + path, init);
	return {status: resp.status, body: await resp.json()};
}

function say(text) {
	document.getElementById("status").textContent = text;
	return text;
}

window.client = {
	async registrationOpen() {
		const {body} = await call("GET", "users/settings/registrationstatus");
		const open = body.data.message;
		return open === true || open === "true" || open === "1";
	},
	async register(username, password, email) {
		const {body} = await call("POST", "users/register", {username: username, password: password, email: email});
		if (body.success && body.data.message === "USER_INSERT_OK") return say("registered");
		if (body.data.message === "ERROR_LOGIN_WITH_PASSWORD") return say("already registered");
		return say("not registered: " + body.data.message);
	},
	async login(username, password) {
		const {body} = await call("POST", "login/", {password: password, username: username});
		const m = body.data && body.data.message;
		if (body.success === "true" && m && m.userhash && m.ssid) {
			document.cookie = "userhash=" + encodeURIComponent(m.userhash) + "; path=/; SameSite=Lax";
			document.cookie = "ssid=" + encodeURIComponent(m.ssid) + "; path=/; SameSite=Lax";
			return say("logged in");
		}
		return say("login refused: " + (typeof m === "string" ? m : JSON.stringify(body)));
	},
	async things() {
		const {status, body} = await call("GET", "things?from=client", undefined, true);
		say("things: " + status);
		return {status: status, user: body.remote_user || "", email: body.remote_email || ""};
	},
	async requestOTP(username) {
		const {body} = await call("GET", "users/requestotp?username=" + encodeURIComponent(username));
		const m = body.data.message;
		say("code requested");
		return {userhash: m.userhash || "", reqid: m.reqid || ""};
	},
	async modifyPassword(userhash, reqid, otp, password) {
		const {body} = await call("POST", "users/modifypassword", {userhash: userhash, reqid: reqid, OTP: otp, password: password});
		return say(body.success === true ? "password changed" : "password not changed: " + body.data.message);
	},
};
say("ready");
</script>
</body>
</html>
`

// jsCall runs client.<call> in the page and waits for its promise.
func jsCall[T any](b *browser, call string) T {
	b.t.Helper()
	return run(b, call, chromedp.Evaluate[T]("client."+call, chromedp.EvalAwaitPromise))
}

// The seed's front-end, in Chromium against the real binary with
// users_api /api: registration status, register, login through
// /api/login/, a call to the app's API with the Basic header that reaches
// it with Remote-User (and never with the token), reset by mailed code,
// and login with the new password.
func TestBrowserSeedClient(t *testing.T) {
	const oldPassword, newPassword = "the seed's old password", "the seed's new password"
	g, app := startSeedGate(t)
	b := newBrowser(t)

	b.open(g.base + "/client/")
	if got := b.text("#status"); got != "ready" {
		t.Fatalf("the front-end says %q", got)
	}
	if !jsCall[bool](b, "registrationOpen()") {
		t.Fatal("the front-end finds registration closed")
	}
	if got := jsCall[string](b, `register("rosa", "`+oldPassword+`", "rosa@example.com")`); got != "registered" {
		t.Fatalf("register: %s", got)
	}
	if got := jsCall[string](b, `register("rosa", "another password", "")`); got != "already registered" {
		t.Fatalf("register again: %s", got)
	}
	oldHash := g.passwordHash("rosa")
	if !strings.HasPrefix(oldHash, "$argon2id$") {
		t.Fatalf("stored hash %q", oldHash)
	}

	if got := jsCall[string](b, `login("rosa", "not the password")`); got != "login refused: INVALID_PASSWORD" {
		t.Fatalf("a wrong password: %s", got)
	}
	if got := jsCall[string](b, `login("rosa", "`+oldPassword+`")`); got != "logged in" {
		t.Fatalf("login: %s", got)
	}
	ssid, userhash := b.pageCookie("ssid"), b.pageCookie("userhash")
	if !strings.HasPrefix(ssid, userhash+".") || !g.sessionExists(ssid) {
		t.Fatalf("the front-end keeps ssid %q, userhash %q; session in Redis: %v", ssid, userhash, g.sessionExists(ssid))
	}
	var dbUserhash string
	if err := g.db.QueryRow(`SELECT userhash FROM authgate.users WHERE username = 'rosa'`).Scan(&dbUserhash); err != nil || dbUserhash != userhash {
		t.Fatalf("the account's userhash %q (%v), the front-end's %q", dbUserhash, err, userhash)
	}

	// The app's API, with the Basic header: first beside the session
	// cookie the login also set, then with the front-end's own cookies
	// and header alone.
	for _, alone := range []bool{false, true} {
		if alone {
			b.deleteCookie(g.base, cookieName)
		}
		got := jsCall[map[string]any](b, "things()")
		if got["status"] != 200.0 || got["user"] != "rosa" || got["email"] != "rosa@example.com" {
			t.Fatalf("the app's API (Basic alone: %v): %v", alone, got)
		}
	}
	if h := app.sawToken(ssid); h != "" {
		t.Fatalf("the app received the session token in %s", h)
	}

	// Reset by mailed code, from the front-end.
	otp := jsCall[map[string]any](b, `requestOTP("rosa")`)
	if otp["userhash"] != userhash || otp["reqid"] == "" {
		t.Fatalf("requestotp: %v", otp)
	}
	to, body := g.newestMail()
	if !strings.Contains(to, "rosa@example.com") {
		t.Fatalf("the code was mailed to %q", to)
	}
	call := `modifyPassword(` + jsString(userhash) + `, ` + jsString(otp["reqid"].(string)) + `, ` + jsString(otpFrom(t, body)) + `, "` + newPassword + `")`
	if got := jsCall[string](b, call); got != "password changed" {
		t.Fatalf("modifypassword: %s", got)
	}
	if hash := g.passwordHash("rosa"); hash == oldHash || !strings.HasPrefix(hash, "$argon2id$") {
		t.Fatalf("the stored hash did not change: %q", hash)
	}
	if g.sessionExists(ssid) {
		t.Fatal("the session from before the reset lives on")
	}
	if got := jsCall[map[string]any](b, "things()"); got["status"] != 401.0 || got["user"] != "" {
		t.Fatalf("the app's API with the ended session: %v", got)
	}

	if got := jsCall[string](b, `login("rosa", "`+oldPassword+`")`); got != "login refused: INVALID_PASSWORD" {
		t.Fatalf("the old password: %s", got)
	}
	if got := jsCall[string](b, `login("rosa", "`+newPassword+`")`); got != "logged in" {
		t.Fatalf("the new password: %s", got)
	}
	newSSID := b.pageCookie("ssid")
	if newSSID == ssid || !g.sessionExists(newSSID) {
		t.Fatalf("after the new login the front-end keeps %q (session in Redis: %v)", newSSID, g.sessionExists(newSSID))
	}
	b.deleteCookie(g.base, cookieName)
	if got := jsCall[map[string]any](b, "things()"); got["status"] != 200.0 || got["user"] != "rosa" {
		t.Fatalf("the app's API after the reset: %v", got)
	}
	if h := app.sawToken(newSSID); h != "" {
		t.Fatalf("the app received the new session token in %s", h)
	}
}

// pageCookie returns the value of a cookie the page's script can read.
func (b *browser) pageCookie(name string) string {
	b.t.Helper()
	return run(b, "reading document.cookie", chromedp.Evaluate[string](
		`decodeURIComponent((document.cookie.split("; ").find(c => c.startsWith(`+jsString(name+"=")+`)) || "=").split("=")[1])`))
}

// deleteCookie removes the browser's cookie of that name for the gate.
func (b *browser) deleteCookie(base, name string) {
	b.t.Helper()
	run(b, "deleting the cookie "+name, func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, t, network.DeleteCookies, network.DeleteCookiesParams{Name: name, URL: base + "/"})
		return chromedp.Void{}, err
	})
	if b.cookie(base, name) != nil {
		b.t.Fatalf("the cookie %s is still there", name)
	}
}
