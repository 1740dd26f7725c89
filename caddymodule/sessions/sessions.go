// Package sessions keeps login sessions in Redis.
//
// A session token (the cookie's value, the users API's ssid) is
//
//	<userhash>.<43 characters: 32 random bytes, base64url>
//
// Redis holds only the SHA-256 of the random part. All keys of one user share
// the hash tag {<userhash>}, so that on Redis Cluster they live in one slot and
// the scripts below may touch them together:
//
//	<prefix>:{<userhash>}:session:<sha256 hex>   the session record (JSON), expiring with it
//	<prefix>:{<userhash>}:sessions               sorted set of the user's session hashes by start time
package sessions

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/store"
)

// ErrNotFound is returned for a token that names no live session, malformed
// tokens included.
var ErrNotFound = errors.New("no such session")

// Session is what the gate needs to know about a logged-in user, so that it
// never has to ask PostgreSQL.
type Session struct {
	UserID   int64  `json:"uid"`
	Userhash string `json:"uh"`
	Username string `json:"u"`
	Email    string `json:"e,omitempty"`
	// Created and Expires are Unix seconds; Expires is absolute (session_ttl).
	Created int64 `json:"c"`
	Expires int64 `json:"x"`
	// Seen is when the session was last used (Unix seconds). It is written
	// at most once per refresh interval, never on every request, so that the
	// gate stays one read.
	Seen int64 `json:"s,omitempty"`
	// IP and Device say where the session was started (the client address
	// and a summary of its User-Agent, see package useragent), so that the
	// account page can show a user their sessions.
	IP     string `json:"ip,omitempty"`
	Device string `json:"d,omitempty"`
	// AMR names how the login was made, in RFC 8176's words ("pwd", "otp",
	// "hwk" for a passkey, ...); the gate passes it upstream.
	AMR []string `json:"amr,omitempty"`
	// ID is the hash of the token: it names the session without being it.
	ID string `json:"-"`
}

// Config holds the session lifetimes and limits.
type Config struct {
	Prefix string
	// TTL is the absolute lifetime of a session.
	TTL time.Duration
	// Idle, when set, ends a session unused for this long.
	Idle time.Duration
	// MaxPerUser bounds the sessions of one user; the oldest ends first.
	MaxPerUser int
	// CacheSize bounds the in-process cache of validated sessions; 0 turns
	// it off (see Watch).
	CacheSize int
}

// Store creates, finds and ends sessions. It is safe for concurrent use.
type Store struct {
	rdb   redis.UniversalClient
	cfg   Config
	now   func() time.Time
	cache *cache // nil when off
	// onMessage, when set, sees each announcement before the watcher acts
	// on it; tests use it to make the watcher fail.
	onMessage func(payload string)
}

// New returns a session store over rdb.
func New(rdb redis.UniversalClient, cfg Config) *Store {
	s := &Store{rdb: rdb, cfg: cfg, now: time.Now}
	if cfg.CacheSize > 0 {
		// With an idle timeout, cached use must still slide the expiry in
		// Redis: entries live a quarter of the window at most, the same
		// fraction after which Lookup refreshes it.
		age := cacheMaxAge
		if cfg.Idle > 0 {
			age = min(age, cfg.Idle/4)
		}
		s.cache = newCache(cfg.CacheSize, age)
	}
	return s
}

const (
	userhashLen = 32
	secretLen   = 43 // base64url of 32 bytes, unpadded
	// TokenLen is the length of every token this package makes.
	TokenLen = userhashLen + 1 + secretLen
	// UserhashLen is the length of the userhash a token starts with.
	UserhashLen = userhashLen
)

// createScript stores the record, indexes it, drops index entries whose
// session has expired, and ends the oldest sessions beyond the limit, all in
// one step. The index is never longer than the limit, so the scan is cheap.
// KEYS[1] session key, KEYS[2] index; ARGV: record, lifetime ms, id, now ms,
// max sessions, key prefix of the user's sessions, index lifetime ms,
// invalidation channel, announcement. Returns how many instances heard it.
var createScript = redis.NewScript(`
local heard = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('EXISTS', ARGV[6] .. id) == 0 then redis.call('ZREM', KEYS[2], id) end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if over > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #popped, 2 do redis.call('DEL', ARGV[6] .. popped[i]) end
  heard = redis.call('PUBLISH', ARGV[8], ARGV[9])
end
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return heard
`)

