// Package throttle counts failed attempts (logins, OTP guesses) in Redis, so
// that every instance sharing the Redis sees the same counts, and refuses
// further attempts once a counter is over its limit for the rest of its
// window.
//
// Keys: <prefix>:throttle:<kind>:<subject>, where a username subject is a
// keyed hash (the raw name never lands in Redis) and an IP is kept as is.
package throttle

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/store"
)

// Limit is the number of failures allowed within one fixed window.
type Limit struct {
	Max    int
	Window time.Duration
}

// Limiter counts failures per username and per client IP.
type Limiter struct {
	rdb    redis.UniversalClient
	prefix string
	key    []byte
	user   Limit
	ip     Limit
}

// New returns a limiter. key keys the hash of usernames.
func New(rdb redis.UniversalClient, prefix string, key []byte, perUser, perIP Limit) *Limiter {
	return &Limiter{rdb: rdb, prefix: prefix, key: key, user: perUser, ip: perIP}
}

// Subject names who is attempting: the account name tried and the client.
type Subject struct {
	Kind     string // "login", "otp", …: each kind counts on its own
	Username string
	IP       string
}

func (l *Limiter) keys(s Subject) (user, ip string) {
	mac := hmac.New(sha256.New, l.key)
	mac.Write([]byte(strings.ToLower(s.Username)))
	user = l.prefix + ":throttle:" + s.Kind + ":user:" + hex.EncodeToString(mac.Sum(nil)[:16])
	ip = l.prefix + ":throttle:" + s.Kind + ":ip:" + s.IP
	return user, ip
}

// Check returns how long the subject must wait, or zero when it may try.
func (l *Limiter) Check(ctx context.Context, s Subject) (time.Duration, error) {
	userKey, ipKey := l.keys(s)
	// One round trip; separate commands rather than MGET, since on Redis
	// Cluster the two keys live in different slots.
	cmds, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, userKey)
		p.PTTL(ctx, userKey)
		p.Get(ctx, ipKey)
		p.PTTL(ctx, ipKey)
		return nil
	})
	if err != nil && err != redis.Nil {
		return 0, fmt.Errorf("reading throttle: %w", store.RedisErr(err))
	}
	var wait time.Duration
	for i, lim := range []Limit{l.user, l.ip} {
		n, _ := cmds[2*i].(*redis.StringCmd).Int()
		if lim.Max > 0 && n >= lim.Max {
			wait = max(wait, cmds[2*i+1].(*redis.DurationCmd).Val())
		}
	}
	if wait < 0 { // no TTL: cannot happen with Fail, but never wait forever
		wait = time.Second
	}
	return wait, nil
}

// Fail counts one failure of the subject.
func (l *Limiter) Fail(ctx context.Context, s Subject) error {
	userKey, ipKey := l.keys(s)
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		// The first failure opens the window; later ones count within it.
		p.SetNX(ctx, userKey, 0, l.user.Window)
		p.Incr(ctx, userKey)
		p.SetNX(ctx, ipKey, 0, l.ip.Window)
		p.Incr(ctx, ipKey)
		return nil
	})
	if err != nil {
		return fmt.Errorf("counting failure: %w", store.RedisErr(err))
	}
	return nil
}

// Forget clears the subject's username counter, after a success: a user who
// finally got it right starts afresh, while the client IP's count stands.
func (l *Limiter) Forget(ctx context.Context, s Subject) error {
	userKey, _ := l.keys(s)
	if err := l.rdb.Del(ctx, userKey).Err(); err != nil {
		return fmt.Errorf("clearing throttle: %w", store.RedisErr(err))
	}
	return nil
}
