// Package sessions keeps login sessions in Redis.
//
// A session token (the cookie's value, the users API's ssid) is
//
//	<userhash>.<43 characters: 32 random bytes, base64url>
//
// Redis never sees the random part, only the first 16 bytes of its SHA-256:
// the session's id. 16 bytes are enough because the id only finds a record,
// it proves nothing: the secret has 256 bits, so a token can be neither
// guessed nor derived from an id that leaked (reading Redis gives no way
// in), and to forge a token for a stored id one would have to find a
// second preimage of 128 bits. Ids cannot collide by accident either: they
// only need to differ among the sessions of one user (at most a few
// hundred), where the chance is below 2^-110.
//
// Every session of a user lives in one Redis hash, whose key carries the
// userhash as hash tag: on Redis Cluster all of a user's data is in one
// slot, and every script below touches the one key it declares.
//
//	<prefix>:{<userhash>}
//	  u          user id (uvarint) + username: what the gate passes upstream
//	  e          email (absent when none)
//	  <16 bytes> a session id: its record (see record below)
//
// Why one hash per user rather than a key per session plus an index: a key
// costs Redis about 150 bytes before its value (dict entries, key string,
// object, expiry, buckets), the index repeated every id, and JSON every
// field's name: 641 bytes a session. A small hash is stored as one
// listpack, a flat byte array with a few bytes of overhead per field, for
// as long as it has at most 128 fields of at most 64 bytes each
// (hash-max-listpack-entries and hash-max-listpack-value, Redis 7's
// defaults): every field here is kept within that, so a session costs its
// 16-byte id, a record of 16 to 64 bytes and a share of one key: 257 bytes
// with one session per user, 79 with ten (BENCHMARKS.md). It also keeps
// what the index gave: all of a user's sessions in one place, so ending
// them all is one DEL and max_sessions is counted where the sessions are. A
// username or email over 64 bytes, or max_sessions above 126, only makes
// that user's hash a real hash table: more memory for that user, same
// behaviour.
//
// Redis 7.0 has no expiry per hash field (HEXPIRE came in 7.4), so a
// record carries its own end: Lookup checks it, Create prunes the dead
// records of the user when it adds one, and the key expires when the last
// of its sessions could end. The user's name and email are kept once for
// all of their sessions, refreshed at every login and by SetEmail.
//
// Last seen (and with session_idle, the sliding end) is written at most
// once per refreshEvery per session, by a background write that the request
// does not wait for: the gate stays one HMGET per request, or none when the
// session cache has it.
package sessions

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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
	// "webauthn" for a passkey, see amrNames); the gate passes it upstream.
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
	// refreshEvery is how stale a session's Seen may get before a lookup
	// writes it again.
	refreshEvery time.Duration
	// touching holds the sessions whose Seen is being written, so that a
	// burst of requests writes it once; its size bounds the writes in
	// flight.
	touchMu  sync.Mutex
	touching map[id]struct{}
	touches  sync.WaitGroup // the writes in flight, for tests to wait on
	// onMessage, when set, sees each announcement before the watcher acts
	// on it; tests use it to make the watcher fail.
	onMessage func(payload string)
}

// How often Seen is written when session_idle is off: often enough for an
// account page's "last seen", rare enough that a million active sessions
// cost a few thousand small writes a second. With session_idle, a quarter
// of it if that is less, so that a session in use never comes within three
// quarters of its idle end.
const seenEvery = 5 * time.Minute

// touchMax bounds the Seen writes in flight; a lookup that finds it full
// skips its write, which the next lookup of that session makes instead.
const touchMax = 128

