package passkeys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/passkeys/passkeystest"
	"github.com/authgate/authgate/caddymodule/store"
	"github.com/authgate/authgate/caddymodule/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	origin  = "https://app.example.com"
	ip      = "192.0.2.7"
	session = "session-of-alice"
)

var (
	alice = accounts.User{ID: 1, Userhash: "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", Username: "alice", Canonical: "alice"}
	bob   = accounts.User{ID: 2, Userhash: "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2", Username: "bob", Canonical: "bob"}
)

// fixture is a Service over fakes, for the site at origin, and a browser
// with a software authenticator showing that site.
type fixture struct {
	svc        *Service
	rp         *RP
	creds      *fakeCreds
	ceremonies *fakeCeremonies
	counts     *counts
	key        *passkeystest.Authenticator
	logs       *observer.ObservedLogs
}

// refusedFor fails the test unless the last refusal logged says why.
func (f *fixture) refusedFor(t *testing.T, why string) {
	t.Helper()
	refusals := f.logs.FilterMessage("passkey refused").All()
	if len(refusals) == 0 {
		t.Fatalf("no refusal logged, want one for %q", why)
	}
	fields := refusals[len(refusals)-1].ContextMap()
	if said := fmt.Sprint(fields["error"], " / ", fields["detail"]); !strings.Contains(said, why) {
		t.Errorf("refused for %q, want %q", said, why)
	}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	rp, err := NewRP(origin, "", "Example")
	if err != nil || rp.Unavailable() != "" {
		t.Fatalf("NewRP: %v %q", err, rp.Unavailable())
	}
	core, logs := observer.New(zap.InfoLevel)
	f := &fixture{logs: logs, rp: rp, creds: &fakeCreds{}, ceremonies: &fakeCeremonies{}, counts: &counts{},
		key: passkeystest.New(origin)}
	f.svc = New(Config{Credentials: f.creds, Ceremonies: f.ceremonies, Accounts: fakeAccounts{1: alice, 2: bob},
		Metrics: f.counts, Enrolled: f.counts.enrolled, Removed: f.counts.removed, Logger: zap.New(core)})
	return f
}

func asJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// beginRegistration starts adding a passkey and returns the authenticator's
// answer, not yet sent.
func (f *fixture) beginRegistration(t *testing.T, u accounts.User, sessionID string) []byte {
	t.Helper()
	creation, err := f.svc.BeginRegistration(context.Background(), f.rp, u, sessionID, "  My laptop ")
	if err != nil {
		t.Fatalf("BeginRegistration: %v", err)
	}
	resp, err := f.key.Create(asJSON(t, creation))
	if err != nil {
		t.Fatalf("the authenticator: %v", err)
	}
	return resp.JSON()
}

// register adds a passkey to u's account and returns it.
func (f *fixture) register(t *testing.T, u accounts.User, sessionID string) Passkey {
	t.Helper()
	p, _, err := f.svc.FinishRegistration(context.Background(), f.rp, u, sessionID, f.beginRegistration(t, u, sessionID), ip)
	if err != nil {
		t.Fatalf("FinishRegistration: %v", err)
	}
	return p
}

// beginLogin starts a discoverable sign-in and returns the options and
// the ticket.
func (f *fixture) beginLogin(t *testing.T) ([]byte, string) {
	t.Helper()
	assertion, ticket, err := f.svc.BeginLogin(context.Background(), f.rp)
	if err != nil {
		t.Fatalf("BeginLogin: %v", err)
	}
	if !ValidTicket(ticket) {
		t.Fatalf("ticket %q is no ticket", ticket)
	}
	return asJSON(t, assertion), ticket
}

// answer is the authenticator's answer with the credential id (nil: its
// first).
func (f *fixture) answer(t *testing.T, options []byte, id []byte) *passkeystest.Response {
	t.Helper()
	resp, err := f.key.Get(options, id)
	if err != nil {
		t.Fatalf("the authenticator: %v", err)
	}
	return resp
}

