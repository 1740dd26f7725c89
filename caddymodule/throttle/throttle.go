// Package throttle counts attempts (logins, OTP guesses) in Redis, so that
// every instance sharing the Redis sees the same counts, and refuses further
// attempts once a counter is at its limit for the rest of its window. Each
// attempt is counted before it is made and a success takes its count back,
// so the counters hold failures.
//
// Keys: <prefix>:throttle:<kind>:<scope>:<subject>, where scope is user (a
// keyed hash of the username: the raw name never lands in Redis), ip (the
// address as is), device (the id of a signed device cookie), or day:user and
// day:ip (the daily cap on codes).
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

// Limits are a limiter's allowances.
type Limits struct {
	// User is per username, shared by every client without a device cookie
	// for it; each device cookie has an allowance of the same size.
	User Limit
	// IP is per client address.
	IP Limit
	// Codes caps guesses at codes (OTPs, reset tokens) over a long window,
	// on top of the others: per user, or per IP for codes of no known user.
	Codes Limit
}

// Limiter counts failures per username, per client IP and per device.
type Limiter struct {
	rdb    redis.UniversalClient
	prefix string
	key    []byte
	limits Limits
}

// New returns a limiter. key keys the hash of usernames.
func New(rdb redis.UniversalClient, prefix string, key []byte, limits Limits) *Limiter {
	return &Limiter{rdb: rdb, prefix: prefix, key: key, limits: limits}
}

// Subject names who is attempting: the account name tried and the client.
type Subject struct {
	Kind     string // "login", "otp", …: each kind counts on its own
	Username string // empty: no account is named, nothing counts per user
	IP       string
	// Device is the id of a device cookie verified for Username. Its
	// failures count on the device's own counter instead of the user's and
	// the IP's, so that guesses from elsewhere cannot lock the device out.
	Device string
	// Code marks a guess at a code: it also counts against the daily cap.
	Code bool
}

// UserKey is the keyed hash that stands for a username in Redis keys and
// device cookies.
func (l *Limiter) UserKey(username string) string {
	mac := hmac.New(sha256.New, l.key)
	mac.Write([]byte(strings.ToLower(username)))
	return hex.EncodeToString(mac.Sum(nil)[:16])
}

type counter struct {
	key   string
	limit Limit
}

// counters lists the counters a subject's failures go to; the first is the
// one a success clears.
func (l *Limiter) counters(s Subject) []counter {
	base := l.prefix + ":throttle:" + s.Kind + ":"
	var out []counter
	switch {
	case s.Device != "":
		out = append(out, counter{base + "device:" + s.Device, l.limits.User})
	case s.Username != "":
		out = append(out, counter{base + "user:" + l.UserKey(s.Username), l.limits.User},
			counter{base + "ip:" + s.IP, l.limits.IP})
	default:
		out = append(out, counter{base + "ip:" + s.IP, l.limits.IP})
	}
	if s.Code {
		if s.Username != "" {
			out = append(out, counter{base + "day:user:" + l.UserKey(s.Username), l.limits.Codes})
		} else {
			out = append(out, counter{base + "day:ip:" + s.IP, l.limits.Codes})
		}
	}
	return out
}

// Attempt counts one attempt of the subject before it is made, and returns
// how long the subject must wait when that is one too many; a refused
// attempt is then not counted. Counting first, rather than after a failure,
// means that a burst of concurrent attempts cannot all slip in under the
// limit while the first ones are still being checked. A success takes its
// count back with Forget.
func (l *Limiter) Attempt(ctx context.Context, s Subject) (time.Duration, error) {
	counters := l.counters(s)
	// One round trip; separate commands rather than a script over several
	// keys, since on Redis Cluster the keys live in different slots.
	cmds, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range counters {
			// The first attempt opens the window; later ones count within it.
			p.SetNX(ctx, c.key, 0, c.limit.Window)
			p.Incr(ctx, c.key)
			p.PTTL(ctx, c.key)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("counting attempt: %w", store.RedisErr(err))
	}
	var wait time.Duration
	for i, c := range counters {
		n, ttl := cmds[3*i+1].(*redis.IntCmd).Val(), cmds[3*i+2].(*redis.DurationCmd).Val()
		if ttl == -1 {
			// The window ended between SETNX and INCR, which made a
			// counter with no TTL: give it its window, or it would count
			// for ever.
			if err := l.rdb.PExpire(ctx, c.key, c.limit.Window).Err(); err != nil {
				return 0, fmt.Errorf("counting attempt: %w", store.RedisErr(err))
			}
			ttl = c.limit.Window
		}
		if c.limit.Max > 0 && n > int64(c.limit.Max) {
			wait = max(wait, ttl, time.Second)
		}
	}
	if wait > 0 {
		if err := l.uncount(ctx, counters); err != nil {
			return 0, err
		}
	}
	return wait, nil
}

// Forget takes back the count of a successful attempt: the user's (or the
// device's) counter starts afresh, as whoever finally got it right should,
// while the failures counted on the client IP and the daily cap stand.
func (l *Limiter) Forget(ctx context.Context, s Subject) error {
	counters := l.counters(s)
	if s.Username != "" || s.Device != "" {
		if err := l.rdb.Del(ctx, counters[0].key).Err(); err != nil {
			return fmt.Errorf("clearing throttle: %w", store.RedisErr(err))
		}
		counters = counters[1:]
	}
	return l.uncount(ctx, counters)
}

// TakeBack takes back the count of an attempt that was never judged (a
// store was down before the secret could be checked): every counter it went
// to, the user's too, loses that one count. An outage must not spend
// allowances, or everyone who retried through it would be locked out once
// it is over.
func (l *Limiter) TakeBack(ctx context.Context, s Subject) error {
	return l.uncount(ctx, l.counters(s))
}

// uncountScript takes one back from a counter that still exists; a counter
// whose window has ended stays gone.
var uncountScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0
`)

func (l *Limiter) uncount(ctx context.Context, counters []counter) error {
	if len(counters) == 0 {
		return nil
	}
	// One script per key, each in its own slot; EVAL rather than EVALSHA,
	// since a pipeline cannot fall back when the script is not loaded.
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range counters {
			uncountScript.Eval(ctx, p, []string{c.key})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("taking back an attempt: %w", store.RedisErr(err))
	}
	return nil
}