// New returns a session store over rdb.
func New(rdb redis.UniversalClient, cfg Config) *Store {
	s := &Store{rdb: rdb, cfg: cfg, now: time.Now, refreshEvery: seenEvery, touching: map[id]struct{}{}}
	if cfg.Idle > 0 {
		s.refreshEvery = min(seenEvery, cfg.Idle/4)
	}
	if cfg.CacheSize > 0 {
		s.cache = newCache(cfg.CacheSize, cacheMaxAge)
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
	idLen       = 16
)

// id is a session's name in Redis: the first 16 bytes of the SHA-256 of
// its token's secret.
type id [idLen]byte

func idOf(secret string) id {
	sum := sha256.Sum256([]byte(secret))
	return id(sum[:idLen])
}

func (i id) String() string { return hex.EncodeToString(i[:]) }

// parseID reads an id in the form Session.ID gives, and no other.
func parseID(s string) (id, bool) {
	var i id
	if len(s) != 2*idLen || strings.ToLower(s) != s {
		return i, false
	}
	if _, err := hex.Decode(i[:], []byte(s)); err != nil {
		return i, false
	}
	return i, true
}

// Field names of the user's data; a session's is 16 bytes long, which no
// other field may be.
const (
	fieldUser  = "u"
	fieldEmail = "e"
)

// record is the binary form of a session in its user's hash, small enough
// for a listpack entry (≤ 64 bytes):
//
//	0       format (high 4 bits, 1) and address kind (low: 0 none, 1 IPv4, 2 IPv6)
//	1..6    created, Unix milliseconds, big-endian: which sessions are the
//	        oldest, for max_sessions, even among logins of one second
//	7..10   expires (absolute), Unix seconds, big-endian
//	11..14  seen, the same
//	15..    uvarint: the AMR names, one bit each (amrNames)
//	        the address: 0, 4 or 16 bytes
//	        the device summary: the rest, ASCII
//
// The scripts read bytes 1..14 (ends in the Lua below) and know nothing of
// the rest. Unix seconds in 32 bits last until 2106.
const (
	recordFormat = 1
	recordHead   = 15
	maxRecord    = 64 // hash-max-listpack-value
)

const (
	ipNone byte = iota
	ipV4
	ipV6
)

// amrNames are the authentication methods a record can say, RFC 8176's
// registry with the likely ones first, so that they fit in one byte, then
// the two of authgate's own that RFC 8176 has no word for: "webauthn" (a
// passkey) and "recovery" (a recovery code). Stored records depend on this
// order: append, never reorder.
var amrNames = []string{"pwd", "otp", "hwk", "swk", "mfa", "user", "pin",
	"face", "fpt", "geo", "iris", "kba", "mca", "rba", "retina", "sc", "sms", "tel", "vbm", "wia",
	"webauthn", "recovery"}

// encodeRecord makes the record of sess, created at createdMs (Unix
// milliseconds, more precise than sess.Created).
func encodeRecord(sess Session, createdMs int64) ([]byte, error) {
	var amr uint64
	for _, name := range sess.AMR {
		i := slices.Index(amrNames, name)
		if i < 0 {
			return nil, fmt.Errorf("authentication method %q is not one of RFC 8176's", name)
		}
		amr |= 1 << i
	}
	kind, addr := ipNone, []byte(nil)
	// An address that does not parse is not kept: it only informs the
	// account page, and the client address Caddy gives always parses.
	if ip, err := netip.ParseAddr(sess.IP); err == nil {
		ip = ip.Unmap()
		if ip.Is4() {
			kind, addr = ipV4, ip.AsSlice()
		} else {
			kind, addr = ipV6, ip.AsSlice()
		}
	}
	b := make([]byte, 0, maxRecord)
	b = append(b, recordFormat<<4|kind)
	if createdMs < 0 || createdMs > 1<<48-1 {
		return nil, fmt.Errorf("time %d ms out of the record's range", createdMs)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(createdMs>>32))
	b = binary.BigEndian.AppendUint32(b, uint32(createdMs))
	for _, t := range []int64{sess.Expires, sess.Seen} {
		if t < 0 || t > 1<<32-1 {
			return nil, fmt.Errorf("time %d out of the record's range", t)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(t))
	}
	b = binary.AppendUvarint(b, amr)
	b = append(b, addr...)
	return append(b, fitDevice(sess.Device, maxRecord-len(b))...), nil
}

// fitDevice shortens a device summary to n bytes, on a character boundary:
// it is display text, and a longer record would cost the user's hash its
// compact form.
func fitDevice(device string, n int) string {
	if len(device) <= n {
		return device
	}
	for n > 0 && !utf8.RuneStart(device[n]) {
		n--
	}
	return device[:n]
}

// decodeRecord fills sess from a record; false for anything it cannot read.
// It reads the string go-redis gives, without copying it.
func decodeRecord(b string, sess *Session) bool {
	if len(b) < recordHead+1 || b[0]>>4 != recordFormat {
		return false
	}
	u32 := func(i int) int64 {
		return int64(b[i])<<24 | int64(b[i+1])<<16 | int64(b[i+2])<<8 | int64(b[i+3])
	}
	sess.Created = (int64(b[1])<<40 | int64(b[2])<<32 | u32(3)) / 1000
	sess.Expires, sess.Seen = u32(7), u32(11)
	amr, n := uvarint(b[recordHead:])
	if n <= 0 || amr>>len(amrNames) != 0 {
		return false
	}
	sess.AMR = nil
	for i, name := range amrNames {
		if amr&(1<<i) != 0 {
			sess.AMR = append(sess.AMR, name)
		}
	}
	rest := b[recordHead+n:]
	sess.IP = ""
	switch kind := b[0] & 0x0f; {
	case kind == ipV4 && len(rest) >= 4:
		sess.IP = netip.AddrFrom4([4]byte([]byte(rest[:4]))).String()
		rest = rest[4:]
	case kind == ipV6 && len(rest) >= 16:
		sess.IP = netip.AddrFrom16([16]byte([]byte(rest[:16]))).String()
		rest = rest[16:]
	case kind != ipNone:
		return false
	}
	sess.Device = rest
	return true
}

// uvarint is binary.Uvarint over a string: the value and the bytes it
// took, 0 or less when it does not end or overflows.
func uvarint(s string) (uint64, int) {
	var x uint64
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -(i + 1)
			}
			return x | uint64(c)<<(7*i), i + 1
		}
		x |= uint64(c&0x7f) << (7 * i)
	}
	return 0, 0
}

