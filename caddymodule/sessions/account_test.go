package sessions

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/testenv"
)

const bob = "fedcba9876543210fedcba9876543210"

// create starts a session or fails the test.
func create(t *testing.T, s *Store, userhash, email string) (string, Session) {
	t.Helper()
	token, sess, err := s.Create(t.Context(), Session{UserID: 1, Userhash: userhash, Username: "u", Email: email})
	if err != nil {
		t.Fatal(err)
	}
	return token, sess
}

// End ends exactly the session named, and only under the user it is asked
// for: an ID of another user's session, or of none, ends nothing.
func TestEnd(t *testing.T) {
	for _, tc := range []struct {
		name     string
		userhash string
		id       func(mine, bobs Session) string
		want     error
		mineLive bool
	}{
		{name: "own session", userhash: alice, id: func(m, _ Session) string { return m.ID }},
		{name: "another user's session", userhash: alice, id: func(_, b Session) string { return b.ID },
			want: ErrNotFound, mineLive: true},
		{name: "no such session", userhash: alice, id: func(Session, Session) string { return strings.Repeat("a", idLen) },
			want: ErrNotFound, mineLive: true},
		{name: "upper-case id", userhash: alice, id: func(m, _ Session) string { return strings.ToUpper(m.ID) },
			want: ErrNotFound, mineLive: true},
		{name: "a key pattern for an id", userhash: alice, id: func(Session, Session) string { return "*" },
			want: ErrNotFound, mineLive: true},
		{name: "the id with more after it", userhash: alice, id: func(m, _ Session) string { return m.ID + ":x" },
			want: ErrNotFound, mineLive: true},
		{name: "a malformed userhash", userhash: "alice", id: func(m, _ Session) string { return m.ID },
			want: ErrNotFound, mineLive: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, rdb := newStore(t, Config{TTL: time.Hour, MaxPerUser: 10})
			mineToken, mine := create(t, s, alice, "")
			keepToken, _ := create(t, s, alice, "")
			bobToken, bobs := create(t, s, bob, "")

			if err := s.End(t.Context(), tc.userhash, tc.id(mine, bobs)); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("End: %v, want %v", err, tc.want)
			}
			for _, c := range []struct {
				what  string
				token string
				live  bool
			}{{"the session named", mineToken, tc.mineLive}, {"the user's other session", keepToken, true}, {"bob's session", bobToken, true}} {
				if _, err := s.Lookup(t.Context(), c.token); (err == nil) != c.live {
					t.Errorf("%s: lookup %v, want live=%v", c.what, err, c.live)
				}
			}
			if n := rdb.ZCard(t.Context(), s.indexKey(alice)).Val(); (n == 2) != tc.mineLive {
				t.Errorf("alice's index holds %d sessions", n)
			}
			if n := rdb.ZCard(t.Context(), s.indexKey(bob)).Val(); n != 1 {
				t.Errorf("bob's index holds %d sessions", n)
			}
		})
	}
}

// twoInstances returns two stores on one Redis and prefix, each with its
// cache on and listening, as two Caddy instances are.
func twoInstances(t *testing.T) (a, b *Store) {
	t.Helper()
	a, _ = newStore(t, Config{TTL: time.Hour, MaxPerUser: 10, CacheSize: 100})
	b = New(a.rdb, a.cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	for _, s := range []*Store{a, b} {
		go func() {
			defer func() { done <- struct{}{} }()
			s.Watch(ctx, zap.NewNop())
		}()
	}
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
	})
	testenv.WaitFor(t, "both caches on", func() bool { return a.CacheLive() && b.CacheLive() })
	return a, b
}

// A session ended on one instance is refused by the other at once, although
// the other had it in its cache.
func TestEndAcrossInstances(t *testing.T) {
	a, b := twoInstances(t)
	token, sess := create(t, a, alice, "")
	for range 2 { // the first fills b's cache, the second is served from it
		if _, err := b.Lookup(t.Context(), token); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.End(t.Context(), alice, sess.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lookup(t.Context(), token); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the other instance still serves the ended session: %v", err)
	}
}

// SetEmail changes every live session of the user, on every instance at
// once, keeps their lifetimes, brings no ended session back and leaves other
// users alone.
func TestSetEmail(t *testing.T) {
	a, b := twoInstances(t)
	first, firstSess := create(t, a, alice, "old@example.com")
	second, _ := create(t, a, alice, "old@example.com")
	ended, endedSess := create(t, a, alice, "old@example.com")
	bobs, _ := create(t, a, bob, "bob@example.com")
	for _, token := range []string{first, second, bobs} {
		if _, err := b.Lookup(t.Context(), token); err != nil { // cached on b
			t.Fatal(err)
		}
	}
	if err := a.End(t.Context(), alice, endedSess.ID); err != nil {
		t.Fatal(err)
	}
	key := a.sessionKey(alice, firstSess.ID)
	ttl := a.rdb.PTTL(t.Context(), key).Val()

	if err := a.SetEmail(t.Context(), alice, "new@example.com"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Store{a, b} {
		for _, token := range []string{first, second} {
			got, err := s.Lookup(t.Context(), token)
			if err != nil || got.Email != "new@example.com" || got.Username != "u" || got.UserID != 1 {
				t.Errorf("after SetEmail: %+v, %v", got, err)
			}
		}
		if got, err := s.Lookup(t.Context(), bobs); err != nil || got.Email != "bob@example.com" {
			t.Errorf("bob's session: %+v, %v", got, err)
		}
		if _, err := s.Lookup(t.Context(), ended); !errors.Is(err, ErrNotFound) {
			t.Errorf("the ended session came back: %v", err)
		}
	}
	if after := a.rdb.PTTL(t.Context(), key).Val(); after <= 0 || after > ttl {
		t.Errorf("the session's lifetime went from %s to %s", ttl, after)
	}

	// An empty address is none: the record leaves it out.
	if err := a.SetEmail(t.Context(), alice, ""); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Lookup(t.Context(), first); err != nil || got.Email != "" {
		t.Errorf("after removing the address: %+v, %v", got, err)
	}
	if record := a.rdb.Get(t.Context(), key).Val(); strings.Contains(record, `"e"`) {
		t.Errorf("record %s", record)
	}
	if err := a.SetEmail(t.Context(), "not-a-userhash", "x@example.com"); err == nil {
		t.Error("SetEmail took a malformed userhash")
	}
}
