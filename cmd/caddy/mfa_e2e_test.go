package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// appCode is the code an authenticator app shows for key (as the page
// shows it) at t.
func appCode(t *testing.T, key string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(strings.ReplaceAll(key, " ", ""), at,
		totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatalf("computing a code from the key %q: %v", key, err)
	}
	return code
}

var recoveryCode = regexp.MustCompile(`\b[0-9a-z]{5}-[0-9a-z]{5}\b`)

// 6. An authenticator app enrolled from its page (the key read off the
// page, the code computed as an app would), then asked for after the
// password at the next login; the upstream learns how the login was made.
// The real clock is the binary's: a code of the next time step is one
// step ahead of the server's now, and never one used before.
func TestBrowserSecondFactor(t *testing.T) {
	const password = "fern's long password"
	g := startGate(t)
	g.register("fern", password, "fern@example.com")
	b := newBrowser(t)

	b.open(g.base + "/hello")
	wantLoginPage(t, b, "/hello")
	b.fill("#username", "fern")
	b.fill("#password", password)
	b.click(submit)
	wantUpstream(t, b, "/hello", "fern", "fern@example.com")
	if m := b.demoFacts()["Remote-Auth-Methods"]; m != "pwd" {
		t.Errorf("after a password login the demo app received Remote-Auth-Methods %q, want pwd", m)
	}

	if status := b.open(g.base + "/auth/account/totp?redirect=/hello"); status != 200 {
		t.Fatalf("the enrolment page answered %d", status)
	}
	readable(t, b.pageText(), "Authenticator app", "add an account by scanning this code", "Or type in this key",
		"Enter the 6-digit code the app shows")
	if !b.has(`img.qr[src^="data:image/png;base64,"]`) {
		t.Fatal("the page shows no QR code")
	}
	key := b.text("#totp-secret")
	b.shot("mfa-1-enrol")

	b.fill("#totp", appCode(t, key, time.Now()))
	if status := b.click(submit); status != 200 {
		t.Fatalf("confirming the code answered %d:\n%s", status, b.pageText())
	}
	readable(t, b.pageText(), "Authenticator app on", "Keep these recovery codes somewhere safe", "shown only now")
	codes := recoveryCode.FindAllString(b.text("#recovery-codes"), -1)
	if len(codes) != 10 {
		t.Fatalf("the page shows %d recovery codes: %q", len(codes), b.text("#recovery-codes"))
	}
	b.shot("mfa-2-recovery-codes")
	var confirmed bool
	var recovery int
	err := g.db.QueryRow(`SELECT t.confirmed_at IS NOT NULL, (SELECT count(*) FROM authgate.recovery_codes r WHERE r.user_id = u.id)
		FROM authgate.totp t JOIN authgate.users u ON u.id = t.user_id WHERE u.username = 'fern'`).Scan(&confirmed, &recovery)
	if err != nil || !confirmed || recovery != 10 {
		t.Fatalf("stored: confirmed %v, %d recovery codes, %v", confirmed, recovery, err)
	}
	b.click("#continue")
	wantUpstream(t, b, "/hello", "fern", "fern@example.com")
	if m := b.demoFacts()["Remote-Auth-Methods"]; m != "pwd,otp" {
		t.Errorf("after enrolment the demo app received Remote-Auth-Methods %q, want pwd,otp", m)
	}

	b.open(g.base + "/auth/logout")
	b.click(submit)
	if keys := g.sessionKeys(); len(keys) != 0 {
		t.Fatalf("sessions left after logging out: %v", keys)
	}

	b.open(g.base + target)
	wantLoginPage(t, b, target)
	b.fill("#username", "fern")
	b.fill("#password", password)
	if status := b.click(submit); status != 200 {
		t.Fatalf("the password answered %d", status)
	}
	if h := b.text("h1"); h != "Two-step verification" {
		t.Fatalf("after the password the page says %q:\n%s", h, b.pageText())
	}
	readable(t, b.pageText(), "Code from your authenticator app", "Verify", "Use a recovery code")
	if b.cookie(g.base, cookieName) != nil || len(g.sessionKeys()) != 0 {
		t.Fatal("a session started before the second factor")
	}
	if got := b.value("input[name=redirect]"); got != target {
		t.Errorf("the second step's redirect field holds %q, want %q", got, target)
	}
	b.shot("mfa-3-second-factor")

	next := time.Now().Add(30 * time.Second)
	near := []string{appCode(t, key, next.Add(-90*time.Second)), appCode(t, key, next.Add(-60*time.Second)),
		appCode(t, key, next.Add(-30*time.Second)), appCode(t, key, next), appCode(t, key, next.Add(30*time.Second))}
	wrong := "000000"
	for n := 1; slices.Contains(near, wrong); n++ {
		wrong = fmt.Sprintf("%06d", n*137)
	}
	b.fill("#totp", wrong)
	if status := b.click(submit); status != 401 {
		t.Errorf("a wrong code answered %d, want 401", status)
	}
	if got := b.text("#error"); !strings.HasPrefix(got, "That code is wrong") {
		t.Errorf("after a wrong code the page says %q", got)
	}
	b.shot("mfa-4-second-factor-error")

	b.fill("#totp", appCode(t, key, time.Now().Add(30*time.Second)))
	if status := b.click(submit); status != 200 {
		t.Fatalf("the right code answered %d:\n%s", status, b.pageText())
	}
	wantUpstream(t, b, target, "fern", "fern@example.com")
	if m := b.demoFacts()["Remote-Auth-Methods"]; m != "pwd,otp" {
		t.Errorf("after the second step the demo app received Remote-Auth-Methods %q, want pwd,otp", m)
	}
	wantSession(t, g, b)
}