func encodeUser(sess Session) string {
	return string(binary.AppendUvarint(nil, uint64(sess.UserID))) + sess.Username
}

func decodeUser(v string, sess *Session) bool {
	uid, n := uvarint(v)
	if n <= 0 || n == len(v) {
		return false
	}
	sess.UserID, sess.Username = int64(uid), v[n:]
	return true
}

// luaEnds is shared by the scripts: ends(v) is when the session of record
// v ends (Unix seconds), for the idle timeout in seconds (0: off), and when
// it started (Unix ms); 0 for a record it cannot read, which thus counts as
// ended.
const luaEnds = `
local function ends(v, idle)
  if #v < 16 or math.floor(string.byte(v, 1) / 16) ~= 1 then return 0, 0 end
  local c, x, s = struct.unpack('>I6I4I4', v, 2)
  if idle > 0 and s + idle < x then x = s + idle end
  return x, c
end
`

// createScript adds a session to its user's hash, refreshes the user's
// data, drops the records that have ended, ends the oldest live sessions
// beyond the limit (the new one is the newest), and sets the key to expire
// with the last of its sessions, all in one step. KEYS[1] the user's hash;
// ARGV: session field, record, user field, email ("" for none), now (Unix
// s), idle (s), max sessions. Returns how many live sessions it ended.
var createScript = redis.NewScript(luaEnds + `
local now, idle, max = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local last = ends(ARGV[2], idle)
local live, drop = {}, {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f = all[i]
  if #f == 16 and f ~= ARGV[1] then
    local x, c = ends(all[i + 1], idle)
    if x <= now then drop[#drop + 1] = f else live[#live + 1] = {f, c, x} end
  end
end
table.sort(live, function(a, b)
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[1] < b[1]
end)
local over = math.max(0, #live + 1 - max)
for i = 1, #live do
  if i <= over then drop[#drop + 1] = live[i][1] elseif live[i][3] > last then last = live[i][3] end
end
for _, f in ipairs(drop) do redis.call('HDEL', KEYS[1], f) end
redis.call('HSET', KEYS[1], 'u', ARGV[3], ARGV[1], ARGV[2])
if ARGV[4] == '' then redis.call('HDEL', KEYS[1], 'e') else redis.call('HSET', KEYS[1], 'e', ARGV[4]) end
redis.call('PEXPIREAT', KEYS[1], last * 1000)
return over
`)

