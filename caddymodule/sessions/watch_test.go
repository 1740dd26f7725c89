package sessions

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authgate/authgate/caddymodule/testenv"
)

// A panic in the watcher is logged, drops the cache, and keeps it off until
// the watcher has subscribed again; Watch returns, its pings ended, when its
// context ends.
func TestWatchRecoversFromPanic(t *testing.T) {
	rs := testenv.OwnRedis(t)
	opts, err := redis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	s := New(rdb, Config{Prefix: testenv.Prefix(t), TTL: time.Hour, MaxPerUser: 10, CacheSize: 10})
	// The watcher freezes Redis before it panics: nothing can then turn the
	// cache back on until the test resumes it.
	var armed atomic.Bool
	s.onMessage = func(string) {
		if armed.CompareAndSwap(true, false) {
			if err := rs.Pause(); err != nil {
				t.Error(err)
			}
			panic("injected")
		}
	}
	core, logs := observer.New(zap.InfoLevel)
	count := func(msg string) int { return logs.FilterMessage(msg).Len() }
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, zap.New(core))
	}()
	testenv.WaitFor(t, "the cache on", func() bool { return count("session cache on") == 1 && s.CacheLive() })

	token, sess, err := s.Create(t.Context(), Session{UserID: 1, Userhash: alice, Username: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(t.Context(), token); err != nil {
		t.Fatal(err)
	}
	// Ended without an announcement: only the cache still knows it.
	rdb.Del(t.Context(), s.sessionKey(alice, sess.ID))
	if _, err := s.Lookup(t.Context(), token); err != nil {
		t.Fatalf("not served from the cache: %v", err)
	}

	armed.Store(true)
	if err := rdb.Publish(t.Context(), s.channel(), "another-user").Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the panic logged", func() bool {
		return count("session cache watcher panicked: cache off until it has subscribed again") == 1
	})
	if s.CacheLive() {
		t.Fatal("cache on after the panic, without a subscription")
	}
	if err := rs.Resume(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the cache on again", func() bool { return count("session cache on") == 2 && s.CacheLive() })
	if _, err := s.Lookup(t.Context(), token); !errors.Is(err, ErrNotFound) {
		t.Fatalf("served from a cache that outlived the panic: %v", err)
	}

	cancel()
	testenv.WaitFor(t, "Watch to return", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	if s.CacheLive() {
		t.Fatal("cache on after Watch returned")
	}
}

// countGets counts the GET commands a client sends: a lookup served from
// the cache sends none.
type countGets struct{ n *atomic.Int64 }

func (h countGets) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countGets) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h countGets) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "get" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

// The stores of two instances over one deployment, each with its cache on:
// sessions ended on one (a logout, a revocation of all of a user's
// sessions, an eviction beyond max_sessions) are refused by the other at its
// very next lookup, although it served them from memory just before. Users
// of several hash slots, so that on a cluster some live on another node
// than the announcements' channel.
func TestCacheAcrossInstances(t *testing.T) {
	testenv.EachTopology(t, testCacheAcrossInstances)
}

func testCacheAcrossInstances(t *testing.T, tp testenv.Topology) {
	cfg := Config{Prefix: testenv.Prefix(t), TTL: time.Hour, MaxPerUser: 2, CacheSize: 100}
	a, rdbA := newStore(t, tp, cfg)
	b, _ := newStore(t, tp, cfg)
	var gets atomic.Int64
	rdbA.AddHook(countGets{&gets})
	// Distinct start times, which decide which sessions are the oldest.
	var tick atomic.Int64
	start := time.Now()
	b.now = func() time.Time { return start.Add(time.Duration(tick.Add(1)) * time.Millisecond) }
	ctx, cancel := context.WithCancel(t.Context())
	var watchers sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		watchers.Wait()
	})
	for _, s := range []*Store{a, b} {
		watchers.Go(func() { s.Watch(ctx, zap.NewNop()) })
	}
	testenv.WaitFor(t, "both caches on", func() bool { return a.CacheLive() && b.CacheLive() })

	create := func(userhash string) string {
		t.Helper()
		token, _, err := b.Create(t.Context(), Session{UserID: 1, Userhash: userhash, Username: "u"})
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	// cached looks token up on A until A serves it from memory.
	cached := func(token string) {
		t.Helper()
		for range 2 {
			if _, err := a.Lookup(t.Context(), token); err != nil {
				t.Fatalf("A: lookup of a live session: %v", err)
			}
		}
		before := gets.Load()
		if _, err := a.Lookup(t.Context(), token); err != nil || gets.Load() != before {
			t.Fatalf("A: not served from its cache (%v, %d GETs)", err, gets.Load()-before)
		}
	}
	refused := func(how, token string) {
		t.Helper()
		if _, err := a.Lookup(t.Context(), token); !errors.Is(err, ErrNotFound) {
			t.Errorf("A: a session ended on B (%s) still served: %v", how, err)
		}
	}
	for i := range 8 {
		userhash := fmt.Sprintf("%032x", i+1)
		// A logout.
		token := create(userhash)
		cached(token)
		if err := b.Delete(t.Context(), token); err != nil {
			t.Fatal(err)
		}
		refused("logout", token)

		// Every session of the user.
		t1, t2 := create(userhash), create(userhash)
		cached(t1)
		cached(t2)
		if n, err := b.RevokeUser(t.Context(), userhash, ""); err != nil || n != 2 {
			t.Fatalf("RevokeUser = %d, %v", n, err)
		}
		refused("revocation", t1)
		refused("revocation", t2)

		// The oldest beyond max_sessions.
		t1, t2 = create(userhash), create(userhash)
		cached(t1)
		create(userhash)
		refused("eviction", t1)
		if _, err := a.Lookup(t.Context(), t2); err != nil {
			t.Errorf("A: a session within max_sessions refused: %v", err)
		}
	}
	if ks := keys(t, a, rdbA, ":*session:*"); len(ks) != 8*2 {
		t.Errorf("%d session records left, want 2 of each of 8 users", len(ks))
	}
}
