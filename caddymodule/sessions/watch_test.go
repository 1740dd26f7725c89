package sessions

import (
	"context"
	"errors"
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
