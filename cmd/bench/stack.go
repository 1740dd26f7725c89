package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/authgate/authgate/caddymodule/testenv"
)

// stack is what every measurement runs against: a throwaway PostgreSQL and
// Redis, an upstream, and authgate's Caddy with the plain, gate and
// forward_auth sites, all on loopback, in a temporary directory of their
// own. More processes started through it (start, startRedis) stop with it,
// in reverse order.
type stack struct {
	dir      string
	caddy    string // Caddy with authgate
	extra    string // more authgate global directives, ';'-separated
	pg       *testenv.Postgres
	redis    *testenv.Redis // the gate's sessions
	ports    mainPorts
	authgate *caddyProc

	mu    sync.Mutex
	stops []func()
}

// startStack starts the stores, the upstream and authgate's Caddy (bin
// caddy, with extra authgate directives), and waits until every site
// answers. On error, what was started is stopped again.
func startStack(ctx context.Context, caddy, extra string) (_ *stack, err error) {
	s, err := startStores(caddy, extra)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	ports, err := testenv.FreePorts(7)
	if err != nil {
		return nil, err
	}
	s.ports = mainPorts{Admin: ports[0], Plain: ports[1], Gate: ports[2], ForwardAuth: ports[3], AuthEndpoint: ports[4], Upstream: ports[5]}
	upstreamAdmin := ports[6]

	logger.Print("starting the upstream and authgate's Caddy (plain, gate, forward_auth sites)")
	if _, err := s.start(ctx, "upstream", caddy, upstreamCaddyfile(upstreamAdmin, s.ports.Upstream), s.ports.Upstream); err != nil {
		return nil, err
	}
	p := s.ports
	if s.authgate, err = s.start(ctx, "authgate", caddy, mainCaddyfile(p, s.global(s.redis.URL())),
		p.Plain, p.Gate, p.ForwardAuth, p.AuthEndpoint); err != nil {
		return nil, err
	}
	return s, nil
}

// startStores starts the part of a stack that every run needs, whatever
// Caddys it then starts: the temporary directory, PostgreSQL and the
// gate's Redis. On error, what was started is stopped again.
func startStores(caddy, extra string) (_ *stack, err error) {
	dir, err := os.MkdirTemp("", "authgate-bench-")
	if err != nil {
		return nil, err
	}
	// Not the named result, which a failing return sets to nil before the
	// deferred Stop runs.
	s := &stack{dir: dir, caddy: caddy, extra: extra}
	s.onStop(func() { os.RemoveAll(dir) })
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	logger.Print("starting PostgreSQL and Redis")
	if s.pg, err = testenv.StartPostgres(filepath.Join(dir, "postgres")); err != nil {
		return nil, err
	}
	s.onStop(func() { s.pg.Stop() })
	if s.redis, err = s.startRedis("redis-gate"); err != nil {
		return nil, err
	}
	return s, nil
}

// onStop registers f to run at Stop, before what was registered earlier.
func (s *stack) onStop(f func()) {
	s.mu.Lock()
	s.stops = append(s.stops, f)
	s.mu.Unlock()
}

// Stop stops everything started, newest first, and removes the directory.
func (s *stack) Stop() {
	s.mu.Lock()
	stops := s.stops
	s.stops = nil
	s.mu.Unlock()
	for _, stop := range slices.Backward(stops) {
		stop()
	}
}

// start runs a Caddy (bin) with caddyfile until the stack stops, and waits
// until every port in ready answers.
func (s *stack) start(ctx context.Context, name, bin, caddyfile string, ready ...int) (*caddyProc, error) {
	p, err := startCaddy(ctx, s.dir, name, bin, caddyfile, ready...)
	if err != nil {
		return nil, err
	}
	s.onStop(p.Stop)
	return p, nil
}

// startRedis starts one more Redis server until the stack stops.
func (s *stack) startRedis(name string) (*testenv.Redis, error) {
	r, err := testenv.StartRedis(filepath.Join(s.dir, name))
	if err != nil {
		return nil, err
	}
	s.onStop(func() { r.Stop() })
	return r, nil
}

// global is the authgate global option for a Caddy of the stack whose
// sessions live in the Redis at redisURL.
func (s *stack) global(redisURL string) string {
	return s.globalWith("redis " + redisURL)
}

// globalWith is the authgate global option for a Caddy of the stack whose
// sessions live where the directive redis says (redis_cluster …).
func (s *stack) globalWith(redis string) string {
	return authgateGlobal(s.pg.URL(), redis, s.extra)
}

// url is the root of a loopback site.
func url(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/", port) }
