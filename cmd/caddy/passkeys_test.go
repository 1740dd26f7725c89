package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/authgate/authgate/caddymodule/testenv"
)

// virtualAuthenticator gives the browser a platform authenticator, as a
// phone or laptop with a screen lock has: CTAP2, internal, holding
// discoverable credentials and verifying its user, touched at once.
func (b *browser) virtualAuthenticator() webauthn.AuthenticatorID {
	b.t.Helper()
	return run(b, "adding a virtual authenticator", func(ctx context.Context, t *chromedp.Target) (webauthn.AuthenticatorID, error) {
		if _, err := cdp.Call(ctx, t, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return "", err
		}
		res, err := cdp.Call(ctx, t, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
			Options: &webauthn.VirtualAuthenticatorOptions{
				Protocol: webauthn.AuthenticatorProtocolCtap2, Transport: webauthn.AuthenticatorTransportInternal,
				HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
			},
		})
		return res.AuthenticatorID, err
	})
}

// credentials lists what the virtual authenticator holds.
func (b *browser) credentials(id webauthn.AuthenticatorID) []*webauthn.Credential {
	b.t.Helper()
	return run(b, "reading the authenticator", func(ctx context.Context, t *chromedp.Target) ([]*webauthn.Credential, error) {
		res, err := cdp.Call(ctx, t, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: id})
		return res.Credentials, err
	})
}

// textSoFar is the text of the page, or "" while none has loaded.
func (b *browser) textSoFar() string {
	b.t.Helper()
	return run(b, "reading the page", chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
}

// clickAndWait clicks a button whose script goes to another page, and
// waits until the browser is at path.
func (b *browser) clickAndWait(sel, path string) {
	b.t.Helper()
	b.do("clicking "+sel, chromedp.Click(chromedp.CSS(sel)))
	for deadline := time.Now().Add(testenv.Patience); b.location().Path != path; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.t.Fatalf("after clicking %s the browser is at %s, not %s; the page says:\n%s", sel, b.location(), path, b.textSoFar())
		}
	}
	b.do("waiting for the page", chromedp.WaitReady(chromedp.CSS("body")))
}