// revokeScript ends every session in the index except ARGV[2] (may be
// empty) and announces it. KEYS[1] index; ARGV[1] key prefix of the user's
// sessions, ARGV[3] invalidation channel, ARGV[4] announcement. Returns the
// number ended and how many instances heard the announcement.
var revokeScript = redis.NewScript(`
local n = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if id ~= ARGV[2] then
    n = n + redis.call('DEL', ARGV[1] .. id)
    redis.call('ZREM', KEYS[1], id)
  end
end
local heard = redis.call('PUBLISH', ARGV[3], ARGV[4])
return {n, heard}
`)

// Create starts a session for the user and returns its token. The token is
// new at every call: a login never reuses an earlier session id.
func (s *Store) Create(ctx context.Context, sess Session) (string, Session, error) {
	if len(sess.Userhash) != userhashLen {
		return "", Session{}, fmt.Errorf("userhash of %d characters", len(sess.Userhash))
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", Session{}, err
	}
	token := sess.Userhash + "." + base64.RawURLEncoding.EncodeToString(secret[:])
	now := s.now()
	sess.Created = now.Unix()
	sess.Expires = now.Add(s.cfg.TTL).Unix()
	sess.Seen = sess.Created
	sess.ID = hashSecret(token[userhashLen+1:])
	record, err := json.Marshal(sess)
	if err != nil {
		return "", Session{}, err
	}
	life := s.cfg.TTL
	if s.cfg.Idle > 0 && s.cfg.Idle < life {
		life = s.cfg.Idle
	}
	note := newAnnouncement(sess.Userhash)
	heard, err := createScript.Run(ctx, s.rdb,
		[]string{s.sessionKey(sess.Userhash, sess.ID), s.indexKey(sess.Userhash)},
		record, life.Milliseconds(), sess.ID, now.UnixMilli(), s.cfg.MaxPerUser,
		s.sessionKey(sess.Userhash, ""), s.cfg.TTL.Milliseconds(), s.channel(), note.payload()).Int()
	if err != nil {
		return "", Session{}, fmt.Errorf("creating session: %w", store.RedisErr(err))
	}
	s.awaitHeard(ctx, note, heard) // sessions evicted beyond max_sessions
	return token, sess, nil
}

// Lookup returns the live session of token in one Redis round trip. With an
// idle timeout it also slides the session's expiry, but writes only once a
// quarter of the idle window has passed, not on every request.
func (s *Store) Lookup(ctx context.Context, token string) (Session, error) {
	userhash, secret, ok := split(token)
	if !ok {
		return Session{}, ErrNotFound
	}
	sum := sha256.Sum256([]byte(secret))
	var gen uint64
	if s.cache != nil {
		if sess, ok := s.cache.get(sum, s.now()); ok && sess.Userhash == userhash {
			return sess, nil
		}
		gen = s.cache.gen.Load()
	}
	id := hex.EncodeToString(sum[:])
	key := s.sessionKey(userhash, id)
	var record []byte
	var remaining time.Duration
	var err error
	if s.cfg.Idle > 0 {
		var get *redis.StringCmd
		var ttl *redis.DurationCmd
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			get, ttl = p.Get(ctx, key), p.PTTL(ctx, key)
			return nil
		})
		record, remaining = []byte(get.Val()), ttl.Val()
	} else {
		record, err = s.rdb.Get(ctx, key).Bytes()
	}
	if errors.Is(err, redis.Nil) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("reading session: %w", store.RedisErr(err))
	}
	var sess Session
	if err := json.Unmarshal(record, &sess); err != nil || sess.Userhash != userhash {
		return Session{}, ErrNotFound
	}
	sess.ID = id
	now := s.now()
	if now.Unix() >= sess.Expires {
		return Session{}, ErrNotFound
	}
	if s.cfg.Idle > 0 && s.cfg.Idle-remaining > s.cfg.Idle/4 {
		life := min(s.cfg.Idle, time.Unix(sess.Expires, 0).Sub(now))
		// A failed refresh only shortens the session; the request may pass.
		_ = s.rdb.PExpire(ctx, key, life).Err()
	}
	if s.cache != nil {
		s.cache.put(sum, sess, gen, now)
	}
	return sess, nil
}

