package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/sessions"
)

// seedSessions writes n live sessions of n distinct users straight into
// Redis, in the layout of caddymodule/sessions (a token is
// <userhash>.<base64url secret>, Redis holds
// <prefix>:{<userhash>}:session:<sha256 hex of secret> with the JSON record,
// and <prefix>:{<userhash>}:sessions indexes the user's sessions), far
// faster than n logins: pipelined batches from a few connections. It
// returns keep tokens spread evenly over the n, for the load to use.
//
// The users exist only in Redis: the gate never asks PostgreSQL.
func seedSessions(ctx context.Context, redisURL, prefix string, n, keep int) ([]string, error) {
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()

	const (
		batch   = 2000 // sessions per pipeline: 3 commands each
		workers = 4
	)
	ttl := 24 * time.Hour
	now := time.Now()
	every := max(1, n/keep)
	var (
		mu     sync.Mutex
		kept   []string
		first  error
		wg     sync.WaitGroup
		worker = make(chan struct{}, workers)
	)
	for from := 0; from < n && ctx.Err() == nil; from += batch {
		to := min(n, from+batch)
		worker <- struct{}{}
		wg.Go(func() {
			defer func() { <-worker }()
			if err := seedBatch(ctx, rdb, prefix, from, to, every, keep, now, ttl, &mu, &kept); err != nil {
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return kept, ctx.Err()
}

// seedBatch writes the sessions from..to-1 in one pipeline and adds the
// tokens to keep to kept.
func seedBatch(ctx context.Context, rdb *redis.Client, prefix string, from, to, every, keep int,
	now time.Time, ttl time.Duration, mu *sync.Mutex, kept *[]string) error {
	p := rdb.Pipeline()
	var mine []string
	for i := from; i < to; i++ {
		token, userhash, id := newToken()
		record, err := json.Marshal(sessions.Session{
			UserID: int64(1_000_000 + i), Userhash: userhash,
			Username: fmt.Sprintf("seed%d", i), Email: fmt.Sprintf("seed%d@example.com", i),
			Created: now.Unix(), Expires: now.Add(ttl).Unix(),
		})
		if err != nil {
			return err
		}
		key := prefix + ":{" + userhash + "}:"
		p.Set(ctx, key+"session:"+id, record, ttl)
		p.ZAdd(ctx, key+"sessions", redis.Z{Score: float64(now.UnixMilli()), Member: id})
		p.PExpire(ctx, key+"sessions", ttl)
		if i%every == 0 && i/every < keep {
			mine = append(mine, token)
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("seeding sessions: %w", err)
	}
	mu.Lock()
	*kept = append(*kept, mine...)
	mu.Unlock()
	return nil
}

// newToken makes a session token as caddymodule/sessions does: a 32-hex
// userhash, a dot, 32 random bytes in unpadded base64url; id is the SHA-256
// (hex) of the secret part, which is all Redis holds.
func newToken() (token, userhash, id string) {
	var b [48]byte
	rand.Read(b[:])
	userhash = hex.EncodeToString(b[:16])
	secret := base64.RawURLEncoding.EncodeToString(b[16:])
	sum := sha256.Sum256([]byte(secret))
	return userhash + "." + secret, userhash, hex.EncodeToString(sum[:])
}