// endScript ends one session, and the user's hash with it when no live
// session is left. KEYS[1] the user's hash; ARGV: session field, now (Unix
// s), idle (s). Returns 1 if the session was live, else 0.
var endScript = redis.NewScript(luaEnds + `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local now, idle = tonumber(ARGV[2]), tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
local left = false
for i = 1, #all, 2 do
  if #all[i] == 16 and ends(all[i + 1], idle) > now then left = true end
end
if not left then redis.call('DEL', KEYS[1]) end
if ends(v, idle) > now then return 1 end
return 0
`)

// revokeScript ends every session of the user but one (ARGV[1], "" for
// none): with none kept, that is one DEL. KEYS[1] the user's hash; ARGV:
// session field to keep, now (Unix s), idle (s). Returns how many live
// sessions it ended.
var revokeScript = redis.NewScript(luaEnds + `
local now, idle = tonumber(ARGV[2]), tonumber(ARGV[3])
local n, drop, keep = 0, {}, 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f = all[i]
  if #f == 16 then
    local x = ends(all[i + 1], idle)
    if f == ARGV[1] and x > now then
      keep = x
    else
      if x > now then n = n + 1 end
      drop[#drop + 1] = f
    end
  end
end
if keep == 0 then
  redis.call('DEL', KEYS[1])
else
  for _, f in ipairs(drop) do redis.call('HDEL', KEYS[1], f) end
  redis.call('PEXPIREAT', KEYS[1], keep * 1000)
end
return n
`)

// touchScript writes a session's Seen, if the session is still there and
// the time is later, and with an idle timeout lets the key live until the
// session's new end. It never brings back a session that has ended: Seen is
// the time of the lookup that found the session live. KEYS[1] the user's
// hash; ARGV: session field, seen (Unix s), idle (s). Returns 1 if it wrote.
var touchScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v or #v < 16 or math.floor(string.byte(v, 1) / 16) ~= 1 then return 0 end
local x, s = struct.unpack('>I4I4', v, 8)
local seen, idle = tonumber(ARGV[2]), tonumber(ARGV[3])
if seen <= s then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], string.sub(v, 1, 11) .. struct.pack('>I4', seen) .. string.sub(v, 16))
if idle > 0 then redis.call('PEXPIREAT', KEYS[1], math.min(x, seen + idle) * 1000, 'GT') end
return 1
`)

// emailScript sets the email of a user who has sessions (and only then:
// a hash holding no session must not be made). KEYS[1] the user's hash;
// ARGV[1] the email, "" for none. Returns 1 if the user had sessions.
var emailScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '' then redis.call('HDEL', KEYS[1], 'e') else redis.call('HSET', KEYS[1], 'e', ARGV[1]) end
return 1
`)

// newToken makes a token for the user and its session id.
func newToken(userhash string) (string, id, error) {
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", id{}, err
	}
	s := base64.RawURLEncoding.EncodeToString(secret[:])
	return userhash + "." + s, idOf(s), nil
}

// fill completes a new session as Create stores it (times not given are
// now's) and returns its record.
func (s *Store) fill(sess *Session, now time.Time) ([]byte, error) {
	if !validUserhash(sess.Userhash) {
		return nil, fmt.Errorf("userhash %q is not 32 hex digits", sess.Userhash)
	}
	createdMs := sess.Created * 1000
	if sess.Created == 0 {
		createdMs = now.UnixMilli()
		sess.Created = now.Unix()
	}
	if sess.Expires == 0 {
		sess.Expires = now.Add(s.cfg.TTL).Unix()
	}
	if sess.Seen == 0 {
		sess.Seen = sess.Created
	}
	record, err := encodeRecord(*sess, createdMs)
	if err != nil {
		return nil, err
	}
	// What a lookup will return: the device as stored.
	if !decodeRecord(string(record), sess) {
		return nil, errors.New("a record that does not read back")
	}
	return record, nil
}