func TestRegisterThenSignIn(t *testing.T) {
	f := newFixture(t)
	p := f.register(t, alice, session)
	stored := f.creds.get(t, p.ID)
	if stored.UserID != alice.ID || stored.Name != "My laptop" || len(stored.PublicKey) == 0 ||
		stored.Transports[0] != "internal" || stored.Flags&0x04 == 0 {
		t.Fatalf("stored %+v, want alice's passkey named My laptop, with its key, transport and UV flag", stored)
	}
	if f.ceremonies.count() != 0 {
		t.Errorf("%d ceremonies left after registration", f.ceremonies.count())
	}
	if got := f.counts.eventList(); got != "[enrolled alice "+ip+" webauthn]" {
		t.Errorf("told %s", got)
	}
	f.counts.events = nil
	// The options ask for a discoverable credential with user verification.
	creation, err := f.svc.BeginRegistration(context.Background(), f.rp, alice, "another", "Phone")
	if err != nil {
		t.Fatal(err)
	}
	sel := creation.Response.AuthenticatorSelection
	if sel.ResidentKey != "required" || sel.UserVerification != "required" || creation.Response.RelyingParty.ID != "app.example.com" {
		t.Errorf("registration options: resident key %q, user verification %q, rp %q", sel.ResidentKey, sel.UserVerification, creation.Response.RelyingParty.ID)
	}
	if len(creation.Response.CredentialExcludeList) != 1 || !bytes.Equal(creation.Response.CredentialExcludeList[0].CredentialID, p.ID) {
		t.Errorf("the options do not exclude the passkey alice has: %+v", creation.Response.CredentialExcludeList)
	}

	// What the neighbours make of an enrolment (recovery codes) comes back.
	_, codes, err := f.svc.FinishRegistration(context.Background(), f.rp, bob, "session-of-bob", f.beginRegistration(t, bob, "session-of-bob"), ip)
	if err != nil || len(codes) != 2 {
		t.Fatalf("bob's registration: codes %v, %v", codes, err)
	}

	options, ticket := f.beginLogin(t)
	u, err := f.svc.FinishLogin(context.Background(), f.rp, ticket, f.answer(t, options, f.key.Credentials[0].ID).JSON(), ip)
	if err != nil || u.ID != alice.ID {
		t.Fatalf("FinishLogin = %v, %v; want alice", u.Username, err)
	}
	if after := f.creds.get(t, p.ID); after.SignCount != 1 || after.LastUsed.IsZero() {
		t.Errorf("after sign-in: count %d, last used %v; want 1 and a time", after.SignCount, after.LastUsed)
	}
	if n := f.counts.get("webauthn/success"); n != 1 {
		t.Errorf("metrics %v", f.counts.byKey)
	}
	if n, _ := f.svc.Count(context.Background(), alice.ID); n != 1 {
		t.Errorf("Count = %d, want 1", n)
	}
}

func TestRegistrationRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// do tampers, then finishes the ceremony; it returns the error.
		do   func(t *testing.T, f *fixture) error
		want error
		why  string // the refusal's reason, in the log
	}{
		{"the same answer twice", func(t *testing.T, f *fixture) error {
			resp := f.beginRegistration(t, alice, session)
			if _, _, err := f.svc.FinishRegistration(ctx, f.rp, alice, session, resp, ip); err != nil {
				t.Fatalf("the first answer: %v", err)
			}
			return only2(f.svc.FinishRegistration(ctx, f.rp, alice, session, resp, ip))
		}, ErrNoCeremony, ""},
		{"an expired ceremony", func(t *testing.T, f *fixture) error {
			resp := f.beginRegistration(t, alice, session)
			f.ceremonies.expire()
			return only2(f.svc.FinishRegistration(ctx, f.rp, alice, session, resp, ip))
		}, ErrNoCeremony, ""},
		{"another session of the user", func(t *testing.T, f *fixture) error {
			resp := f.beginRegistration(t, alice, session)
			return only2(f.svc.FinishRegistration(ctx, f.rp, alice, "another session", resp, ip))
		}, ErrNoCeremony, ""},
		{"another user", func(t *testing.T, f *fixture) error {
			resp := f.beginRegistration(t, alice, session)
			return only2(f.svc.FinishRegistration(ctx, f.rp, bob, session, resp, ip))
		}, ErrNoCeremony, ""},
		{"a page of another site", func(t *testing.T, f *fixture) error {
			f.key.Origin = "https://app.example.com.evil.example"
			return only2(f.svc.FinishRegistration(ctx, f.rp, alice, session, f.beginRegistration(t, alice, session), ip))
		}, ErrRefused, "Error validating origin"},
		{"no user verification", func(t *testing.T, f *fixture) error {
			f.key.UserVerified = false
			return only2(f.svc.FinishRegistration(ctx, f.rp, alice, session, f.beginRegistration(t, alice, session), ip))
		}, ErrRefused, "User verification required"},
		{"an answer to another challenge", func(t *testing.T, f *fixture) error {
			early := f.beginRegistration(t, alice, session)
			f.beginRegistration(t, alice, session) // replaces the first ceremony
			return only2(f.svc.FinishRegistration(ctx, f.rp, alice, session, early, ip))
		}, ErrRefused, "Error validating challenge"},
		{"a credential id another account has", func(t *testing.T, f *fixture) error {
			resp := f.beginRegistration(t, alice, session)
			var sent struct{ RawID string }
			_ = json.Unmarshal(resp, &sent)
			id, _ := DecodeID(sent.RawID)
			f.creds.list = append(f.creds.list, Passkey{UserID: bob.ID, ID: id, Name: "bob's"})
			return only2(f.svc.FinishRegistration(ctx, f.rp, alice, session, resp, ip))
		}, ErrRefused, "already registered"},
		{"no JSON", func(t *testing.T, f *fixture) error {
			f.beginRegistration(t, alice, session)
			return only2(f.svc.FinishRegistration(ctx, f.rp, alice, session, []byte("{not json"), ip))
		}, ErrRefused, "Parse error"},
		{"an oversized answer", func(t *testing.T, f *fixture) error {
			f.beginRegistration(t, alice, session)
			return only2(f.svc.FinishRegistration(ctx, f.rp, alice, session, bytes.Repeat([]byte(" "), MaxResponse+1), ip))
		}, ErrRefused, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			before := len(f.creds.list)
			err := tc.do(t, f)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if n, _ := f.creds.Count(ctx, alice.ID); n != 0 && tc.name != "the same answer twice" {
				t.Errorf("alice has %d passkeys after a refused registration", n)
			} else if len(f.creds.list) > before+1 {
				t.Errorf("%d passkeys stored", len(f.creds.list))
			}
			if tc.why != "" {
				f.refusedFor(t, tc.why)
			}
			if tc.want == ErrRefused && f.counts.get("webauthn/invalid") != 1 {
				t.Errorf("metrics %v, want one refused registration", f.counts.byKey)
			}
		})
	}
}

func only[T any](_ T, err error) error { return err }

func only2[T, U any](_ T, _ U, err error) error { return err }

func TestRegistrationLimits(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, passkeyName string
		have              int
		want              error
	}{
		{"a name of spaces", "   ", 0, ErrBadName},
		{"a name with a control character", "my\x00key", 0, ErrBadName},
		{"a name with a right-to-left override", "yek\u202eym", 0, ErrBadName},
		{"a name too long", strings.Repeat("é", MaxName+1), 0, ErrBadName},
		{"the longest name", strings.Repeat("é", MaxName), 0, nil},
		{"one passkey too many", "Phone", MaxPerUser, ErrTooMany},
		{"the last passkey allowed", "Phone", MaxPerUser - 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			for i := range tc.have {
				f.creds.list = append(f.creds.list, Passkey{UserID: alice.ID, ID: []byte{byte(i + 1)}, Name: "old"})
			}
			_, err := f.svc.BeginRegistration(ctx, f.rp, alice, session, tc.passkeyName)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if want := map[bool]int{true: 1, false: 0}[tc.want == nil]; f.ceremonies.count() != want {
				t.Errorf("%d ceremonies stored, want %d", f.ceremonies.count(), want)
			}
		})
	}
}

func TestSignInRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		do   func(t *testing.T, f *fixture, alices Passkey) error
		want error
		why  string // the refusal's reason, in the log
	}{
		{"the same answer twice", func(t *testing.T, f *fixture, _ Passkey) error {
			options, ticket := f.beginLogin(t)
			resp := f.answer(t, options, nil).JSON()
			if _, err := f.svc.FinishLogin(ctx, f.rp, ticket, resp, ip); err != nil {
				t.Fatalf("the first answer: %v", err)
			}
			return only(f.svc.FinishLogin(ctx, f.rp, ticket, resp, ip))
		}, ErrNoCeremony, ""},
		{"an expired ceremony", func(t *testing.T, f *fixture, _ Passkey) error {
			options, ticket := f.beginLogin(t)
			f.ceremonies.expire()
			return only(f.svc.FinishLogin(ctx, f.rp, ticket, f.answer(t, options, nil).JSON(), ip))
		}, ErrNoCeremony, ""},
		{"another browser's ticket", func(t *testing.T, f *fixture, _ Passkey) error {
			options, _ := f.beginLogin(t)
			other, _ := NewTicket()
			return only(f.svc.FinishLogin(ctx, f.rp, other, f.answer(t, options, nil).JSON(), ip))
		}, ErrNoCeremony, ""},
		{"a ticket of the wrong shape", func(t *testing.T, f *fixture, _ Passkey) error {
			options, ticket := f.beginLogin(t)
			return only(f.svc.FinishLogin(ctx, f.rp, ticket+"x", f.answer(t, options, nil).JSON(), ip))
		}, ErrNoCeremony, ""},
		{"a page of another site", func(t *testing.T, f *fixture, _ Passkey) error {
			options, ticket := f.beginLogin(t)
			f.key.Origin = "http://app.example.com" // the same host, another origin
			return only(f.svc.FinishLogin(ctx, f.rp, ticket, f.answer(t, options, nil).JSON(), ip))
		}, ErrRefused, "Error validating origin"},
		{"no user verification", func(t *testing.T, f *fixture, _ Passkey) error {
			options, ticket := f.beginLogin(t)
			f.key.UserVerified = false
			return only(f.svc.FinishLogin(ctx, f.rp, ticket, f.answer(t, options, nil).JSON(), ip))
		}, ErrRefused, "User verification required"},
		{"another user's credential under alice's user handle", func(t *testing.T, f *fixture, _ Passkey) error {
			bobs := f.register(t, bob, "session-of-bob")
			options, ticket := f.beginLogin(t)
			resp := f.answer(t, options, bobs.ID)
			resp.UserHandle = []byte(alice.Userhash) // not signed: the server must compare it
			return only(f.svc.FinishLogin(ctx, f.rp, ticket, resp.JSON(), ip))
		}, ErrRefused, "User handle and User ID do not match"},
		{"alice's credential id with a signature of bob's key", func(t *testing.T, f *fixture, alices Passkey) error {
			f.register(t, bob, "session-of-bob")
			options, ticket := f.beginLogin(t)
			resp := f.answer(t, options, alices.ID)
			resp.Signature = f.key.Sign(f.key.Credentials[1], resp.AuthenticatorData, resp.ClientDataJSON)
			return only(f.svc.FinishLogin(ctx, f.rp, ticket, resp.JSON(), ip))
		}, ErrRefused, "assertion signature"},
		{"authenticator data changed after signing", func(t *testing.T, f *fixture, _ Passkey) error {
			options, ticket := f.beginLogin(t)
			resp := f.answer(t, options, nil)
			resp.AuthenticatorData[len(resp.AuthenticatorData)-1] += 5 // a higher counter
			return only(f.svc.FinishLogin(ctx, f.rp, ticket, resp.JSON(), ip))
		}, ErrRefused, "assertion signature"},
		{"a registration's answer", func(t *testing.T, f *fixture, _ Passkey) error {
			options, ticket := f.beginLogin(t)
			resp := f.answer(t, options, nil)
			resp.ClientDataJSON = passkeystest.ClientData("webauthn.create", challengeOf(t, options), origin)
			resp.Signature = f.key.Sign(f.key.Credentials[0], resp.AuthenticatorData, resp.ClientDataJSON)
			return only(f.svc.FinishLogin(ctx, f.rp, ticket, resp.JSON(), ip))
		}, ErrRefused, "ceremony type"},
		{"a removed passkey", func(t *testing.T, f *fixture, alices Passkey) error {
			options, ticket := f.beginLogin(t)
			if err := f.svc.Remove(ctx, alice, alices.ID, ip); err != nil {
				t.Fatal(err)
			}
			return only(f.svc.FinishLogin(ctx, f.rp, ticket, f.answer(t, options, nil).JSON(), ip))
		}, ErrRefused, "no such passkey"},
		{"a counter that went backwards", func(t *testing.T, f *fixture, _ Passkey) error {
			options, ticket := f.beginLogin(t)
			if _, err := f.svc.FinishLogin(ctx, f.rp, ticket, f.answer(t, options, nil).JSON(), ip); err != nil {
				t.Fatalf("the first sign-in: %v", err)
			}
			f.key.Credentials[0].SignCount = 0 // a copy made before that sign-in
			options, ticket = f.beginLogin(t)
			return only(f.svc.FinishLogin(ctx, f.rp, ticket, f.answer(t, options, nil).JSON(), ip))
		}, ErrCloned, ""},
		{"a suspended passkey, its counter right again", func(t *testing.T, f *fixture, alices Passkey) error {
			if err := f.creds.Suspend(ctx, alices.ID); err != nil {
				t.Fatal(err)
			}
			options, ticket := f.beginLogin(t)
			return only(f.svc.FinishLogin(ctx, f.rp, ticket, f.answer(t, options, nil).JSON(), ip))
		}, ErrRefused, "suspended"},
		{"no JSON", func(t *testing.T, f *fixture, _ Passkey) error {
			_, ticket := f.beginLogin(t)
			return only(f.svc.FinishLogin(ctx, f.rp, ticket, []byte(`{"id": 5}`), ip))
		}, ErrRefused, "Parse error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			alices := f.register(t, alice, session)
			err := tc.do(t, f, alices)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.why != "" {
				f.refusedFor(t, tc.why)
			}
			// An answer ends its ceremony; one with a ticket of no
			// ceremony leaves the right ticket's alone.
			left := 0
			if strings.Contains(tc.name, "ticket") {
				left = 1
			}
			if f.ceremonies.count() != left {
				t.Errorf("%d ceremonies left, want %d", f.ceremonies.count(), left)
			}
			if tc.want == ErrCloned {
				if p := f.creds.get(t, alices.ID); p.Suspended.IsZero() || p.SignCount != 1 {
					t.Errorf("after a counter went backwards: suspended %v, count %d; want suspended, count kept at 1", p.Suspended, p.SignCount)
				}
				if f.counts.get("webauthn/cloned") != 1 {
					t.Errorf("metrics %v", f.counts.byKey)
				}
			}
		})
	}
}

