package sessions

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

	token, _, err := s.Create(t.Context(), Session{UserID: 1, Userhash: alice, Username: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(t.Context(), token); err != nil {
		t.Fatal(err)
	}
	// Ended without an announcement: only the cache still knows it.
	key, field, _ := Where(s.cfg.Prefix, token)
	rdb.HDel(t.Context(), key, field)
	if _, err := s.Lookup(t.Context(), token); err != nil {
		t.Fatalf("not served from the cache: %v", err)
	}

	armed.Store(true)
	if err := rdb.SPublish(t.Context(), s.channel(), "another-user").Err(); err != nil {
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

// watch runs s.Watch until the test ends, logging into the returned
// observer, and waits until the cache is on.
func watch(t *testing.T, s *Store) *observer.ObservedLogs {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, zap.New(core))
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	testenv.WaitFor(t, "the cache on", s.CacheLive)
	return logs
}

// The cache is off while the node of its subscription is gone, starts
// empty when it is back, and so never serves a session ended meanwhile.
func TestWatchOffWhileRedisIsGone(t *testing.T) {
	rs := testenv.OwnRedis(t)
	opts, err := redis.ParseURL(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	s := New(rdb, Config{Prefix: testenv.Prefix(t), TTL: time.Hour, MaxPerUser: 10, CacheSize: 10})
	logs := watch(t, s)
	token, _, err := s.Create(t.Context(), Session{UserID: 1, Userhash: alice, Username: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(t.Context(), token); err != nil {
		t.Fatal(err)
	}
	if len(s.cache.entries) != 1 {
		t.Fatal("not cached")
	}
	for _, tc := range []struct {
		name string
		gone func() error
		back func() error
	}{
		{"stopped", rs.Stop, rs.Start},
		{"hung", rs.Pause, rs.Resume},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ons := logs.FilterMessage("session cache on").Len()
			if err := tc.gone(); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, "the cache off", func() bool { return !s.CacheLive() })
			if _, err := s.Lookup(t.Context(), token); err == nil {
				t.Fatal("served while Redis is gone")
			}
			if err := tc.back(); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, "the cache on again", func() bool {
				return s.CacheLive() && logs.FilterMessage("session cache on").Len() > ons
			})
			if len(s.cache.entries) != 0 {
				t.Fatal("the cache came back with entries")
			}
		})
	}
	if n := logs.FilterMessage("session cache off: subscription lost, every request asks Redis").Len(); n != 2 {
		t.Fatalf("%d warnings of the cache going off", n)
	}
}

// Every change to a user's sessions reaches every instance's cache before
// it returns: another instance that served the session from memory a
// moment ago refuses it (or shows the new email) on its very next lookup.
func TestAnnounceReachesEveryCache(t *testing.T) {
	testenv.EachTopology(t, testAnnounceReachesEveryCache)
}

func testAnnounceReachesEveryCache(t *testing.T, tp testenv.Topology) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, a *Store, token string, sess Session)
		gone   bool // the session ended (else: the email changed)
	}{
		{"Delete", func(t *testing.T, a *Store, token string, _ Session) {
			if err := a.Delete(t.Context(), token); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"End", func(t *testing.T, a *Store, _ string, sess Session) {
			if err := a.End(t.Context(), alice, sess.ID); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"RevokeUser", func(t *testing.T, a *Store, _ string, _ Session) {
			if n, err := a.RevokeUser(t.Context(), alice, ""); err != nil || n != 1 {
				t.Fatalf("RevokeUser = %d, %v", n, err)
			}
		}, true},
		{"Create beyond max_sessions", func(t *testing.T, a *Store, _ string, _ Session) {
			a.now = func() time.Time { return time.Now().Add(time.Second) }
			if _, _, err := a.Create(t.Context(), Session{UserID: 1, Userhash: alice, Username: "alice"}); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"SetEmail", func(t *testing.T, a *Store, _ string, _ Session) {
			if err := a.SetEmail(t.Context(), alice, "alice@new.example"); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, rdb := newStore(t, tp, Config{TTL: time.Hour, MaxPerUser: 1, CacheSize: 10})
			b, _ := newStore(t, tp, a.cfg)
			watch(t, a)
			watch(t, b)
			token, sess, err := a.Create(t.Context(), Session{UserID: 1, Userhash: alice, Username: "alice", Email: "alice@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []*Store{a, b} {
				if _, err := s.Lookup(t.Context(), token); err != nil || len(s.cache.entries) != 1 {
					t.Fatalf("not cached: %v", err)
				}
			}
			heardBefore := heardKeys(t, rdb, a.cfg.Prefix)
			tc.change(t, a, token, sess)
			got, err := b.Lookup(t.Context(), token)
			if tc.gone && !errors.Is(err, ErrNotFound) || !tc.gone && (err != nil || got.Email != "alice@new.example") {
				t.Fatalf("the other instance's next lookup: %+v, %v", got, err)
			}
			// Both listeners counted the announcement, as SPUBLISH reached both.
			heard := heardKeys(t, rdb, a.cfg.Prefix)
			if len(heard) != len(heardBefore)+1 {
				t.Fatalf("announcements %v, then %v", heardBefore, heard)
			}
			for key, n := range heard {
				if _, old := heardBefore[key]; !old && n != "2" {
					t.Fatalf("%s = %s, want 2", key, n)
				}
			}
		})
	}
}

// heardKeys returns the announcements' acknowledgement counters.
func heardKeys(t *testing.T, rdb redis.UniversalClient, prefix string) map[string]string {
	t.Helper()
	keys, err := testenv.Keys(t.Context(), rdb, prefix+":heard:*")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, key := range keys {
		out[key] = rdb.Get(t.Context(), key).Val()
	}
	return out
}

// countGets counts the HMGET commands a client sends: a lookup served from
// the cache sends none.
type countGets struct{ n *atomic.Int64 }

func (h countGets) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countGets) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h countGets) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "hmget" {
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
	b.now = func() time.Time { return start.Add(time.Duration(tick.Add(1)) * time.Second) }
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
			t.Fatalf("A: not served from its cache (%v, %d HMGETs)", err, gets.Load()-before)
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
	if stored, err := Stored(t.Context(), rdbA, a.cfg.Prefix); err != nil || len(stored) != 8*2 {
		t.Errorf("%d session records left, want 2 of each of 8 users (%v)", len(stored), err)
	}
}

// On a cluster the caches listen where the announcements' shard channel
// lives: when its slot moves to another master (a failover, with the old
// master still running, or after it died), each watcher turns its cache off
// and subscribes again on the new master, where SPUBLISH counts it again.
func TestWatchFollowsTheChannelsSlot(t *testing.T) {
	c := testenv.OwnCluster(t)
	tp := c.Topology()
	a, rdb := newStore(t, tp, Config{TTL: time.Hour, MaxPerUser: 10, CacheSize: 10})
	b, _ := newStore(t, tp, a.cfg)
	logsA, logsB := watch(t, a), watch(t, b)
	ons := func() int {
		return logsA.FilterMessage("session cache on").Len() + logsB.FilterMessage("session cache on").Len()
	}
	for _, tc := range []struct {
		name string
		move func(t *testing.T, master, replica *testenv.Redis)
		why  string // in the warning of the cache going off
	}{
		{"manual failover", func(t *testing.T, _, replica *testenv.Redis) {
			rc := redis.NewClient(&redis.Options{Addr: replica.Addr()})
			defer rc.Close()
			if err := rc.Do(t.Context(), "CLUSTER", "FAILOVER").Err(); err != nil {
				t.Fatal(err)
			}
		}, "the channel's slot moved"},
		{"master killed", func(t *testing.T, master, _ *testenv.Redis) {
			if err := master.Stop(); err != nil {
				t.Fatal(err)
			}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			token, _, err := a.Create(ctx, Session{UserID: 1, Userhash: alice, Username: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []*Store{a, b} {
				if _, err := s.Lookup(ctx, token); err != nil || len(s.cache.entries) != 1 {
					t.Fatalf("not cached: %v", err)
				}
			}
			master, err := c.MasterOf(ctx, a.channel())
			if err != nil {
				t.Fatal(err)
			}
			replica := replicaOf(t, c, master)
			before, offs := ons(), len(warnings(logsA, logsB))
			tc.move(t, master, replica)
			testenv.WaitFor(t, "both caches off and on again", func() bool {
				return len(warnings(logsA, logsB)) >= offs+2 && ons() >= before+2 && a.CacheLive() && b.CacheLive()
			})
			for _, w := range warnings(logsA, logsB)[offs:] {
				if !strings.Contains(w, tc.why) {
					t.Errorf("the cache went off for %q, want %q", w, tc.why)
				}
			}
			if err := c.WaitHealthy(ctx); err != nil {
				t.Fatal(err)
			}
			if now, err := c.MasterOf(ctx, a.channel()); err != nil || now != replica {
				t.Fatalf("the channel's master is %s (%v), want the replica %s (was %s)", now.Addr(), err, replica.Addr(), master.Addr())
			}
			rc := redis.NewClient(&redis.Options{Addr: replica.Addr()})
			defer rc.Close()
			if n := rc.PubSubShardNumSub(ctx, a.channel()).Val()[a.channel()]; n != 2 {
				t.Fatalf("%d subscribers on the new master, want 2", n)
			}
			heardBefore := heardKeys(t, rdb, a.cfg.Prefix)
			if err := a.Delete(ctx, token); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Lookup(ctx, token); !errors.Is(err, ErrNotFound) {
				t.Fatalf("B after the logout on A: %v", err)
			}
			for key, n := range heardKeys(t, rdb, a.cfg.Prefix) {
				if _, old := heardBefore[key]; !old && n != "2" {
					t.Fatalf("%s = %s, want 2", key, n)
				}
			}
			if !master.Running() {
				if err := master.Start(); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.WaitHealthy(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// warnings returns the errors with which the caches went off.
func warnings(logs ...*observer.ObservedLogs) []string {
	var out []string
	for _, l := range logs {
		for _, e := range l.FilterMessage("session cache off: subscription lost, every request asks Redis").All() {
			out = append(out, fmt.Sprint(e.ContextMap()["error"]))
		}
	}
	return out
}

// replicaOf returns the node of c that replicates master.
func replicaOf(t *testing.T, c *testenv.Cluster, master *testenv.Redis) *testenv.Redis {
	t.Helper()
	for _, node := range c.Nodes {
		if node == master || !node.Running() {
			continue
		}
		rc := redis.NewClient(&redis.Options{Addr: node.Addr()})
		info, err := rc.Info(t.Context(), "replication").Result()
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := strings.Cut(master.Addr(), ":")
		if strings.Contains(info, "role:slave") && strings.Contains(info, "master_port:"+port+"\r\n") {
			return node
		}
	}
	t.Fatalf("no replica of %s", master.Addr())
	return nil
}