// Create starts a session for the user and returns its token. The token is
// new at every call: a login never reuses an earlier session id. The
// user's name and email are taken from sess for all of their sessions.
func (s *Store) Create(ctx context.Context, sess Session) (string, Session, error) {
	now := s.now()
	sess.Created, sess.Expires, sess.Seen = 0, 0, 0
	record, err := s.fill(&sess, now)
	if err != nil {
		return "", Session{}, fmt.Errorf("creating session: %w", err)
	}
	token, sid, err := newToken(sess.Userhash)
	if err != nil {
		return "", Session{}, err
	}
	sess.ID = sid.String()
	ended, err := createScript.Run(ctx, s.rdb, []string{s.key(sess.Userhash)},
		string(sid[:]), record, encodeUser(sess), sess.Email, now.Unix(), s.idleSeconds(), s.cfg.MaxPerUser).Int()
	if err != nil {
		return "", Session{}, fmt.Errorf("creating session: %w", store.RedisErr(err))
	}
	if ended > 0 { // sessions ended beyond max_sessions
		if err := s.announce(ctx, sess.Userhash); err != nil {
			return "", Session{}, fmt.Errorf("creating session: %w", err)
		}
	}
	return token, sess, nil
}

// Lookup returns the live session of token in one Redis round trip, none
// when the session cache has it. When the session's Seen is older than
// refreshEvery, it is written in the background.
func (s *Store) Lookup(ctx context.Context, token string) (Session, error) {
	userhash, secret, ok := split(token)
	if !ok {
		return Session{}, ErrNotFound
	}
	sid := idOf(secret)
	now := s.now()
	var gen uint64
	if s.cache != nil {
		if sess, ok := s.cache.get(sid, now); ok && sess.Userhash == userhash && s.live(sess, now) {
			s.refresh(&sess, sid, now)
			return sess, nil
		}
		gen = s.cache.gen.Load()
	}
	vals, err := s.rdb.HMGet(ctx, s.key(userhash), fieldUser, fieldEmail, string(sid[:])).Result()
	if err != nil {
		return Session{}, fmt.Errorf("reading session: %w", store.RedisErr(err))
	}
	sess, ok := decodeSession(userhash, vals)
	if !ok || !s.live(sess, now) {
		return Session{}, ErrNotFound
	}
	sess.ID = sid.String()
	s.refresh(&sess, sid, now)
	if s.cache != nil {
		s.cache.put(sid, sess, gen, now)
	}
	return sess, nil
}

// decodeSession reads HMGET's answer for the user, email and session fields.
func decodeSession(userhash string, vals []any) (Session, bool) {
	sess := Session{Userhash: userhash}
	if len(vals) != 3 {
		return sess, false
	}
	u, okU := vals[0].(string)
	r, okR := vals[2].(string)
	if !okU || !okR || !decodeUser(u, &sess) || !decodeRecord(r, &sess) {
		return sess, false
	}
	sess.Email, _ = vals[1].(string)
	return sess, true
}

// live tells whether sess has not ended by now.
func (s *Store) live(sess Session, now time.Time) bool {
	t := now.Unix()
	return t < sess.Expires && (s.cfg.Idle <= 0 || t < sess.Seen+s.idleSeconds())
}

func (s *Store) idleSeconds() int64 { return int64(s.cfg.Idle / time.Second) }

// refresh writes the session's Seen in the background when it is stale,
// once at a time per session and touchMax at most: the request that
// noticed does not wait, and a write that is skipped is made by a later
// lookup.
func (s *Store) refresh(sess *Session, sid id, now time.Time) {
	if now.Sub(time.Unix(sess.Seen, 0)) < s.refreshEvery {
		return
	}
	s.touch(sess.Userhash, sid, now.Unix())
}

