package sessions

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// The gate runs on every request; a Redis round trip on each would be most
// of its cost. The cache keeps sessions it has validated in memory, and stays
// correct across instances by listening on a Redis channel on which every
// instance announces each user whose sessions ended (logout, password
// change, revocation, eviction). Whenever that subscription is not known to
// be healthy the cache is dropped whole and every lookup goes to Redis, so a
// missed announcement can never keep an ended session alive.
//
// Channel: <prefix>:ended, payload: "<userhash> <id>". Every listener, once
// it has dropped the user's entries, counts the announcement as done at
// <prefix>:heard:<id>, and the instance that ended the sessions waits (a
// second at most) until every listener PUBLISH reached has: so when a logout
// answers, no instance can still serve the session from memory, however
// late its listener was scheduled.

// How often the subscription proves it is alive, and how long silence may
// last before the cache is dropped.
const (
	pingEvery   = time.Second
	silenceMax  = 3 * time.Second
	cacheMaxAge = 5 * time.Minute
)

type cacheEntry struct {
	sess  Session
	until int64 // Unix ns after which the entry is not used
}

type cache struct {
	mu      sync.RWMutex
	entries map[[32]byte]cacheEntry
	byUser  map[string][][32]byte
	max     int
	maxAge  time.Duration
	// live is true while the subscription is healthy; entries are used and
	// added only then.
	live atomic.Bool
	// gen changes at every invalidation, so a lookup that raced with one
	// does not store what it read before it.
	gen atomic.Uint64
}

func newCache(max int, maxAge time.Duration) *cache {
	return &cache{entries: map[[32]byte]cacheEntry{}, byUser: map[string][][32]byte{}, max: max, maxAge: maxAge}
}

func (c *cache) get(key [32]byte, now time.Time) (Session, bool) {
	if !c.live.Load() {
		return Session{}, false
	}
	c.mu.RLock()
	e, ok := c.entries[key]
	c.mu.RUnlock()
	if !ok || now.UnixNano() > e.until || now.Unix() >= e.sess.Expires {
		return Session{}, false
	}
	return e.sess, true
}

func (c *cache) put(key [32]byte, sess Session, gen uint64, now time.Time) {
	if !c.live.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen || len(c.entries) >= c.max {
		return
	}
	if _, ok := c.entries[key]; !ok {
		c.byUser[sess.Userhash] = append(c.byUser[sess.Userhash], key)
	}
	c.entries[key] = cacheEntry{sess: sess, until: now.Add(c.maxAge).UnixNano()}
}

// dropUser forgets every cached session of the user.
func (c *cache) dropUser(userhash string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	for _, key := range c.byUser[userhash] {
		delete(c.entries, key)
	}
	delete(c.byUser, userhash)
}

// reset forgets everything and sets whether the cache may be used.
func (c *cache) reset(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	c.live.Store(live)
	clear(c.entries)
	clear(c.byUser)
}

// sweep removes entries past their age, so that sessions nobody uses any
// more do not hold memory.
func (c *cache) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for user, keys := range c.byUser {
		kept := keys[:0]
		for _, key := range keys {
			if e, ok := c.entries[key]; ok && now.UnixNano() <= e.until {
				kept = append(kept, key)
			} else {
				delete(c.entries, key)
			}
		}
		if len(kept) == 0 {
			delete(c.byUser, user)
		} else {
			c.byUser[user] = kept
		}
	}
}

func (s *Store) channel() string { return s.cfg.Prefix + ":ended" }

// Watch keeps the cache's subscription until ctx ends, and returns only
// once everything it started has ended. Without a call to Watch the cache is
// never used. It logs when the cache goes on and off.
//
// A panic while listening is logged and handled like a lost subscription:
// the cache is dropped and off until Watch has subscribed again, so that no
// bug can leave it serving sessions nobody tells it about.
func (s *Store) Watch(ctx context.Context, logger *zap.Logger) {
	if s.cache == nil {
		return
	}
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	defer s.cache.reset(false)
	for ctx.Err() == nil {
		err := s.listenRecovering(ctx, sweep.C, logger)
		if s.cache.live.Load() && ctx.Err() == nil {
			logger.Warn("session cache off: subscription lost, every request asks Redis", zap.Error(err))
		}
		s.cache.reset(false)
		select {
		case <-ctx.Done():
		case <-time.After(pingEvery):
		}
	}
}

