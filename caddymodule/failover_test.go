package caddymodule

// Failovers under load: two instances (this process's Caddy and the real
// binary beside it) in front of one upstream, while the Redis master of a
// Sentinel group or of a cluster's shard is killed, and while PostgreSQL
// stops and starts again. make test runs one failover of each; make faults
// (-long) several in a row.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/testenv"
)

// upstreamWitness checks every request the upstream gets against what its
// sender knew: the load and the test mark each request X-Load "valid
// <user>" when it carries that user's live session, and anything else when
// not. A request that reaches the upstream without a valid session, or as
// someone else, is a breach.
type upstreamWitness struct {
	mu       sync.Mutex
	valid    int
	breaches []string
}

const loadHeader = "X-Load"

func (w *upstreamWitness) record(r *http.Request) {
	claim, user := r.Header.Get(loadHeader), r.Header.Get("Remote-User")
	w.mu.Lock()
	defer w.mu.Unlock()
	if user == "" || claim != "valid "+user {
		w.breaches = append(w.breaches, fmt.Sprintf("%s %s reached the upstream as %q, sent as %q", r.Method, r.URL.Path, user, claim))
		return
	}
	w.valid++
}

// check fails the test for every breach, and returns how many requests
// with a valid session the upstream got.
func (w *upstreamWitness) check(t testing.TB) int {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, b := range w.breaches {
		if i == 20 {
			t.Errorf("… and %d more", len(w.breaches)-i)
			break
		}
		t.Errorf("breach: %s", b)
	}
	return w.valid
}

// user is an account of a failover test and its session.
type user struct{ name, userhash, ssid string }

// failoverLoad returns the load of a failover test on the instance at base
// ("" for the env's): each user's session, which passes as that user or
// finds the gate closed (503); a forged token and no token, which are
// refused (401) or find the gate closed. Kinds are named "<kind> <label>".
func failoverLoad(label, base string, users []user) []loadKind {
	var kinds []loadKind
	for _, u := range users {
		kinds = append(kinds, loadKind{name: "session " + label, base: base, method: "GET", path: "/app/page",
			header: []string{"Authorization", "Bearer " + u.ssid, loadHeader, "valid " + u.name},
			ok:     func(r reply) bool { return r.status == 200 && r.json["user"] == u.name || r.status == 503 }})
	}
	ssid := users[0].ssid
	refused := func(r reply) bool { return r.status == 401 && r.message() == "PLEASE_LOGIN" || r.status == 503 }
	return append(kinds,
		loadKind{name: "forged " + label, base: base, method: "GET", path: "/app/page", ok: refused,
			header: []string{"Authorization", "Bearer " + ssid[:len(ssid)-1] + flip(ssid[len(ssid)-1]), "Accept", "application/json", loadHeader, "forged"}},
		loadKind{name: "none " + label, base: base, method: "GET", path: "/app/page", ok: refused,
			header: []string{"Accept", "application/json", loadHeader, "none"}},
	)
}

// passesOn tells whether the instance at base lets u's session through as u.
func passesOn(e *env, base string, u user) bool {
	other := *e
	other.base, other.host = base, ""
	r, err := other.try(context.Background(), nil, "GET", "/app/check", nil, "Authorization", "Bearer "+u.ssid, loadHeader, "valid "+u.name)
	return err == nil && r.status == 200 && r.json["user"] == u.name
}

// failoverTopology is a Redis deployment of the test's own and how to fail
// its master over.
type failoverTopology struct {
	tp testenv.Topology
	// victim returns the master to kill, once the instances run and the
	// users have sessions; it may ask for more users (more returns one more)
	// until one lives on it.
	victim func(t *testing.T, e *env, users []user, more func() user) (*testenv.Redis, []user)
	// masters returns the masters now, each to WAIT on for its replica.
	masters func(ctx context.Context) ([]*testenv.Redis, error)
	healthy func(ctx context.Context) error
}

func sentinelFailover(t *testing.T) failoverTopology {
	g := testenv.OwnSentinels(t)
	current := func(ctx context.Context) ([]*testenv.Redis, error) {
		m, err := g.CurrentMaster(ctx)
		return []*testenv.Redis{m}, err
	}
	return failoverTopology{
		tp: g.Topology(),
		victim: func(t *testing.T, _ *env, users []user, _ func() user) (*testenv.Redis, []user) {
			m, err := g.CurrentMaster(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			return m, users
		},
		masters: current,
		healthy: g.WaitHealthy,
	}
}

func clusterFailover(t *testing.T) failoverTopology {
	c := testenv.OwnCluster(t)
	return failoverTopology{
		tp: c.Topology(),
		// The master that holds the instances' subscriptions, so that the
		// caches must go off; and users until one's sessions live there.
		victim: func(t *testing.T, e *env, users []user, more func() user) (*testenv.Redis, []user) {
			ctx := t.Context()
			masters, err := c.Masters(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var victim *testenv.Redis
			most := 0
			for _, m := range masters {
				if n := pubsubClients(t, m); n > most {
					victim, most = m, n
				}
			}
			if victim == nil {
				t.Fatal("no master holds a subscription")
			}
			for range 40 {
				for _, u := range users {
					if m, err := c.MasterOf(ctx, e.prefix+":{"+u.userhash+"}"); err == nil && m == victim {
						return victim, users
					}
				}
				users = append(users, more())
			}
			t.Fatalf("no user's sessions live on the master %s", victim.Addr())
			return nil, nil
		},
		masters: c.Masters,
		healthy: c.WaitHealthy,
	}
}

// pubsubClients counts the subscribed clients of a node.
func pubsubClients(t *testing.T, node *testenv.Redis) int {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: node.Addr()})
	defer rc.Close()
	list, err := rc.ClientList(t.Context()).Result() // no TYPE filter in go-redis's helper: count the flag
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " flags=P ") {
			n++
		}
	}
	return n
}