// touch writes a session's Seen in the background (see refresh). Apart
// from refresh, so that the request path passes nothing to a goroutine.
func (s *Store) touch(userhash string, sid id, seen int64) {
	s.touchMu.Lock()
	if _, busy := s.touching[sid]; busy || len(s.touching) >= touchMax {
		s.touchMu.Unlock()
		return
	}
	s.touching[sid] = struct{}{}
	s.touchMu.Unlock()
	s.touches.Add(1)
	go func() {
		defer s.touches.Done()
		defer func() {
			s.touchMu.Lock()
			delete(s.touching, sid)
			s.touchMu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), store.IOTimeout)
		defer cancel()
		err := touchScript.Run(ctx, s.rdb, []string{s.key(userhash)}, string(sid[:]), seen, s.idleSeconds()).Err()
		// Written or not (a session ended meanwhile), the cached copy may
		// stop asking; on an error the next lookup tries again.
		if err == nil && s.cache != nil {
			s.cache.seen(sid, seen)
		}
	}()
}

// Delete ends the session of token. Ending a session that does not exist is
// not an error, and is announced all the same: a cache may hold a session
// that Redis lost (a failover before its replica had it).
func (s *Store) Delete(ctx context.Context, token string) error {
	userhash, secret, ok := split(token)
	if !ok {
		return nil
	}
	_, err := s.end(ctx, userhash, idOf(secret), true)
	return err
}

// End ends the user's session whose id (as List gives it) is sessionID,
// and returns ErrNotFound when the user has no such live session, an id or
// userhash of another shape included. Only the ending of a live session is
// announced: an id made up by a client costs the other instances nothing.
func (s *Store) End(ctx context.Context, userhash, sessionID string) error {
	sid, ok := parseID(sessionID)
	if !ok || !validUserhash(userhash) {
		return ErrNotFound
	}
	ended, err := s.end(ctx, userhash, sid, false)
	if err == nil && !ended {
		err = ErrNotFound
	}
	return err
}

// end ends a session and tells whether it was live; always says whether to
// announce it when it was not.
func (s *Store) end(ctx context.Context, userhash string, sid id, always bool) (bool, error) {
	if s.cache != nil {
		s.cache.dropUser(userhash)
	}
	n, err := endScript.Run(ctx, s.rdb, []string{s.key(userhash)}, string(sid[:]), s.now().Unix(), s.idleSeconds()).Int()
	if err != nil {
		return false, fmt.Errorf("ending session: %w", store.RedisErr(err))
	}
	if n == 1 || always {
		if err := s.announce(ctx, userhash); err != nil {
			return n == 1, fmt.Errorf("ending session: %w", err)
		}
	}
	return n == 1, nil
}

// RevokeUser ends every session of the user except the one with id keepID
// (empty to end them all) and returns how many live sessions ended. A
// keepID that cannot name a session keeps none: when in doubt, end more.
func (s *Store) RevokeUser(ctx context.Context, userhash, keepID string) (int, error) {
	if !validUserhash(userhash) {
		return 0, fmt.Errorf("ending sessions: userhash %q is not 32 hex digits", userhash)
	}
	keep := ""
	if sid, ok := parseID(keepID); ok {
		keep = string(sid[:])
	}
	if s.cache != nil {
		s.cache.dropUser(userhash)
	}
	res, err := revokeScript.Run(ctx, s.rdb, []string{s.key(userhash)}, keep, s.now().Unix(), s.idleSeconds()).Result()
	if err != nil {
		return 0, fmt.Errorf("ending sessions: %w", store.RedisErr(err))
	}
	n, ok := res.(int64)
	if !ok || n < 0 {
		return 0, fmt.Errorf("ending sessions: the script answered %v, not a count", res)
	}
	if err := s.announce(ctx, userhash); err != nil {
		return 0, fmt.Errorf("ending sessions: %w", err)
	}
	return int(n), nil
}