// 6. A passkey added from the page signs in without a username, and is
// removed from the page.
func TestBrowserPasskey(t *testing.T) {
	g := startGate(t, withHost("localhost"))
	g.register("alice", "correct horse battery", "alice@example.com")
	b := newBrowser(t)
	authenticator := b.virtualAuthenticator()

	// Log in with the password, on the way to the passkeys page.
	b.open(g.base + "/auth/account/passkeys")
	wantLoginPage(t, b, "/auth/account/passkeys")
	if !b.has("#passkey-button") {
		t.Fatal("the login page offers no passkey sign-in")
	}
	b.fill("#username", "alice")
	b.fill("#password", "correct horse battery")
	b.click(submit)
	wantAt(t, b, "/auth/account/passkeys")
	readable(t, b.pageText(), "Passkeys", "You have no passkeys yet.", "Add a passkey")
	if b.has("#passkey-pw") {
		t.Errorf("a login a moment old is asked for the password again")
	}

	b.fill("#passkey-name", "Chromium")
	b.do("clicking Add a passkey", chromedp.Click(chromedp.CSS("#passkey-add button[type=submit]")))
	// A first second factor brings recovery codes, shown this once.
	testenv.WaitFor(t, "the recovery codes", func() bool { return b.has("#passkey-codes:not([hidden])") })
	codes := run(b, "reading the codes", chromedp.Evaluate[[]string](`[...document.querySelectorAll("#passkey-codes li")].map(li => li.innerText)`))
	if len(codes) != 10 || b.has("#passkey-add:not([hidden])") {
		t.Errorf("the page shows recovery codes %q, want 10 in place of the form", codes)
	}
	b.shot("22-passkey-recovery-codes")
	b.click("#passkey-codes-done")
	readable(t, b.pageText(), "Your passkey was added.")
	readable(t, b.pageText(), "Chromium", "Never")
	var registered int64
	if err := g.db.QueryRow(`SELECT p.sign_count FROM authgate.passkeys p JOIN authgate.users u ON u.id = p.user_id
		WHERE u.username = 'alice' AND p.name = 'Chromium'`).Scan(&registered); err != nil {
		t.Fatalf("the stored passkey: %v", err)
	}
	held := b.credentials(authenticator)
	if len(held) != 1 || !held[0].IsResidentCredential || held[0].RpID != "localhost" {
		t.Fatalf("the authenticator holds %+v, want one discoverable credential for localhost", held)
	}
	b.shot("20-passkeys")

	// Log out, and sign in with the passkey, no username typed.
	b.open(g.base + "/auth/logout")
	b.click(submit)
	if c := b.cookie(g.base, cookieName); c != nil && c.Value != "" {
		t.Fatalf("still a session cookie after logout")
	}
	b.open(g.base + target)
	wantLoginPage(t, b, target)
	b.shot("21-login-with-passkey")
	b.clickAndWait("#passkey-button", "/hello")
	wantUpstream(t, b, target, "alice", "alice@example.com")
	token := wantSession(t, g, b)
	if record := g.storedSession(token); !slices.Equal(record.AMR, []string{"webauthn"}) {
		t.Errorf("the session's amr %v, want [webauthn]", record.AMR)
	}
	var count int64
	var used bool
	if err := g.db.QueryRow(`SELECT sign_count, last_used_at IS NOT NULL FROM authgate.passkeys WHERE name = 'Chromium'`).Scan(&count, &used); err != nil ||
		count <= registered || !used {
		t.Errorf("after the sign-in: count %d (at registration %d), used %v (%v); want a higher count, and a time", count, registered, used, err)
	}

	// With the password, the passkey is the second step.
	b.open(g.base + "/auth/logout")
	b.click(submit)
	b.open(g.base + target)
	b.fill("#username", "alice")
	b.fill("#password", "correct horse battery")
	b.click(submit)
	testenv.WaitFor(t, "the passkey option of the second step", func() bool { return b.has("#passkey-second:not([hidden])") })
	readable(t, b.pageText(), "Two-step verification", "Use a passkey", "Use a recovery code")
	b.shot("23-second-step-passkey")
	b.clickAndWait("#passkey-second-button", "/hello")
	wantUpstream(t, b, target, "alice", "alice@example.com")
	token = wantSession(t, g, b)
	if record := g.storedSession(token); !slices.Equal(record.AMR, []string{"pwd", "webauthn"}) {
		t.Errorf("the session's amr %v, want [pwd webauthn]", record.AMR)
	}

	// Remove it: a login a moment old needs no password for that.
	b.open(g.base + "/auth/account/passkeys")
	readable(t, b.pageText(), "Chromium")
	b.click(`form input[name=action][value=remove] ~ button`)
	readable(t, b.pageText(), "The passkey was removed.", "You have no passkeys yet.")
	var left int
	if err := g.db.QueryRow(`SELECT count(*) FROM authgate.passkeys`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d passkeys left (%v)", left, err)
	}

	// The authenticator still holds it; it signs in no more.
	b.open(g.base + "/auth/logout")
	b.click(submit)
	b.open(g.base + "/auth/login")
	b.do("clicking #passkey-button", chromedp.Click(chromedp.CSS("#passkey-button")))
	testenv.WaitFor(t, "the refusal", func() bool {
		return b.has("#passkey-error:not([hidden])")
	})
	if got := b.text("#passkey-error"); !strings.Contains(got, "not accepted") {
		t.Errorf("a removed passkey: the page says %q", got)
	}
	if c := b.cookie(g.base, cookieName); c != nil && c.Value != "" {
		t.Errorf("a removed passkey signed in")
	}
}