func challengeOf(t *testing.T, options []byte) string {
	t.Helper()
	var o struct {
		PublicKey struct{ Challenge string }
	}
	if err := json.Unmarshal(options, &o); err != nil || o.PublicKey.Challenge == "" {
		t.Fatalf("options without a challenge: %s", options)
	}
	return o.PublicKey.Challenge
}

func TestSignInWithTheStoreDown(t *testing.T) {
	f := newFixture(t)
	f.register(t, alice, session)
	options, ticket := f.beginLogin(t)
	f.creds.down = true
	_, err := f.svc.FinishLogin(context.Background(), f.rp, ticket, f.answer(t, options, nil).JSON(), ip)
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, ErrRefused) {
		t.Fatalf("got %v, want the store's outage (a 503), not a refusal", err)
	}
}

func TestSecondFactor(t *testing.T) {
	ctx := context.Background()
	const ticket = "pending-login-of-alice"
	f := newFixture(t)
	alices := f.register(t, alice, session)
	f.register(t, bob, "session-of-bob")

	t.Run("any of the user's passkeys, without user verification", func(t *testing.T) {
		assertion, err := f.svc.BeginSecondFactor(ctx, f.rp, alice, ticket)
		if err != nil {
			t.Fatal(err)
		}
		if allowed := assertion.Response.AllowedCredentials; len(allowed) != 1 || !bytes.Equal(allowed[0].CredentialID, alices.ID) {
			t.Fatalf("allowed credentials %+v, want alice's only", allowed)
		}
		f.key.UserVerified = false
		defer func() { f.key.UserVerified = true }()
		if err := f.svc.FinishSecondFactor(ctx, f.rp, alice, ticket, f.answer(t, asJSON(t, assertion), alices.ID).JSON(), ip); err != nil {
			t.Fatalf("FinishSecondFactor: %v", err)
		}
	})
	t.Run("another user's passkey", func(t *testing.T) {
		assertion, err := f.svc.BeginSecondFactor(ctx, f.rp, alice, ticket)
		if err != nil {
			t.Fatal(err)
		}
		options := asJSON(t, assertion)
		// The authenticator would not offer it; a forged answer does.
		resp, err := f.key.Get([]byte(strings.Replace(string(options), `"allowCredentials"`, `"ignored"`, 1)), f.key.Credentials[1].ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.svc.FinishSecondFactor(ctx, f.rp, alice, ticket, resp.JSON(), ip); !errors.Is(err, ErrRefused) {
			t.Fatalf("got %v, want ErrRefused", err)
		}
	})
	t.Run("a ceremony of another pending login", func(t *testing.T) {
		assertion, err := f.svc.BeginSecondFactor(ctx, f.rp, alice, ticket)
		if err != nil {
			t.Fatal(err)
		}
		resp := f.answer(t, asJSON(t, assertion), alices.ID).JSON()
		if err := f.svc.FinishSecondFactor(ctx, f.rp, alice, "another", resp, ip); !errors.Is(err, ErrNoCeremony) {
			t.Fatalf("got %v, want ErrNoCeremony", err)
		}
	})
	t.Run("a user without passkeys", func(t *testing.T) {
		carol := accounts.User{ID: 3, Userhash: "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3", Username: "carol"}
		if _, err := f.svc.BeginSecondFactor(ctx, f.rp, carol, ticket); !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
	})
}

func TestRenameAndRemove(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	p := f.register(t, alice, session)
	for _, tc := range []struct {
		name string
		do   func() error
		want error
	}{
		{"rename", func() error { return f.svc.Rename(ctx, alice, p.ID, " Work key ") }, nil},
		{"rename with a bad name", func() error { return f.svc.Rename(ctx, alice, p.ID, "\t") }, ErrBadName},
		{"rename another user's", func() error { return f.svc.Rename(ctx, bob, p.ID, "mine now") }, ErrNotFound},
		{"remove another user's", func() error { return f.svc.Remove(ctx, bob, p.ID, ip) }, ErrNotFound},
		{"remove", func() error { return f.svc.Remove(ctx, alice, p.ID, ip) }, nil},
		{"remove again", func() error { return f.svc.Remove(ctx, alice, p.ID, ip) }, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.name == "rename" && f.creds.get(t, p.ID).Name != "Work key" {
				t.Errorf("name %q, want Work key", f.creds.get(t, p.ID).Name)
			}
		})
	}
	if got := f.counts.eventList(); got != "[enrolled alice "+ip+" webauthn removed alice "+ip+" webauthn]" {
		t.Errorf("told %s", got)
	}
}

