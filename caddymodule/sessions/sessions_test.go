package sessions

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const alice = "0123456789abcdef0123456789abcdef"

func newStore(t testing.TB, cfg Config) (*Store, *redis.Client) {
	t.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	cfg.Prefix = testenv.Prefix(t)
	return New(rdb, cfg), rdb
}

func TestCreateLookupDelete(t *testing.T) {
	s, rdb := newStore(t, Config{TTL: time.Hour, MaxPerUser: 10})
	token, sess, err := s.Create(t.Context(), Session{UserID: 7, Userhash: alice, Username: "alice", Email: "a@x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(token) != TokenLen || !strings.HasPrefix(token, alice+".") {
		t.Fatalf("token %q", token)
	}
	got, err := s.Lookup(t.Context(), token)
	if err != nil || got.UserID != 7 || got.Username != "alice" || got.ID != sess.ID {
		t.Fatalf("lookup: %+v, %v", got, err)
	}
	ttl := rdb.PTTL(t.Context(), s.sessionKey(alice, sess.ID)).Val()
	if ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("session key TTL %s", ttl)
	}
	for _, tc := range []struct{ name, token string }{
		{"empty", ""},
		{"short", "x"},
		{"one character more", token + "x"},
		{"the userhash in capitals", strings.ToUpper(token[:32]) + token[32:]},
		{"another secret", alice + "." + strings.Repeat("A", 43)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Lookup(t.Context(), tc.token); !errors.Is(err, ErrNotFound) {
				t.Fatalf("lookup %q: %v", tc.token, err)
			}
		})
	}
	if err := s.Delete(t.Context(), token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(t.Context(), token); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if n := rdb.Exists(t.Context(), s.indexKey(alice)).Val(); n != 0 {
		if m := rdb.ZCard(t.Context(), s.indexKey(alice)).Val(); m != 0 {
			t.Fatalf("index keeps %d entries", m)
		}
	}
}

func TestMaxPerUserAndRevoke(t *testing.T) {
	s, rdb := newStore(t, Config{TTL: time.Hour, MaxPerUser: 3})
	// Distinct start times, which decide which sessions are the oldest.
	now := time.Now()
	s.now = func() time.Time { return now }
	var tokens []string
	for range 5 {
		tok, _, err := s.Create(t.Context(), Session{UserID: 1, Userhash: alice, Username: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
		now = now.Add(time.Millisecond)
	}
	for i, tok := range tokens {
		_, err := s.Lookup(t.Context(), tok)
		if live := err == nil; live != (i >= 2) {
			t.Errorf("session %d live=%v", i, live)
		}
	}
	list, err := s.List(t.Context(), alice)
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %d, %v", len(list), err)
	}
	keep, _ := s.Lookup(t.Context(), tokens[4])
	n, err := s.RevokeUser(t.Context(), alice, keep.ID)
	if err != nil || n != 2 {
		t.Fatalf("revoke: %d, %v", n, err)
	}
	if _, err := s.Lookup(t.Context(), tokens[3]); !errors.Is(err, ErrNotFound) {
		t.Fatal("revoked session still live")
	}
	if _, err := s.Lookup(t.Context(), tokens[4]); err != nil {
		t.Fatal("kept session ended")
	}
	if n, _ := s.RevokeUser(t.Context(), alice, ""); n != 1 {
		t.Fatalf("revoke all ended %d", n)
	}
	if keys := rdb.Keys(t.Context(), s.cfg.Prefix+":*session:*").Val(); len(keys) != 0 {
		t.Fatalf("keys left: %v", keys)
	}
}

// The idle timeout slides, but only writes once a quarter of the window has
// passed; the absolute TTL still ends the session.
func TestIdleSliding(t *testing.T) {
	s, rdb := newStore(t, Config{TTL: 2 * time.Hour, Idle: time.Hour, MaxPerUser: 10})
	now := time.Now()
	s.now = func() time.Time { return now }
	token, sess, err := s.Create(t.Context(), Session{UserID: 1, Userhash: alice, Username: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	key := s.sessionKey(alice, sess.ID)
	if ttl := rdb.PTTL(t.Context(), key).Val(); ttl > time.Hour {
		t.Fatalf("idle session lives %s", ttl)
	}
	// Fresh: no refresh write.
	rdb.PExpire(t.Context(), key, 50*time.Minute)
	if _, err := s.Lookup(t.Context(), token); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(t.Context(), key).Val(); ttl > 50*time.Minute {
		t.Fatalf("refreshed too early: %s", ttl)
	}
	// Over a quarter of the window used: slid back to the full hour.
	rdb.PExpire(t.Context(), key, 40*time.Minute)
	if _, err := s.Lookup(t.Context(), token); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(t.Context(), key).Val(); ttl < 59*time.Minute {
		t.Fatalf("not slid: %s", ttl)
	}
	// Past the absolute lifetime the record is refused even if the key lives.
	now = now.Add(2*time.Hour + time.Second)
	if _, err := s.Lookup(t.Context(), token); !errors.Is(err, ErrNotFound) {
		t.Fatalf("past session_ttl: %v", err)
	}
}

// The cache serves what it validated, forgets a user's sessions when told,
// and never stores a read that raced with an invalidation.
func TestCache(t *testing.T) {
	c := newCache(2, time.Minute)
	now := time.Now()
	sess := Session{UserID: 1, Userhash: alice, Expires: now.Add(time.Hour).Unix()}
	k1, k2, k3 := [32]byte{1}, [32]byte{2}, [32]byte{3}

	c.put(k1, sess, c.gen.Load(), now)
	if _, ok := c.get(k1, now); ok {
		t.Fatal("used while the subscription is not live")
	}
	c.reset(true)
	gen := c.gen.Load()
	c.put(k1, sess, gen, now)
	if got, ok := c.get(k1, now); !ok || got.UserID != 1 {
		t.Fatal("not cached")
	}
	if _, ok := c.get(k1, now.Add(2*time.Minute)); ok {
		t.Fatal("served past its age")
	}
	if _, ok := c.get(k1, now.Add(2*time.Hour)); ok {
		t.Fatal("served past the session's expiry")
	}

	stale := c.gen.Load()
	c.dropUser(alice)
	if _, ok := c.get(k1, now); ok {
		t.Fatal("served after dropUser")
	}
	c.put(k2, sess, stale, now) // read before the invalidation
	if _, ok := c.get(k2, now); ok {
		t.Fatal("stored a read that raced with an invalidation")
	}

	gen = c.gen.Load()
	c.put(k1, sess, gen, now)
	c.put(k2, sess, gen, now)
	c.put(k3, sess, gen, now) // over the size: not stored
	if _, ok := c.get(k3, now); ok || len(c.entries) != 2 {
		t.Fatalf("size bound not kept: %d entries", len(c.entries))
	}
	c.sweep(now.Add(2 * time.Minute))
	if len(c.entries) != 0 || len(c.byUser) != 0 {
		t.Fatalf("sweep left %d entries, %d users", len(c.entries), len(c.byUser))
	}
	c.put(k1, sess, c.gen.Load(), now)
	c.reset(false)
	if _, ok := c.get(k1, now); ok || len(c.entries) != 0 {
		t.Fatal("entries survived a lost subscription")
	}
}