// The Redis master killed (SIGKILL) under load through two instances, on a
// Sentinel group and on a cluster (a master with a replica): no request
// without a valid session reaches the upstream; meanwhile the gate answers
// a session 503 or lets it pass, nothing else; the caches go off while the
// node that held their subscription is gone; afterwards every session
// written before the failover passes again by itself (they were replicated:
// WAIT 1 before the kill), on both instances, and the caches come back on.
// The times to recover are logged, not asserted.
func TestFaultRedisFailover(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) failoverTopology
	}{
		{"sentinel", sentinelFailover},
		{"cluster", clusterFailover},
	} {
		t.Run(tc.name, func(t *testing.T) { testFailover(t, tc.start(t)) })
	}
}

func testFailover(t *testing.T, ft failoverTopology) {
	e := newEnv(t, options{topology: &ft.tp})
	b, bLog := e.proxyInstance("")
	witness := &upstreamWitness{}
	e.reached.mu.Lock()
	e.reached.record = witness.record
	e.reached.mu.Unlock()
	sessions := activeApp(t).stores.sessions
	const cacheOn, cacheOff = "session cache on", "session cache off"
	testenv.WaitFor(t, "both caches on", func() bool { return sessions.CacheLive() && logged(t, bLog, cacheOn) > 0 })

	next := 0
	more := func() user {
		t.Helper()
		name := fmt.Sprintf("fo%02d", next)
		next++
		e.register(name, name+"-password", "")
		r := e.login(e.client(), name, name+"-password")
		return user{name: name, userhash: r.str("userhash"), ssid: r.str("ssid")}
	}
	users := []user{more(), more()}
	ctx := context.Background()

	for cycle := range scale(1, 3) {
		victim, grown := ft.victim(t, e, users, more)
		users = grown
		// Every session on a replica before the kill.
		masters, err := ft.masters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range masters {
			rc := redis.NewClient(&redis.Options{Addr: m.Addr()})
			acked, err := rc.Do(ctx, "WAIT", 1, testenv.Patience.Milliseconds()).Int()
			rc.Close()
			if err != nil || acked < 1 {
				t.Fatalf("WAIT 1 on %s: %d replicas, %v", m.Addr(), acked, err)
			}
		}
		for _, u := range users {
			if !passesOn(e, e.base, u) || !passesOn(e, b, u) {
				t.Fatalf("%s's session does not pass before the kill", u.name)
			}
		}

		kinds := append(failoverLoad("A", "", users), failoverLoad("B", b, users)...)
		l := e.startLoad(10*time.Millisecond, kinds...)
		l.await(t, "traffic through A", "session A", 200, 10)
		l.await(t, "traffic through B", "session B", 200, 10)

		offA, offB, onA, onB := logged(t, e.logFile, cacheOff), logged(t, bLog, cacheOff), logged(t, e.logFile, cacheOn), logged(t, bLog, cacheOn)
		// The times below are reported for the README (t.Logf), never
		// asserted: every wait is a poll with testenv's generous deadline.
		killed := time.Now()
		if err := victim.Kill(); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, "both caches off", func() bool {
			return logged(t, e.logFile, cacheOff) > offA && logged(t, bLog, cacheOff) > offB
		})
		cachesOff := time.Since(killed)
		waitCtx, cancel := context.WithTimeout(ctx, testenv.Patience)
		err = ft.healthy(waitCtx)
		cancel()
		if err != nil {
			t.Fatalf("no failover: %v", err)
		}
		failedOver := time.Since(killed)
		testenv.WaitFor(t, "every session passing on both instances", func() bool {
			for _, u := range users {
				if !passesOn(e, e.base, u) || !passesOn(e, b, u) {
					return false
				}
			}
			return true
		})
		recovered := time.Since(killed)
		testenv.WaitFor(t, "both caches on again", func() bool {
			return sessions.CacheLive() && logged(t, e.logFile, cacheOn) > onA && logged(t, bLog, cacheOn) > onB
		})
		cachesOn := time.Since(killed)
		l.await(t, "traffic through A after the failover", "session A", 200, 10)
		l.await(t, "traffic through B after the failover", "session B", 200, 10)
		answers := l.finish(t, e)
		if n := logged(t, bLog, "panic"); n > 0 {
			t.Errorf("%d panics in B's log", n)
		}
		t.Logf("cycle %d, %s: master %s killed; caches off after %s; failed over (topology whole) after %s; every session passing on both after %s; caches on again after %s; %d users; 503s A %d, B %d",
			cycle, ft.tp.Name, victim.Addr(), cachesOff.Round(time.Millisecond), failedOver.Round(time.Millisecond),
			recovered.Round(time.Millisecond), cachesOn.Round(time.Millisecond), len(users), answers["session A"][503], answers["session B"][503])

		// Back as a replica, for the next cycle.
		if err := victim.Start(); err != nil {
			t.Fatal(err)
		}
		if cycle+1 < scale(1, 3) {
			waitCtx, cancel := context.WithTimeout(ctx, testenv.Patience)
			err := ft.healthy(waitCtx)
			cancel()
			if err != nil {
				t.Fatalf("the old master back: %v", err)
			}
		}
	}

	if valid := witness.check(t); valid == 0 {
		t.Error("no request reached the upstream")
	}
	// The sessions still in Redis, under their users' hash tags.
	for _, u := range users {
		keys, err := testenv.Keys(ctx, e.rdb, e.prefix+":{"+u.userhash+"}*")
		if err != nil || len(keys) == 0 {
			t.Errorf("%s has no keys left in Redis (%v)", u.name, err)
		}
	}
}

