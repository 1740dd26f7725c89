package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/sessions"
)

// seedSessions writes perUser live sessions for each of users distinct
// users straight into Redis, as caddymodule/sessions stores them (its own
// Seed: the same keys, fields and records), far faster than logins:
// pipelined batches from a few connections. It returns keep tokens spread
// evenly over them, for the load to use.
//
// The users exist only in Redis: the gate never asks PostgreSQL.
func seedSessions(ctx context.Context, redisURL, prefix string, users, perUser, keep int) ([]string, error) {
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	store := sessions.New(rdb, sessions.Config{Prefix: prefix, TTL: 24 * time.Hour})

	const workers = 4
	batch := max(1, 2000/perUser) // users per pipeline
	every := max(1, users/keep)
	var (
		mu     sync.Mutex
		kept   []string
		first  error
		wg     sync.WaitGroup
		worker = make(chan struct{}, workers)
	)
	for from := 0; from < users && ctx.Err() == nil; from += batch {
		to := min(users, from+batch)
		worker <- struct{}{}
		wg.Go(func() {
			defer func() { <-worker }()
			mine, err := seedBatch(ctx, rdb, store, from, to, perUser, every, keep)
			mu.Lock()
			defer mu.Unlock()
			first = cmp.Or(first, err)
			kept = append(kept, mine...)
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return kept, ctx.Err()
}

// seedBatch writes the sessions of users from..to-1 in one pipeline and
// returns the tokens to keep: the first session of every every-th user.
func seedBatch(ctx context.Context, rdb *redis.Client, store *sessions.Store, from, to, perUser, every, keep int) ([]string, error) {
	p := rdb.Pipeline()
	var mine []string
	for i := from; i < to; i++ {
		var b [16]byte
		rand.Read(b[:])
		user := sessions.Session{
			UserID: int64(1_000_000 + i), Userhash: hex.EncodeToString(b[:]),
			Username: fmt.Sprintf("seed%d", i), Email: fmt.Sprintf("seed%d@example.com", i),
		}
		var all []sessions.Session
		for j := range perUser {
			// What a login keeps: an address, a device summary, the method.
			sess := user
			sess.IP = fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, (i+j)&0xff)
			sess.Device = "Firefox on Linux"
			sess.AMR = []string{"pwd"}
			all = append(all, sess)
		}
		tokens, err := store.Seed(ctx, p, all...)
		if err != nil {
			return nil, err
		}
		if i%every == 0 && i/every < keep {
			mine = append(mine, tokens[0])
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("seeding sessions: %w", err)
	}
	return mine, nil
}
