package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisMemory measures what a live session costs Redis: a fresh Redis
// seeded with o.sessions sessions as caddymodule/sessions stores them, once
// as many users with one session each (the dearest case: every session pays
// for a key of its own) and once a tenth as many users with ten each; the
// cost is the growth of INFO memory's used_memory over the sessions.
func (b *bench) redisMemory(ctx context.Context) (section, error) {
	n := b.o.sessions
	shapes := []struct{ users, perUser int }{{n, 1}, {n / 10, 10}}
	var checks []check
	for _, sh := range shapes {
		label := fmt.Sprintf("%s users × %d session", count(sh.users), sh.perUser)
		if sh.perUser > 1 {
			label += "s"
		}
		logger.Printf("Redis memory per session: seeding %s", label)
		r, err := b.startRedis(fmt.Sprintf("redis-memory-%dx%d", sh.users, sh.perUser))
		if err != nil {
			return section{}, err
		}
		before, err := usedMemory(ctx, r.URL())
		if err != nil {
			return section{}, err
		}
		t0 := time.Now()
		if _, err := seedSessions(ctx, r.URL(), "authgate", sh.users, sh.perUser, 1); err != nil {
			return section{}, err
		}
		logger.Printf("seeded in %s", time.Since(t0).Round(100*time.Millisecond))
		// Measured once the seeding clients have gone, with their buffers.
		after, err := usedMemory(ctx, r.URL())
		if err != nil {
			return section{}, err
		}
		encoding, err := sampleEncoding(ctx, r.URL())
		if err != nil {
			return section{}, err
		}
		if err := r.Stop(); err != nil { // its memory is the next shape's
			return section{}, err
		}
		sessions := sh.users * sh.perUser
		per := float64(after-before) / float64(sessions)
		checks = append(checks, check{
			Name:     "Redis memory per live session, " + label,
			Measured: fmt.Sprintf("%.0f bytes (used_memory +%s over %s sessions; user hashes %s)", per, mib(after-before), count(sessions), encoding),
			Target:   "≤ 300 bytes",
			Pass:     per <= 300,
		})
	}
	return section{
		checks: checks,
		notes: []string{
			fmt.Sprintf("Redis memory per session: a fresh redis-server (default settings) seeded through caddymodule/sessions' Seed, which writes what Create does (one hash per user: user id and name, email, and per session a 16-byte id with its binary record: address, device \"Firefox on Linux\", method pwd); bytes per session = the growth of `INFO memory` used_memory ÷ sessions, measured after the seeding connections closed. %s users × 1 session is the dearest shape, every session paying for a key of its own; with 10 sessions per user the key is shared.", count(n)),
		},
	}, nil
}

// usedMemory reads used_memory from a new connection to the Redis at u.
func usedMemory(ctx context.Context, u string) (int64, error) {
	opts, err := redis.ParseURL(u)
	if err != nil {
		return 0, err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no used_memory in INFO memory")
}

// sampleEncoding names the encoding of a random user hash (listpack is the
// compact one).
func sampleEncoding(ctx context.Context, u string) (string, error) {
	opts, err := redis.ParseURL(u)
	if err != nil {
		return "", err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	key, err := rdb.RandomKey(ctx).Result()
	if err != nil {
		return "", err
	}
	return rdb.ObjectEncoding(ctx, key).Result()
}
