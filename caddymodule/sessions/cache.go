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

	"github.com/authgate/authgate/caddymodule/store"
)

// The gate runs on every request; a Redis round trip on each would be most
// of its cost. The cache keeps sessions it has validated in memory, and stays
// correct across instances by listening on a Redis channel on which every
// instance announces each user whose sessions changed (logout, password
// change, revocation, eviction, a new email). Whenever that subscription is
// not known to be healthy the cache is dropped whole and every lookup goes
// to Redis, so a missed announcement can never keep an ended session alive.
//
// Channel: <prefix>:ended, a shard channel (SSUBSCRIBE/SPUBLISH, Redis 7),
// payload: "<userhash> <id>". Every listener, once it has dropped the user's
// entries, counts the announcement as done at <prefix>:heard:<id>, and the
// instance that made the change waits (a second at most) until as many
// listeners as SPUBLISH reached have: so when a logout answers, no instance
// can still serve the session from memory, however late its listener was
// scheduled.
//
// Why a shard channel: on Redis Cluster, PUBLISH answers how many clients
// of the node it was sent to got the message, while the cluster bus carries
// it to the other nodes' subscribers uncounted; the wait would end early.
// A shard channel lives in one slot: SPUBLISH goes to the master that owns
// it, every instance's SSUBSCRIBE too (on a cluster, to the node the slot map
// names, which must then say it is a master: a replica of the shard would
// take the subscription but not be counted), so SPUBLISH's count is every
// listener there is. On a single server and
// with Sentinel the channel is the master's, as before. When the slot
// leaves the node (a failover, a resharding) Redis ends the subscription
// with an sunsubscribe message; when Sentinel demotes a master it kills its
// pub/sub clients; a node that dies stops answering the pings: each of these
// turns the cache off until the listener has subscribed again, on the
// slot's new master. The announcement is sent after the change it announces
// has been made, on its own: a script on Redis Cluster may only touch its
// user's slot, and the channel's is another.

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
	entries map[id]cacheEntry
	byUser  map[string][]id
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
	return &cache{entries: map[id]cacheEntry{}, byUser: map[string][]id{}, max: max, maxAge: maxAge}
}

func (c *cache) get(key id, now time.Time) (Session, bool) {
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

func (c *cache) put(key id, sess Session, gen uint64, now time.Time) {
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

// seen records that the session's Seen was written, so that its cached
// copy does not ask again.
func (c *cache) seen(key id, seen int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok && e.sess.Seen < seen {
		e.sess.Seen = seen
		c.entries[key] = e
	}
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
		// A lost subscription on a cluster may mean the channel's slot has
		// a new master: subscribe where the fresh slot map says.
		if c, ok := s.rdb.(*redis.ClusterClient); ok {
			c.ReloadState(ctx)
		}
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
	ps, node, err := s.subscribe(ctx)
	if err != nil {
		return err
	}
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
			switch m.Kind {
			case "ssubscribe":
				if err := masterOnly(ctx, node); err != nil {
					return err
				}
				// Sessions may have ended while nobody listened: start empty.
				s.cache.reset(true)
				logger.Info("session cache on", zap.String("channel", m.Channel))
			case "sunsubscribe":
				// Not asked for: Redis ends shard subscriptions when the
				// channel's slot leaves the node.
				return errors.New("redis ended the subscription: the channel's slot moved")
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

// subscribe subscribes to the announcements. On a cluster it does so on the
// node its slot map names as the channel's master, and returns that node,
// for masterOnly to check: a replica of the channel's shard accepts the
// subscription too, and gets the messages, but SPUBLISH does not count its
// subscribers, so that a change would not wait for this instance. That is
// where a slot map from before a failover would send it.
func (s *Store) subscribe(ctx context.Context) (*redis.PubSub, *redis.Client, error) {
	c, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return s.rdb.SSubscribe(ctx, s.channel()), nil, nil
	}
	node, err := c.MasterForKey(ctx, s.channel())
	if err != nil {
		return nil, nil, err
	}
	return node.SSubscribe(ctx, s.channel()), node, nil
}

// masterOnly checks that node (nil when not on a cluster) is a master: one
// that accepted a shard subscription owns the channel's slot (another master
// would have redirected it).
func masterOnly(ctx context.Context, node *redis.Client) error {
	if node == nil {
		return nil
	}
	role, err := node.Do(ctx, "ROLE").Slice()
	if err != nil {
		return fmt.Errorf("asking the subscription's node for its role: %w", err)
	}
	if len(role) == 0 || role[0] != "master" {
		return fmt.Errorf("subscribed on %s, which is no master (role %v): the slot map is out of date", node.Options().Addr, role)
	}
	return nil
}

// CacheLive tells whether the session cache is in use.
func (s *Store) CacheLive() bool { return s.cache != nil && s.cache.live.Load() }

// announce tells every instance's cache that the user's sessions changed,
// and waits until every listener the message reached has acted on it. The
// change must be made before: a listener that has acted reads Redis anew.
//
// A failed SPUBLISH is tried again for as long as a listener on a node that
// cannot be reached could still keep its cache on (silenceMax and a ping):
// after that, every such listener has turned its cache off, and an error
// means a listener may be live that this instance cannot tell.
func (s *Store) announce(ctx context.Context, userhash string) error {
	note := newAnnouncement(userhash)
	deadline := time.Now().Add(silenceMax + pingEvery)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		heard, err := s.rdb.SPublish(ctx, s.channel(), note.payload()).Result()
		if err == nil {
			s.awaitHeard(ctx, note, int(heard))
			return nil
		}
		err = store.RedisErr(err)
		if !errors.Is(err, store.ErrUnavailable) || time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("announcing to the session caches: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("announcing to the session caches: %w", err)
		case <-time.After(wait):
		}
	}
}

// announcement names one announcement of changed sessions.
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