// listenRecovering is listen with its panics turned into errors. listen's
// own deferred calls (closing the subscription, stopping the pings) have run
// by the time it returns.
func (s *Store) listenRecovering(ctx context.Context, sweep <-chan time.Time, logger *zap.Logger) (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.cache.reset(false)
			logger.Error("session cache watcher panicked: cache off until it has subscribed again",
				zap.Any("panic", v), zap.StackSkip("stack", 1))
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return s.listen(ctx, sweep, logger)
}

// listen subscribes and serves invalidations until the subscription fails,
// stays silent too long, or ctx ends; a ping every second keeps it talking.
// It returns once its ping goroutine has ended.
func (s *Store) listen(ctx context.Context, sweep <-chan time.Time, logger *zap.Logger) error {
	ps := s.rdb.Subscribe(ctx, s.channel())
	defer ps.Close()
	// A blocked read does not watch ctx: closing the subscription ends it,
	// so that Watch returns at once when ctx ends (a config reload waits
	// for it) instead of after up to silenceMax.
	defer context.AfterFunc(ctx, func() { _ = ps.Close() })()
	pingCtx, stopPing := context.WithCancel(ctx)
	var pinging sync.WaitGroup
	defer pinging.Wait()
	defer stopPing()
	pinging.Go(func() {
		// A panic here must not end the process; the pings stop, and the
		// silence ends the subscription below.
		defer func() {
			if v := recover(); v != nil {
				logger.Error("session cache ping panicked", zap.Any("panic", v), zap.StackSkip("stack", 1))
			}
		}()
		t := time.NewTicker(pingEvery)
		defer t.Stop()
		for {
			select {
			case <-pingCtx.Done():
				return
			case <-t.C:
				_ = ps.Ping(pingCtx) // a failed ping shows as silence below
			}
		}
	})
	for {
		msg, err := ps.ReceiveTimeout(ctx, silenceMax)
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				// Sessions may have ended while nobody listened: start empty.
				s.cache.reset(true)
				logger.Info("session cache on", zap.String("channel", m.Channel))
			}
		case *redis.Message:
			if s.onMessage != nil {
				s.onMessage(m.Payload)
			}
			userhash, id, _ := strings.Cut(m.Payload, " ")
			s.cache.dropUser(userhash)
			if id != "" {
				key := s.heardKey(id)
				_, _ = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Incr(ctx, key)
					p.Expire(ctx, key, time.Minute)
					return nil
				})
			}
		}
		select {
		case now := <-sweep:
			s.cache.sweep(now)
		default:
		}
	}
}

// CacheLive tells whether the session cache is in use.
func (s *Store) CacheLive() bool { return s.cache != nil && s.cache.live.Load() }

// announcement names one announcement of ended sessions.
type announcement struct{ userhash, id string }

func newAnnouncement(userhash string) announcement {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return announcement{userhash: userhash, id: hex.EncodeToString(b)}
}

func (a announcement) payload() string { return a.userhash + " " + a.id }

func (s *Store) heardKey(id string) string { return s.cfg.Prefix + ":heard:" + id }

// awaitHeard waits until the listeners that received the announcement (heard
// of them) have acted on it, or a second has passed: a listener that slow is
// about to lose its subscription to the ping check anyway.
func (s *Store) awaitHeard(ctx context.Context, a announcement, heard int) {
	if heard == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		n, err := s.rdb.Get(ctx, s.heardKey(a.id)).Int()
		if (err == nil || errors.Is(err, redis.Nil)) && n >= heard {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
