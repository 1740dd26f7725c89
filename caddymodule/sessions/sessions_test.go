package sessions

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	alice = "0123456789abcdef0123456789abcdef"
	bob   = "fedcba9876543210fedcba9876543210"
)

// newStore returns a store over a client of its own of tp, under a key
// prefix of its own, and that client.
func newStore(t testing.TB, tp testenv.Topology, cfg Config) (*Store, redis.UniversalClient) {
	t.Helper()
	rdb := testenv.RedisClient(t, tp)
	if cfg.Prefix == "" {
		cfg.Prefix = testenv.Prefix(t)
	}
	return New(rdb, cfg), rdb
}

// keys lists the keys under the store's prefix that match pattern (after
// the prefix), on every node.
func keys(t *testing.T, s *Store, rdb redis.UniversalClient, pattern string) []string {
	t.Helper()
	keys, err := testenv.Keys(t.Context(), rdb, s.cfg.Prefix+pattern)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// clock makes s's time the test's: it starts now (so that the keys' real
// expiry agrees) and only moves forward.
func clock(s *Store) *time.Time {
	now := time.Now().Truncate(time.Second)
	s.now = func() time.Time { return now }
	return &now
}

// aliceAt is a session of alice as the login makes it.
func aliceAt(ip string) Session {
	return Session{UserID: 7, Userhash: alice, Username: "alice", Email: "alice@example.com",
		IP: ip, Device: "Firefox on Linux", AMR: []string{"pwd"}}
}

func create(t *testing.T, s *Store, sess Session) (string, Session) {
	t.Helper()
	token, got, err := s.Create(t.Context(), sess)
	if err != nil {
		t.Fatal(err)
	}
	return token, got
}

// hash is the user's hash as Redis holds it.
func hash(t *testing.T, s *Store, userhash string) map[string]string {
	t.Helper()
	all, err := s.rdb.HGetAll(t.Context(), s.key(userhash)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// sessionFields counts the session fields of the user's hash.
func sessionFields(t *testing.T, s *Store, userhash string) int {
	t.Helper()
	n := 0
	for f := range hash(t, s, userhash) {
		if len(f) == idLen {
			n++
		}
	}
	return n
}

func TestCreateLookupDelete(t *testing.T) { testenv.EachTopology(t, testCreateLookupDelete) }

func testCreateLookupDelete(t *testing.T, tp testenv.Topology) {
	s, rdb := newStore(t, tp, Config{TTL: time.Hour, MaxPerUser: 10})
	now := clock(s)
	token, sess := create(t, s, aliceAt("192.0.2.1"))
	if len(token) != TokenLen || !strings.HasPrefix(token, alice+".") {
		t.Fatalf("token %q", token)
	}
	want := Session{UserID: 7, Userhash: alice, Username: "alice", Email: "alice@example.com",
		Created: now.Unix(), Expires: now.Add(time.Hour).Unix(), Seen: now.Unix(),
		IP: "192.0.2.1", Device: "Firefox on Linux", AMR: []string{"pwd"}, ID: sess.ID}
	if !equal(sess, want) || len(sess.ID) != 32 {
		t.Fatalf("created %+v, want %+v", sess, want)
	}
	got, err := s.Lookup(t.Context(), token)
	if err != nil || !equal(got, want) {
		t.Fatalf("lookup: %+v, %v; want %+v", got, err, want)
	}

	// Stored: one hash for the user, the user's data once, the session under
	// its 16-byte id, no trace of the secret, compact.
	key, field, _ := Where(s.cfg.Prefix, token)
	if keys := keys(t, s, rdb, ":*"); !slices.Equal(keys, []string{key}) || key != s.cfg.Prefix+":{"+alice+"}" {
		t.Fatalf("keys %v, want [%s]", keys, key)
	}
	all := hash(t, s, alice)
	if len(all) != 3 || all[fieldEmail] != "alice@example.com" || all[fieldUser] != "\x07alice" || all[field] == "" {
		t.Fatalf("hash %q", all)
	}
	if strings.Contains(strings.Join(slices.Collect(mapValues(all)), ""), token[33:]) {
		t.Fatal("Redis holds the secret")
	}
	if enc := rdb.ObjectEncoding(t.Context(), key).Val(); enc != "listpack" {
		t.Fatalf("encoding %s", enc)
	}
	if ttl := rdb.PTTL(t.Context(), key).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("key TTL %s", ttl)
	}

	for _, tc := range []struct{ name, token string }{
		{"empty", ""},
		{"short", "x"},
		{"one character more", token + "x"},
		{"the userhash in capitals", strings.ToUpper(token[:32]) + token[32:]},
		{"a brace in the userhash", "{" + token[1:]},
		{"another secret", alice + "." + strings.Repeat("A", 43)},
		{"the secret of another user", bob + token[32:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Lookup(t.Context(), tc.token); !errors.Is(err, ErrNotFound) {
				t.Fatalf("lookup %q: %v", tc.token, err)
			}
		})
	}
	if err := s.Delete(t.Context(), token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(t.Context(), token); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if n := rdb.Exists(t.Context(), key).Val(); n != 0 {
		t.Fatalf("the last session's end left the hash: %q", hash(t, s, alice))
	}
	if err := s.Delete(t.Context(), token); err != nil {
		t.Fatalf("deleting again: %v", err)
	}
}

func mapValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

func equal(a, b Session) bool {
	return a.UserID == b.UserID && a.Userhash == b.Userhash && a.Username == b.Username && a.Email == b.Email &&
		a.Created == b.Created && a.Expires == b.Expires && a.Seen == b.Seen && a.IP == b.IP &&
		a.Device == b.Device && slices.Equal(a.AMR, b.AMR) && a.ID == b.ID
}

// The record keeps what a session is, within the 64 bytes that keep the
// user's hash compact, whatever the address and device.
func TestRecord(t *testing.T) {
	base := Session{Created: 1_800_000_000, Expires: 1_800_086_400, Seen: 1_800_000_100}
	with := func(f func(*Session)) Session { s := base; f(&s); return s }
	long := strings.Repeat("x", 40)
	for _, tc := range []struct {
		name string
		in   Session
		want Session // what reads back
		err  string
	}{
		{"no address, no device", base, base, ""},
		{"IPv4", with(func(s *Session) { s.IP = "192.0.2.1" }), with(func(s *Session) { s.IP = "192.0.2.1" }), ""},
		{"IPv4 in IPv6", with(func(s *Session) { s.IP = "::ffff:192.0.2.1" }), with(func(s *Session) { s.IP = "192.0.2.1" }), ""},
		{"IPv6", with(func(s *Session) { s.IP = "2001:db8::1" }), with(func(s *Session) { s.IP = "2001:db8::1" }), ""},
		{"IPv6 with a zone", with(func(s *Session) { s.IP = "fe80::1%eth0" }), with(func(s *Session) { s.IP = "fe80::1" }), ""},
		{"not an address", with(func(s *Session) { s.IP = "unknown" }), base, ""},
		{"methods, in the table's order", with(func(s *Session) { s.AMR = []string{"otp", "pwd", "mfa"} }),
			with(func(s *Session) { s.AMR = []string{"pwd", "otp", "mfa"} }), ""},
		{"methods past the first byte", with(func(s *Session) { s.AMR = []string{"hwk", "wia"} }),
			with(func(s *Session) { s.AMR = []string{"hwk", "wia"} }), ""},
		{"a method RFC 8176 does not name", with(func(s *Session) { s.AMR = []string{"magic"} }), Session{}, `authentication method "magic"`},
		{"a device of useragent.MaxLen with IPv4", with(func(s *Session) { s.IP = "192.0.2.1"; s.Device = long }),
			with(func(s *Session) { s.IP = "192.0.2.1"; s.Device = long }), ""},
		{"a device of useragent.MaxLen with IPv6: shortened", with(func(s *Session) { s.IP = "2001:db8::1"; s.Device = long }),
			with(func(s *Session) { s.IP = "2001:db8::1"; s.Device = long[:64-16-16] }), ""},
		{"shortened on a character boundary", with(func(s *Session) { s.IP = "2001:db8::1"; s.Device = "x" + strings.Repeat("é", 20) }),
			with(func(s *Session) { s.IP = "2001:db8::1"; s.Device = "x" + strings.Repeat("é", 15) }), ""},
		{"a time past 2106", with(func(s *Session) { s.Expires = 1 << 32 }), Session{}, "out of the record's range"},
		{"a negative time", with(func(s *Session) { s.Created = -1 }), Session{}, "out of the record's range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := encodeRecord(tc.in, tc.in.Created*1000)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > maxRecord {
				t.Fatalf("%d bytes", len(b))
			}
			var got Session
			if !decodeRecord(string(b), &got) || !equal(got, tc.want) {
				t.Fatalf("read back %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A record or user field Redis holds that this package did not write, or
// no longer reads, names no session: never a panic, never a session made up.
// The next login prunes a record whose end the script cannot read, and
// writes the user's data anew.
func TestBadRecords(t *testing.T) { testenv.EachTopology(t, testBadRecords) }

func testBadRecords(t *testing.T, tp testenv.Topology) {
	good, err := encodeRecord(Session{Created: 1, Expires: 1 << 31, Seen: 1, IP: "192.0.2.1"}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	head := string(good[:recordHead])
	for _, tc := range []struct {
		name, user, record string
		pruned             bool // by the next login
	}{
		{"empty record", "\x07alice", "", true},
		{"short record", "\x07alice", head, true},
		{"another format", "\x07alice", "\x21" + string(good[1:]), true},
		{"an unknown address kind", "\x07alice", "\x13" + string(good[1:]), false},
		{"an address cut short", "\x07alice", string(good[:len(good)-1]), false},
		{"unknown method bits", "\x07alice", head + "\x80\x80\x80\x80\x01" + string(good[recordHead+1:]), false},
		{"a method varint that never ends", "\x07alice", head + "\xff", false},
		{"no user", "", string(good), false},
		{"a user without a name", "\x07", string(good), false},
		{"a user id that never ends", "\xff\xff", string(good), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, rdb := newStore(t, tp, Config{TTL: time.Hour, MaxPerUser: 10})
			clock(s)
			token, _ := create(t, s, aliceAt("192.0.2.1"))
			key, field, _ := Where(s.cfg.Prefix, token)
			rdb.HSet(t.Context(), key, field, tc.record)
			if tc.user == "" {
				rdb.HDel(t.Context(), key, fieldUser)
			} else {
				rdb.HSet(t.Context(), key, fieldUser, tc.user)
			}
			if got, err := s.Lookup(t.Context(), token); !errors.Is(err, ErrNotFound) {
				t.Fatalf("lookup: %+v, %v", got, err)
			}
			if list, err := s.List(t.Context(), alice); err != nil || len(list) != 0 {
				t.Fatalf("list: %+v, %v", list, err)
			}
			create(t, s, aliceAt("192.0.2.2"))
			v, stored := hash(t, s, alice)[field]
			if stored == tc.pruned {
				t.Fatalf("record %q stored %v after a login", v, stored)
			}
			_, err := s.Lookup(t.Context(), token)
			if healed := err == nil; healed != (stored && v == string(good)) {
				t.Fatalf("after a login: %v", err)
			}
		})
	}
}

// A session ends when its record says so, whatever the key's TTL: at
// session_ttl, and with session_idle when unused that long.
func TestExpiry(t *testing.T) { testenv.EachTopology(t, testExpiry) }

func testExpiry(t *testing.T, tp testenv.Topology) {
	for _, tc := range []struct {
		name   string
		idle   time.Duration
		after  time.Duration // since the login, no use in between
		active bool
	}{
		{"absolute, just before", 0, 2*time.Hour - time.Second, true},
		{"absolute, at the end", 0, 2 * time.Hour, false},
		{"idle, just before", time.Hour, time.Hour - time.Second, true},
		{"idle, at the end", time.Hour, time.Hour, false},
		{"idle longer than the lifetime", 3 * time.Hour, 2 * time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t, tp, Config{TTL: 2 * time.Hour, Idle: tc.idle, MaxPerUser: 10, CacheSize: 10})
			// As if watched, and keeping entries long: the cache must not
			// outlive the record either.
			s.cache.reset(true)
			s.cache.maxAge = 4 * time.Hour
			now := clock(s)
			token, _ := create(t, s, aliceAt(""))
			if _, err := s.Lookup(t.Context(), token); err != nil {
				t.Fatal(err)
			}
			*now = now.Add(tc.after)
			for _, where := range []string{"from the cache", "from Redis"} {
				if where == "from Redis" {
					s.cache.reset(true)
				}
				_, err := s.Lookup(t.Context(), token)
				if live := err == nil; live != tc.active {
					t.Fatalf("%s: live %v (%v), want %v", where, live, err, tc.active)
				}
			}
			s.touches.Wait()
		})
	}
}

// Use keeps an idle session alive: a lookup writes Seen once it is
// refreshEvery old (seenEvery, or a quarter of the idle timeout if that is
// less), in the background, and not before; the key's TTL follows. The
// absolute end still ends it.
func TestIdleSliding(t *testing.T) { testenv.EachTopology(t, testIdleSliding) }

func testIdleSliding(t *testing.T, tp testenv.Topology) {
	for _, cache := range []int{0, 10} {
		name := map[int]string{0: "no cache", 10: "cache"}[cache]
		t.Run(name, func(t *testing.T) {
			s, rdb := newStore(t, tp, Config{TTL: 2 * time.Hour, Idle: time.Hour, MaxPerUser: 10, CacheSize: cache})
			if s.cache != nil {
				s.cache.reset(true)
			}
			if s.refreshEvery != seenEvery {
				t.Fatalf("refresh every %s", s.refreshEvery)
			}
			now := clock(s)
			start := *now
			token, _ := create(t, s, aliceAt(""))
			key, field, _ := Where(s.cfg.Prefix, token)
			seen := func() int64 {
				var sess Session
				if !decodeRecord(rdb.HGet(t.Context(), key, field).Val(), &sess) {
					t.Fatal("unreadable record")
				}
				return sess.Seen
			}
			if ttl := rdb.PTTL(t.Context(), key).Val(); ttl > time.Hour || ttl < 59*time.Minute {
				t.Fatalf("key TTL %s, want the idle end", ttl)
			}
			for _, step := range []struct {
				at   time.Duration // since the login
				seen time.Duration // Seen afterwards, since the login
			}{
				{4 * time.Minute, 0},                 // fresh: no write
				{5 * time.Minute, 5 * time.Minute},   // seenEvery old: written
				{9 * time.Minute, 5 * time.Minute},   // fresh again
				{62 * time.Minute, 62 * time.Minute}, // alive only thanks to the write
				{125 * time.Minute, 0},               // past session_ttl: refused, not written
			} {
				*now = start.Add(step.at)
				_, err := s.Lookup(t.Context(), token)
				s.touches.Wait()
				if step.seen == 0 && step.at > time.Hour {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("at %s: %v, want the session ended", step.at, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("at %s: %v", step.at, err)
				}
				if got := seen(); got != start.Add(step.seen).Unix() {
					t.Fatalf("at %s: Seen %s after the login", step.at, time.Duration(got-start.Unix())*time.Second)
				}
			}
			// The key lives until the session's last possible end: the
			// absolute one now (login + 2h), since the write at 62 min.
			if at := rdb.ExpireTime(t.Context(), key).Val(); at != time.Duration(start.Add(2*time.Hour).Unix())*time.Second {
				t.Fatalf("key expires at %s after the login", at-time.Duration(start.Unix())*time.Second)
			}
		})
	}
}

// Without session_idle, Seen is still kept, every seenEvery, for the
// account page; the key's end stays the absolute one.
func TestSeenWithoutIdle(t *testing.T) { testenv.EachTopology(t, testSeenWithoutIdle) }

func testSeenWithoutIdle(t *testing.T, tp testenv.Topology) {
	s, rdb := newStore(t, tp, Config{TTL: 24 * time.Hour, MaxPerUser: 10})
	now := clock(s)
	start := *now
	token, _ := create(t, s, aliceAt(""))
	*now = start.Add(seenEvery)
	if _, err := s.Lookup(t.Context(), token); err != nil {
		t.Fatal(err)
	}
	s.touches.Wait()
	list, err := s.List(t.Context(), alice)
	if err != nil || len(list) != 1 || list[0].Seen != now.Unix() {
		t.Fatalf("list %+v, %v", list, err)
	}
	key, _, _ := Where(s.cfg.Prefix, token)
	if at := rdb.ExpireTime(t.Context(), key).Val(); at != time.Duration(start.Add(24*time.Hour).Unix())*time.Second {
		t.Fatalf("key expires %s after the login", at-time.Duration(start.Unix())*time.Second)
	}
}

// max_sessions ends the oldest sessions (by start, then id) when a new one
// starts, never the new one; records that have ended are pruned first and
// do not count.
func TestMaxPerUserAndPrune(t *testing.T) { testenv.EachTopology(t, testMaxPerUserAndPrune) }

func testMaxPerUserAndPrune(t *testing.T, tp testenv.Topology) {
	for _, tc := range []struct {
		name  string
		idle  time.Duration
		max   int
		steps []time.Duration // login times, since the first
		at    time.Duration   // the last login
		live  []int           // which of steps (and the last, len(steps)) remain
	}{
		{"under the limit", 0, 3, []time.Duration{0, time.Second}, 2 * time.Second, []int{0, 1, 2}},
		{"the oldest ends", 0, 3, []time.Duration{0, time.Second, 2 * time.Second}, 3 * time.Second, []int{1, 2, 3}},
		{"two oldest end", 0, 2, []time.Duration{0, time.Second, 2 * time.Second}, 3 * time.Second, []int{2, 3}},
		{"one allowed", 0, 1, []time.Duration{0}, 0, []int{1}},
		{"within one second, by the millisecond", 0, 2, []time.Duration{0, time.Millisecond}, 2 * time.Millisecond, []int{1, 2}},
		{"expired records pruned, not counted", 0, 2, []time.Duration{0, 10 * time.Minute}, 61 * time.Minute, []int{1, 2}},
		{"idle records pruned, not counted", 30 * time.Minute, 2, []time.Duration{0, 10 * time.Minute, 20 * time.Minute}, 45 * time.Minute, []int{2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, rdb := newStore(t, tp, Config{TTL: time.Hour, Idle: tc.idle, MaxPerUser: tc.max})
			now := clock(s)
			start := *now
			var tokens []string
			for _, at := range append(tc.steps, tc.at) {
				*now = start.Add(at)
				token, _ := create(t, s, aliceAt(""))
				tokens = append(tokens, token)
			}
			for i, token := range tokens {
				_, field, _ := Where(s.cfg.Prefix, token)
				_, stored := hash(t, s, alice)[field]
				if want := slices.Contains(tc.live, i); stored != want {
					t.Errorf("session %d stored %v, want %v", i, stored, want)
				}
			}
			if n := sessionFields(t, s, alice); n != len(tc.live) {
				t.Errorf("%d session fields, want %d", n, len(tc.live))
			}
			// The key ends with the last of its sessions.
			last := start.Add(tc.at + time.Hour)
			if tc.idle > 0 {
				last = start.Add(tc.at + tc.idle)
			}
			if at := rdb.ExpireTime(t.Context(), s.key(alice)).Val(); at != time.Duration(last.Unix())*time.Second {
				t.Errorf("key expires %s after the last login", at-time.Duration(start.Add(tc.at).Unix())*time.Second)
			}
		})
	}
	// Logins in the same second: the new one is never the one to go.
	s, _ := newStore(t, tp, Config{TTL: time.Hour, MaxPerUser: 2})
	clock(s)
	for range 5 {
		token, _ := create(t, s, aliceAt(""))
		if _, err := s.Lookup(t.Context(), token); err != nil {
			t.Fatalf("the newest session ended: %v", err)
		}
	}
	if n := sessionFields(t, s, alice); n != 2 {
		t.Fatalf("%d sessions", n)
	}
}

// List gives each live session with where and how it was made, oldest
// first, and ids that End takes back.
func TestListAndEnd(t *testing.T) { testenv.EachTopology(t, testListAndEnd) }

func testListAndEnd(t *testing.T, tp testenv.Topology) {
	s, rdb := newStore(t, tp, Config{TTL: time.Hour, MaxPerUser: 10})
	now := clock(s)
	start := *now
	first, _ := create(t, s, aliceAt("192.0.2.1"))
	*now = start.Add(time.Second)
	second, _ := create(t, s, Session{UserID: 7, Userhash: alice, Username: "alice", Email: "alice@example.com",
		IP: "2001:db8::2", Device: "Safari on iOS", AMR: []string{"pwd", "otp", "mfa"}})
	*now = start.Add(2 * time.Second)
	third, _ := create(t, s, aliceAt("192.0.2.3"))
	create(t, s, Session{UserID: 8, Userhash: bob, Username: "bob"})
	// An ended session is not listed.
	*now = start.Add(30 * time.Minute)
	key, field, _ := Where(s.cfg.Prefix, third)
	rec, _ := encodeRecord(Session{Expires: start.Add(29 * time.Minute).Unix(), Seen: start.Unix()}, start.UnixMilli())
	rdb.HSet(t.Context(), key, field, rec)

	list, err := s.List(t.Context(), alice)
	if err != nil || len(list) != 2 {
		t.Fatalf("list %+v, %v", list, err)
	}
	ended := id([]byte(field)).String()
	want := []Session{
		{UserID: 7, Userhash: alice, Username: "alice", Email: "alice@example.com", Created: start.Unix(),
			Expires: start.Add(time.Hour).Unix(), Seen: start.Unix(), IP: "192.0.2.1", Device: "Firefox on Linux", AMR: []string{"pwd"}},
		{UserID: 7, Userhash: alice, Username: "alice", Email: "alice@example.com", Created: start.Unix() + 1,
			Expires: start.Add(time.Hour).Unix() + 1, Seen: start.Unix() + 1, IP: "2001:db8::2", Device: "Safari on iOS", AMR: []string{"pwd", "otp", "mfa"}},
	}
	for i, tok := range []string{first, second} {
		sess, err := s.Lookup(t.Context(), tok)
		if err != nil {
			t.Fatal(err)
		}
		want[i].ID = sess.ID
		if !equal(list[i], want[i]) {
			t.Errorf("listed %d: %+v, want %+v", i, list[i], want[i])
		}
	}

	for _, tc := range []struct{ name, userhash, id string }{
		{"an id in capitals", alice, strings.ToUpper(list[0].ID)},
		{"a short id", alice, list[0].ID[:30]},
		{"the id with more after it", alice, list[0].ID + ":x"},
		{"a key pattern for an id", alice, "*"},
		{"a bad userhash", "x}", list[0].ID},
		{"another user's session", bob, list[0].ID},
		{"no such session", alice, strings.Repeat("0", 32)},
		{"an ended session", alice, ended},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.End(t.Context(), tc.userhash, tc.id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("End: %v, want ErrNotFound", err)
			}
			if n := sessionFields(t, s, alice); n != 3 && tc.id != ended || n != 2 && tc.id == ended {
				t.Fatalf("%d session fields left", n)
			}
		})
	}
	if err := s.End(t.Context(), alice, list[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(t.Context(), first); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ended session: %v", err)
	}
	if _, err := s.Lookup(t.Context(), second); err != nil {
		t.Fatalf("the other session: %v", err)
	}
	// Ending the last live one ends the hash, the ended record with it.
	if err := s.End(t.Context(), alice, list[1].ID); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(t.Context(), key).Val(); n != 0 {
		t.Fatalf("hash left: %q", hash(t, s, alice))
	}
	if n := sessionFields(t, s, bob); n != 1 {
		t.Fatalf("bob has %d sessions", n)
	}
}

// RevokeUser ends the user's sessions but the one kept, counting the live
// ones; without one to keep, the hash goes whole.
func TestRevokeUser(t *testing.T) { testenv.EachTopology(t, testRevokeUser) }

func testRevokeUser(t *testing.T, tp testenv.Topology) {
	for _, tc := range []struct {
		name  string
		keep  func(ids []string) string
		ended int
		kept  int // index of the session left, -1 for none
	}{
		{"all", func([]string) string { return "" }, 3, -1},
		{"all but one", func(ids []string) string { return ids[1] }, 2, 1},
		{"keep an ended session: all", func(ids []string) string { return ids[3] }, 3, -1},
		{"keep a malformed id: all", func(ids []string) string { return "current" }, 3, -1},
		{"keep another user's session: all", func(ids []string) string { return ids[4] }, 3, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, rdb := newStore(t, tp, Config{TTL: time.Hour, MaxPerUser: 10})
			now := clock(s)
			start := *now
			var tokens, ids []string
			for i := range 4 {
				*now = start.Add(time.Duration(i) * time.Second)
				tok, sess := create(t, s, aliceAt(""))
				tokens, ids = append(tokens, tok), append(ids, sess.ID)
			}
			// The fourth has ended (its record says so).
			key, field, _ := Where(s.cfg.Prefix, tokens[3])
			rec, _ := encodeRecord(Session{Expires: start.Unix() + 1, Seen: start.Unix()}, start.UnixMilli())
			rdb.HSet(t.Context(), key, field, rec)
			_, other := create(t, s, Session{UserID: 8, Userhash: bob, Username: "bob"})
			ids = append(ids, other.ID)
			*now = start.Add(time.Minute)

			n, err := s.RevokeUser(t.Context(), alice, tc.keep(ids))
			if err != nil || n != tc.ended {
				t.Fatalf("RevokeUser = %d, %v; want %d", n, err, tc.ended)
			}
			for i, tok := range tokens[:3] {
				_, err := s.Lookup(t.Context(), tok)
				if live := err == nil; live != (i == tc.kept) {
					t.Errorf("session %d live %v", i, live)
				}
			}
			if tc.kept < 0 {
				if rdb.Exists(t.Context(), key).Val() != 0 {
					t.Fatalf("hash left: %q", hash(t, s, alice))
				}
			} else {
				if n := sessionFields(t, s, alice); n != 1 {
					t.Fatalf("%d session fields", n)
				}
				if at := rdb.ExpireTime(t.Context(), key).Val(); at != time.Duration(start.Add(time.Hour+time.Second).Unix())*time.Second {
					t.Fatalf("key expires %s after the kept login", at-time.Duration(start.Unix()+1)*time.Second)
				}
			}
			if n := sessionFields(t, s, bob); n != 1 {
				t.Fatalf("bob's sessions touched: %d", n)
			}
		})
	}
}

// SetEmail changes what every session of the user carries, also where a
// cache has it, and makes no hash for a user without sessions.
func TestSetEmail(t *testing.T) { testenv.EachTopology(t, testSetEmail) }

func testSetEmail(t *testing.T, tp testenv.Topology) {
	s, rdb := newStore(t, tp, Config{TTL: time.Hour, MaxPerUser: 10, CacheSize: 10})
	s.cache.reset(true)
	clock(s)
	a, _ := create(t, s, aliceAt(""))
	b, _ := create(t, s, aliceAt(""))
	for _, tok := range []string{a, b} {
		if _, err := s.Lookup(t.Context(), tok); err != nil { // cached
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ name, email string }{
		{"a new email", "alice@new.example"},
		{"none", ""},
		{"again", "alice@example.org"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.SetEmail(t.Context(), alice, tc.email); err != nil {
				t.Fatal(err)
			}
			for _, tok := range []string{a, b} {
				if sess, err := s.Lookup(t.Context(), tok); err != nil || sess.Email != tc.email {
					t.Fatalf("lookup: %q, %v", sess.Email, err)
				}
			}
			if e, ok := hash(t, s, alice)[fieldEmail]; e != tc.email || ok != (tc.email != "") {
				t.Fatalf("stored email %q (%v)", e, ok)
			}
		})
	}
	if err := s.SetEmail(t.Context(), bob, "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if rdb.Exists(t.Context(), s.key(bob)).Val() != 0 {
		t.Fatal("a hash made for a user without sessions")
	}
	if err := s.SetEmail(t.Context(), "BOB", "bob@example.com"); err == nil {
		t.Fatal("a bad userhash taken")
	}
	// A login brings the user's data of the moment (to the caches as they
	// fill again: it announces nothing, the data being PostgreSQL's, which
	// SetEmail is told of when it changes).
	create(t, s, Session{UserID: 7, Userhash: alice, Username: "alice", Email: "alice@example.net"})
	s.cache.reset(true)
	if sess, err := s.Lookup(t.Context(), a); err != nil || sess.Email != "alice@example.net" {
		t.Fatalf("after a login: %q, %v", sess.Email, err)
	}
}

// Seed writes sessions as Create does, in the past if asked; Stored finds
// them all, ended or not.
func TestSeedAndStored(t *testing.T) { testenv.EachTopology(t, testSeedAndStored) }

func testSeedAndStored(t *testing.T, tp testenv.Topology) {
	s, rdb := newStore(t, tp, Config{TTL: time.Hour, MaxPerUser: 10})
	now := clock(s)
	old := now.Add(-10 * time.Minute).Unix()
	p := rdb.Pipeline()
	tokens, err := s.Seed(t.Context(), p, aliceAt("192.0.2.1"), Session{Userhash: alice, Created: old, IP: "192.0.2.2"})
	if err != nil {
		t.Fatal(err)
	}
	bobs, err := s.Seed(t.Context(), p, Session{UserID: 8, Userhash: bob, Username: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i, tok := range append(tokens, bobs...) {
		sess, err := s.Lookup(t.Context(), tok)
		if err != nil {
			t.Fatalf("seeded %d: %v", i, err)
		}
		if i == 1 && (sess.Created != old || sess.Username != "alice" || sess.IP != "192.0.2.2") {
			t.Fatalf("seeded in the past: %+v", sess)
		}
	}
	if enc := rdb.ObjectEncoding(t.Context(), s.key(alice)).Val(); enc != "listpack" {
		t.Fatalf("encoding %s", enc)
	}
	stored, err := Stored(t.Context(), rdb, s.cfg.Prefix)
	if err != nil || len(stored) != 3 {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	if stored[0].Userhash != alice || stored[0].Created != old || stored[2].Username != "bob" {
		t.Fatalf("stored %+v", stored)
	}
	if _, err := s.Seed(t.Context(), p, aliceAt(""), Session{Userhash: bob}); err == nil {
		t.Fatal("sessions of two users seeded as one's")
	}
}

// A user's hash stays a listpack at its largest: max_sessions records of
// the longest kind, a name and an email of 64 bytes.
func TestCompactAtMost(t *testing.T) { testenv.EachTopology(t, testCompactAtMost) }

func testCompactAtMost(t *testing.T, tp testenv.Topology) {
	s, rdb := newStore(t, tp, Config{TTL: time.Hour, MaxPerUser: 126})
	clock(s)
	sess := Session{UserID: 1 << 40, Userhash: alice, Username: strings.Repeat("a", 58), Email: strings.Repeat("e", 64),
		IP: "2001:db8::1", Device: strings.Repeat("d", 40), AMR: amrNames}
	for range 130 {
		create(t, s, sess)
	}
	if enc := rdb.ObjectEncoding(t.Context(), s.key(alice)).Val(); enc != "listpack" {
		t.Fatalf("encoding %s", enc)
	}
	if n := sessionFields(t, s, alice); n != 126 {
		t.Fatalf("%d sessions", n)
	}
	for f, v := range hash(t, s, alice) {
		if len(f) > 64 || len(v) > 64 {
			t.Fatalf("field %q of %d bytes", f, len(v))
		}
	}
}

// The cache serves what it validated, forgets a user's sessions when told,
// and never stores a read that raced with an invalidation.
func TestCache(t *testing.T) {
	c := newCache(2, time.Minute)
	now := time.Now()
	sess := Session{UserID: 1, Userhash: alice, Expires: now.Add(time.Hour).Unix(), Seen: now.Unix()}
	k1, k2, k3 := id{1}, id{2}, id{3}

	c.put(k1, sess, c.gen.Load(), now)
	if _, ok := c.get(k1, now); ok {
		t.Fatal("used while the subscription is not live")
	}
	c.reset(true)
	gen := c.gen.Load()
	c.put(k1, sess, gen, now)
	if got, ok := c.get(k1, now); !ok || got.UserID != 1 {
		t.Fatal("not cached")
	}
	c.seen(k1, now.Unix()+60)
	if got, _ := c.get(k1, now); got.Seen != now.Unix()+60 {
		t.Fatalf("seen not kept: %d", got.Seen)
	}
	if _, ok := c.get(k1, now.Add(2*time.Minute)); ok {
		t.Fatal("served past its age")
	}
	if _, ok := c.get(k1, now.Add(2*time.Hour)); ok {
		t.Fatal("served past the session's expiry")
	}

	stale := c.gen.Load()
	c.dropUser(alice)
	if _, ok := c.get(k1, now); ok {
		t.Fatal("served after dropUser")
	}
	c.put(k2, sess, stale, now) // read before the invalidation
	if _, ok := c.get(k2, now); ok {
		t.Fatal("stored a read that raced with an invalidation")
	}

	gen = c.gen.Load()
	c.put(k1, sess, gen, now)
	c.put(k2, sess, gen, now)
	c.put(k3, sess, gen, now) // over the size: not stored
	if _, ok := c.get(k3, now); ok || len(c.entries) != 2 {
		t.Fatalf("size bound not kept: %d entries", len(c.entries))
	}
	c.sweep(now.Add(2 * time.Minute))
	if len(c.entries) != 0 || len(c.byUser) != 0 {
		t.Fatalf("sweep left %d entries, %d users", len(c.entries), len(c.byUser))
	}
	c.put(k1, sess, c.gen.Load(), now)
	c.reset(false)
	if _, ok := c.get(k1, now); ok || len(c.entries) != 0 {
		t.Fatal("entries survived a lost subscription")
	}
}

// Where names the key and field of a token, or nothing for a bad one.
func TestWhere(t *testing.T) {
	token := alice + "." + strings.Repeat("A", 43)
	key, field, ok := Where("p", token)
	sid := idOf(strings.Repeat("A", 43))
	if !ok || key != "p:{"+alice+"}" || field != string(sid[:]) {
		t.Fatalf("Where = %q, %q, %v", key, field, ok)
	}
	if _, _, ok := Where("p", "x"); ok {
		t.Fatal("a bad token placed")
	}
}

// Seen is written every seenEvery, or a quarter of the idle timeout when
// that is shorter.
func TestRefreshEvery(t *testing.T) {
	for _, tc := range []struct {
		idle, want time.Duration
	}{
		{0, 5 * time.Minute},
		{time.Hour, 5 * time.Minute},
		{20 * time.Minute, 5 * time.Minute},
		{8 * time.Minute, 2 * time.Minute},
		{time.Minute, 15 * time.Second},
	} {
		t.Run(tc.idle.String(), func(t *testing.T) {
			if got := New(nil, Config{TTL: time.Hour, Idle: tc.idle}).refreshEvery; got != tc.want {
				t.Fatalf("refresh every %s, want %s", got, tc.want)
			}
		})
	}
}

// uvarint reads what binary.AppendUvarint writes, and refuses what
// binary.Uvarint refuses.
func TestUvarint(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
	}{
		{"zero", "\x00"},
		{"one byte", "\x7f"},
		{"two bytes", "\x80\x01"},
		{"the largest", string(binary.AppendUvarint(nil, 1<<64-1))},
		{"followed by more", "\x07alice"},
		{"empty", ""},
		{"never ends", "\xff\xff"},
		{"overflows", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, n := uvarint(tc.in)
			wv, wn := binary.Uvarint([]byte(tc.in))
			if v != wv || n != wn {
				t.Fatalf("uvarint = %d, %d; binary.Uvarint = %d, %d", v, n, wv, wn)
			}
		})
	}
}

// Every script, for users whose hashes land on every master of a cluster:
// each touches only the key it declares, so none is refused for a key of
// another slot, wherever the user lives.
func TestScriptsForUsersEverywhere(t *testing.T) {
	testenv.EachTopology(t, testScriptsForUsersEverywhere)
}

func testScriptsForUsersEverywhere(t *testing.T, tp testenv.Topology) {
	s, rdb := newStore(t, tp, Config{TTL: time.Hour, Idle: time.Hour, MaxPerUser: 2})
	now := clock(s)
	start := *now
	nodes := map[string]bool{}
	for i := range 12 {
		userhash := fmt.Sprintf("%032x", i*7919)
		*now = start
		var tokens []string
		for j := range 3 { // create, the third beyond max_sessions
			*now = start.Add(time.Duration(j) * time.Second)
			token, _ := create(t, s, Session{UserID: int64(i), Userhash: userhash, Username: "u"})
			tokens = append(tokens, token)
		}
		*now = start.Add(10 * time.Minute)
		if _, err := s.Lookup(t.Context(), tokens[2]); err != nil { // touch
			t.Fatal(err)
		}
		s.touches.Wait()
		if err := s.SetEmail(t.Context(), userhash, "u@example.com"); err != nil {
			t.Fatal(err)
		}
		list, err := s.List(t.Context(), userhash)
		if err != nil || len(list) != 2 || list[1].Seen != now.Unix() || list[0].Email != "u@example.com" {
			t.Fatalf("user %d: %+v, %v", i, list, err)
		}
		if err := s.End(t.Context(), userhash, list[0].ID); err != nil {
			t.Fatal(err)
		}
		if n, err := s.RevokeUser(t.Context(), userhash, list[1].ID); err != nil || n != 0 {
			t.Fatalf("RevokeUser keeping one = %d, %v", n, err)
		}
		if n, err := s.RevokeUser(t.Context(), userhash, ""); err != nil || n != 1 {
			t.Fatalf("RevokeUser = %d, %v", n, err)
		}
		if c, ok := rdb.(*redis.ClusterClient); ok {
			node, err := c.MasterForKey(t.Context(), s.key(userhash))
			if err != nil {
				t.Fatal(err)
			}
			nodes[node.Options().Addr] = true
		}
	}
	if _, ok := rdb.(*redis.ClusterClient); ok && len(nodes) != testenv.ClusterMasters {
		t.Fatalf("the users lived on %d masters of %d", len(nodes), testenv.ClusterMasters)
	}
	if stored, err := Stored(t.Context(), rdb, s.cfg.Prefix); err != nil || len(stored) != 0 {
		t.Fatalf("left: %+v, %v", stored, err)
	}
}