// List returns the live sessions of the user, oldest first. Their ID
// (32 hex digits) may be shown and given back to End.
func (s *Store) List(ctx context.Context, userhash string) ([]Session, error) {
	if !validUserhash(userhash) {
		return nil, fmt.Errorf("listing sessions: userhash %q is not 32 hex digits", userhash)
	}
	all, err := s.rdb.HGetAll(ctx, s.key(userhash)).Result()
	if err != nil {
		return nil, fmt.Errorf("listing sessions: %w", store.RedisErr(err))
	}
	now := s.now()
	var out []Session
	for _, sess := range decodeHash(userhash, all) {
		if s.live(sess, now) {
			out = append(out, sess)
		}
	}
	return out, nil
}

// decodeHash reads every session in a user's hash, oldest first, ended or
// not; records it cannot read are left out.
func decodeHash(userhash string, all map[string]string) []Session {
	user := Session{Userhash: userhash, Email: all[fieldEmail]}
	if !decodeUser(all[fieldUser], &user) {
		return nil
	}
	var out []Session
	for f, v := range all {
		if len(f) != idLen {
			continue
		}
		sess := user
		if decodeRecord(v, &sess) {
			sess.ID = id([]byte(f)).String()
			out = append(out, sess)
		}
	}
	slices.SortFunc(out, func(a, b Session) int {
		if a.Created != b.Created {
			return int(a.Created - b.Created)
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// SetEmail makes the user's sessions carry email from now on (the gate
// passes it upstream), and drops them from every instance's cache. A user
// without sessions gets no hash for it; their next login brings the email
// from PostgreSQL.
func (s *Store) SetEmail(ctx context.Context, userhash, email string) error {
	if !validUserhash(userhash) {
		return fmt.Errorf("setting email: userhash %q is not 32 hex digits", userhash)
	}
	if s.cache != nil {
		s.cache.dropUser(userhash)
	}
	if err := emailScript.Run(ctx, s.rdb, []string{s.key(userhash)}, email).Err(); err != nil {
		return fmt.Errorf("setting email: %w", store.RedisErr(err))
	}
	if err := s.announce(ctx, userhash); err != nil {
		return fmt.Errorf("setting email: %w", err)
	}
	return nil
}

// Seed queues on p the writes that store sessions of one user as Create
// would, but without its pruning and limit, and returns their tokens: for
// tools that fill Redis with many sessions at once, like cmd/bench, and for
// tests that need a session made in the past. Times left zero are now's;
// the user's id, name and email are the first session's.
func (s *Store) Seed(ctx context.Context, p redis.Pipeliner, sessions ...Session) ([]string, error) {
	if len(sessions) == 0 {
		return nil, nil
	}
	user := sessions[0]
	now := s.now()
	args := []any{fieldUser, encodeUser(user)}
	if user.Email != "" {
		args = append(args, fieldEmail, user.Email)
	}
	var tokens []string
	var last int64
	for _, sess := range sessions {
		if sess.Userhash != user.Userhash {
			return nil, errors.New("seeding sessions: sessions of more than one user")
		}
		record, err := s.fill(&sess, now)
		if err != nil {
			return nil, fmt.Errorf("seeding sessions: %w", err)
		}
		token, sid, err := newToken(sess.Userhash)
		if err != nil {
			return nil, err
		}
		args = append(args, string(sid[:]), record)
		tokens = append(tokens, token)
		end := sess.Expires
		if s.cfg.Idle > 0 {
			end = min(end, sess.Seen+s.idleSeconds())
		}
		last = max(last, end)
	}
	key := s.key(user.Userhash)
	p.HSet(ctx, key, args...)
	p.ExpireAt(ctx, key, time.Unix(last, 0))
	return tokens, nil
}

// Userhash returns the user part of a well-formed token.
func Userhash(token string) (string, bool) {
	userhash, _, ok := split(token)
	return userhash, ok
}

// key is the user's hash.
func (s *Store) key(userhash string) string { return userKey(s.cfg.Prefix, userhash) }

func userKey(prefix, userhash string) string { return prefix + ":{" + userhash + "}" }

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

// validUserhash tells whether s has a userhash's shape (32 lowercase hex
// digits): one that cannot end the hash tag or address another key.
func validUserhash(s string) bool {
	if len(s) != userhashLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// FormatID shortens a session id for logs: enough to tell sessions apart,
// useless for finding one.
func FormatID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