func TestNewRP(t *testing.T) {
	for _, tc := range []struct {
		name, origin, cookieDomain string
		id, reason                 string
		err                        string
	}{
		{"a host name over HTTPS", "https://app.example.com", "", "app.example.com", "", ""},
		{"a port", "https://app.example.com:8443", "", "app.example.com", "", ""},
		{"localhost over HTTP", "http://localhost:8080", "", "localhost", "", ""},
		{"a cookie domain", "https://app.example.com", "example.com", "example.com", "", ""},
		{"a cookie domain with a dot", "https://app.example.com", ".Example.com", "example.com", "", ""},
		{"no host name", "", "", "", ReasonNoHost, ""},
		{"an IP address", "https://127.0.0.1:8443", "", "", ReasonNoHost, ""},
		{"an IPv6 address", "https://[::1]:8443", "", "", ReasonNoHost, ""},
		{"a host name over HTTP", "http://app.example.com", "", "", ReasonNotHTTPS, ""},
		{"a cookie domain of another site", "https://app.example.com", "example.org", "", "", "authgate: cookie_domain:"},
		{"a cookie domain that only ends alike", "https://badexample.com", "example.com", "", "", "authgate: cookie_domain:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp, err := NewRP(tc.origin, tc.cookieDomain, "Example")
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error starting %q", err, tc.err)
				}
				return
			}
			if err != nil || rp.ID() != tc.id || rp.Unavailable() != tc.reason {
				t.Fatalf("got id %q, unavailable %q, %v; want %q, %q", rp.ID(), rp.Unavailable(), err, tc.id, tc.reason)
			}
			if tc.reason != "" {
				if _, _, err := New(Config{}).BeginLogin(context.Background(), rp); !errors.Is(err, ErrUnavailable) {
					t.Errorf("BeginLogin on a site without passkeys: %v", err)
				}
			}
		})
	}
}