// PostgreSQL stopped and started again under load: the gate keeps passing
// the sessions it has (they live in Redis) and refusing others; users/login,
// which needs the account, answers 503 SERVICE_UNAVAILABLE while it is
// down, and logs in again once it is back, by itself; users/info answers as
// before or 503, nothing else.
func TestFaultPostgresUnderLoad(t *testing.T) {
	pg := testenv.OwnPostgres(t)
	e := newEnv(t, options{postgres: pg.URL()})
	witness := &upstreamWitness{}
	e.reached.mu.Lock()
	e.reached.record = witness.record
	e.reached.mu.Unlock()
	e.register("pia", "pia-password", "pia@example.com")
	e.register("pio", "pio-password", "") // logs in again and again: sessions of its own
	r := e.login(e.client(), "pia", "pia-password")
	u := user{name: "pia", userhash: r.str("userhash"), ssid: r.str("ssid")}

	kinds := failoverLoad("A", "", []user{u})
	kinds[0].ok = func(r reply) bool { return r.status == 200 && r.json["user"] == "pia" } // never closed: Redis is up
	bearer := []string{"Authorization", "Bearer " + u.ssid}
	unavailable := func(r reply) bool { return r.status == 503 && r.message() == "SERVICE_UNAVAILABLE" }
	kinds = append(kinds,
		loadKind{name: "info", method: "GET", path: "/auth/users/info", header: bearer,
			ok: func(r reply) bool { return r.status == 200 && r.str("username") == "pia" || unavailable(r) }},
		loadKind{name: "login", method: "POST", path: "/auth/users/login", body: map[string]any{"username": "pio", "password": "pio-password"},
			ok: func(r reply) bool { return r.status == 200 && r.str("ssid") != "" || unavailable(r) }},
	)
	l := e.startLoad(10*time.Millisecond, kinds...)
	for cycle := range scale(1, 5) {
		l.await(t, "account traffic", "info", 200, 3)
		l.await(t, "account traffic", "login", 200, 2)
		if err := pg.Stop(); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now() // for the log only, never asserted
		l.await(t, fmt.Sprintf("cycle %d: users/login answering 503", cycle), "login", 503, 3)
		l.await(t, fmt.Sprintf("cycle %d: the gate passing while PostgreSQL is down", cycle), "session A", 200, 10)
		if err := pg.Start(); err != nil {
			t.Fatal(err)
		}
		down := time.Since(stopped)
		started := time.Now()
		l.await(t, fmt.Sprintf("cycle %d: users/login back", cycle), "login", 200, 2)
		t.Logf("cycle %d: PostgreSQL down %s; logins again %s after its start",
			cycle, down.Round(time.Millisecond), time.Since(started).Round(time.Millisecond))
	}
	answers := l.finish(t, e)
	if witness.check(t) != answers["session A"][200] {
		t.Errorf("the upstream got %d requests with a valid session, the clients %d answers 200", witness.valid, answers["session A"][200])
	}
	if n := answers["forged A"][200] + answers["none A"][200]; n != 0 {
		t.Errorf("%d requests without a session passed", n)
	}
	// The account is whole after the outages.
	if n := e.scalar("SELECT count(*) FROM authgate.users WHERE username = 'pia'").(int64); n != 1 {
		t.Errorf("%d accounts pia", n)
	}
}