// Delete ends the session of token. Ending a session that does not exist is
// not an error.
func (s *Store) Delete(ctx context.Context, token string) error {
	userhash, secret, ok := split(token)
	if !ok {
		return nil
	}
	id := hashSecret(secret)
	if s.cache != nil {
		s.cache.dropUser(userhash)
	}
	note := newAnnouncement(userhash)
	var heard *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.sessionKey(userhash, id))
		p.ZRem(ctx, s.indexKey(userhash), id)
		heard = p.Publish(ctx, s.channel(), note.payload())
		return nil
	})
	if err != nil {
		return fmt.Errorf("ending session: %w", store.RedisErr(err))
	}
	s.awaitHeard(ctx, note, int(heard.Val()))
	return nil
}

// RevokeUser ends every session of the user except the one with id keepID
// (empty to end them all) and returns how many ended.
func (s *Store) RevokeUser(ctx context.Context, userhash, keepID string) (int, error) {
	if s.cache != nil {
		s.cache.dropUser(userhash)
	}
	note := newAnnouncement(userhash)
	res, err := revokeScript.Run(ctx, s.rdb, []string{s.indexKey(userhash)},
		s.sessionKey(userhash, ""), keepID, s.channel(), note.payload()).Int64Slice()
	if err != nil {
		return 0, fmt.Errorf("ending sessions: %w", store.RedisErr(err))
	}
	if len(res) != 2 {
		return 0, fmt.Errorf("ending sessions: the script answered %v, not [ended, heard]", res)
	}
	s.awaitHeard(ctx, note, int(res[1]))
	return int(res[0]), nil
}

// List returns the live sessions of the user, oldest first.
func (s *Store) List(ctx context.Context, userhash string) ([]Session, error) {
	ids, err := s.rdb.ZRange(ctx, s.indexKey(userhash), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("listing sessions: %w", store.RedisErr(err))
	}
	var out []Session
	for _, id := range ids {
		record, err := s.rdb.Get(ctx, s.sessionKey(userhash, id)).Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing sessions: %w", store.RedisErr(err))
		}
		var sess Session
		if json.Unmarshal(record, &sess) == nil {
			sess.ID = id
			out = append(out, sess)
		}
	}
	return out, nil
}

// Userhash returns the user part of a well-formed token.
func Userhash(token string) (string, bool) {
	userhash, _, ok := split(token)
	return userhash, ok
}

func (s *Store) sessionKey(userhash, id string) string {
	return s.cfg.Prefix + ":{" + userhash + "}:session:" + id
}

func (s *Store) indexKey(userhash string) string {
	return s.cfg.Prefix + ":{" + userhash + "}:sessions"
}

// Shaped tells whether token, text or bytes, is shaped like a session
// token: what the gate keeps from the upstream, wherever it finds one.
func Shaped[S ~string | ~[]byte](token S) bool {
	_, _, ok := split(token)
	return ok
}

// split checks the token's shape before it gets near a Redis key, so that a
// hostile cookie cannot address other keys.
func split[S ~string | ~[]byte](token S) (userhash, secret S, ok bool) {
	if len(token) != TokenLen || token[userhashLen] != '.' {
		return userhash, secret, false
	}
	userhash, secret = token[:userhashLen], token[userhashLen+1:]
	for i := 0; i < len(userhash); i++ {
		if c := userhash[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return userhash[:0], secret[:0], false
		}
	}
	for i := 0; i < len(secret); i++ {
		if c := secret[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return userhash[:0], secret[:0], false
		}
	}
	return userhash, secret, true
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// FormatID shortens a session id for logs: enough to tell sessions apart,
// useless for finding one.
func FormatID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
