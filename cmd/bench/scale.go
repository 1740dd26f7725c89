package main

import (
	"context"
	"fmt"
	"time"
)

// scale compares the gate with 1,000 live sessions in Redis against one
// with o.sessions: two identical gate Caddies, each with a Redis of its
// own, both cycling through 1,000 of their sessions.
func (b *bench) scale(ctx context.Context) (section, error) {
	large := count(b.o.sessions)
	logger.Printf("starting two Redis servers and gate Caddies (1k and %s sessions)", large)
	type side struct {
		name, tokens string
		port         int
	}
	sides := []*side{{name: "1k"}, {name: large}}
	var keep []expect
	for i, sd := range sides {
		r, err := b.startRedis("redis-" + sd.name)
		if err != nil {
			return section{}, err
		}
		admin, port, err := twoPorts()
		if err != nil {
			return section{}, err
		}
		if _, err := b.start(ctx, "scale-"+sd.name, b.caddy, gateCaddyfile(admin, port, b.ports.Upstream, b.global(r.URL())), port); err != nil {
			return section{}, err
		}
		n := smallSessions
		if i == 1 {
			n = b.o.sessions
		}
		logger.Printf("seeding %d sessions into Redis", n)
		t0 := time.Now()
		tokens, err := seedSessions(ctx, r.URL(), "bench", n, 1, smallSessions)
		if err != nil {
			return section{}, err
		}
		logger.Printf("seeded in %s", time.Since(t0).Round(100*time.Millisecond))
		if sd.tokens, err = writeTokens(b.dir, "tokens-"+sd.name, tokens); err != nil {
			return section{}, err
		}
		sd.port = port
		keep = append(keep, expect{fmt.Sprintf("scale %s, seeded session", sd.name), url(port),
			map[string]string{"Cookie": b.cookie.Name + "=" + tokens[len(tokens)-1]}, 200})
	}
	if err := expectStatuses(ctx, keep...); err != nil {
		return section{}, err
	}

	load := func(sd *side) wrk {
		return wrk{URL: url(sd.port), Threads: b.o.threads, Conns: b.o.conns, Duration: b.o.dur, Script: rotatingScript(sd.tokens, b.cookie.Name)}
	}
	small := &variant{row{Name: "gate, 1k sessions in Redis", Load: b.loadDesc(), Note: "cycles through 1,000 sessions"}, load(sides[0])}
	big := &variant{row{Name: fmt.Sprintf("gate, %s sessions in Redis", large), Load: b.loadDesc(), Note: "cycles through 1,000 of them"}, load(sides[1])}
	if err := warmUp(ctx, b.dir, small, big); err != nil {
		return section{}, err
	}
	for r := range b.o.rounds {
		if _, err := runPair(ctx, b.dir, fmt.Sprintf("round %d/%d", r+1, b.o.rounds), r%2 == 0, small, big); err != nil {
			return section{}, err
		}
	}
	return section{
		rows: []row{small.row, big.row},
		checks: []check{
			ratioCheck(fmt.Sprintf("gate with %s ÷ 1k sessions, req/s", large), roundRatio(big.row, small.row, rps), ">=", 0.90),
			ratioCheck(fmt.Sprintf("gate with %s ÷ 1k sessions, p50", large), roundRatio(big.row, small.row, p50), "<=", 1.10),
			ratioCheck(fmt.Sprintf("gate with %s ÷ 1k sessions, p99", large), roundRatio(big.row, small.row, p99), "<=", 1.10),
		},
		notes: []string{
			fmt.Sprintf("Scale: two identical gate Caddies with their own Redis, seeded directly (pipelined, by caddymodule/sessions' own Seed) with 1,000 and %s sessions of as many users; the load cycles through 1,000 seeded tokens in both.", large),
		},
	}, nil
}
