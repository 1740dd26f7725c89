package onetime

import (
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	secret = []byte("0123456789abcdef0123456789abcdef")
	hex32  = regexp.MustCompile(`^[0-9a-f]{32}$`)
	hex64  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

const (
	alice = "0123456789abcdef0123456789abcdef"
	ttl   = 10 * time.Minute
)

func TestParseReset(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, value string
		id          int64
		issued      int64 // Unix ns
		ok          bool
	}{
		{"id and time", "7:1700000000123456789", 7, 1700000000123456789, true},
		{"no time", "7", 0, 0, false},
		{"empty", "", 0, 0, false},
		{"not a number", "seven:1", 0, 0, false},
		{"a time that is no number", "7:soon", 0, 0, false},
		{"one field too many", "7:1:2", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id, issued, err := parseReset(tc.value)
			if ok := err == nil; ok != tc.ok || id != tc.id || (ok && !issued.Equal(time.Unix(0, tc.issued))) {
				t.Fatalf("parseReset(%q) = %d, %v, %v", tc.value, id, issued, err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v, want ErrInvalid", err)
			}
		})
	}
}

func TestValidResetToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, token string
		ok          bool
	}{
		{"56 hex characters", strings.Repeat("ab", 28), true},
		{"in capitals", strings.Repeat("AB", 28), true},
		{"one short", strings.Repeat("a", 55), false},
		{"one long", strings.Repeat("a", 57), false},
		{"not hex", strings.Repeat("g", 56), false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := validResetToken(tc.token); got != tc.ok {
				t.Fatalf("validResetToken(%q) = %v", tc.token, got)
			}
		})
	}
}

// The keys are the package's contract with Redis: an OTP in its user's hash
// slot, a reset token only by its hash.
func TestKeys(t *testing.T) {
	t.Parallel()
	s := New(nil, "pre", secret, ttl)
	token := strings.Repeat("ab", 28)
	for _, tc := range []struct {
		name, key string
		want      *regexp.Regexp
	}{
		{"OTP", s.otpKey(alice), regexp.MustCompile(`^pre:\{` + alice + `\}:otp$`)},
		{"reset token", s.resetKey(token), regexp.MustCompile(`^pre:reset:[0-9a-f]{64}$`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !tc.want.MatchString(tc.key) || strings.Contains(tc.key, token) {
				t.Fatalf("key %q", tc.key)
			}
		})
	}
}

// The MAC binds the code to its user and request, without ambiguity in
// where one field ends.
func TestMAC(t *testing.T) {
	t.Parallel()
	s := New(nil, "pre", secret, ttl)
	base := s.mac(alice, "req", "123456")
	for _, tc := range []struct {
		name string
		mac  string
	}{
		{"another code", s.mac(alice, "req", "123457")},
		{"another request", s.mac(alice, "reQ", "123456")},
		{"another user", s.mac(strings.Repeat("f", 32), "req", "123456")},
		{"a field boundary moved", s.mac(alice, "req1", "23456")},
		{"another key", New(nil, "pre", []byte("another key"), ttl).mac(alice, "req", "123456")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.mac == base || !hex64.MatchString(tc.mac) {
				t.Fatalf("mac %q against %q", tc.mac, base)
			}
		})
	}
	if s.mac(alice, "req", "123456") != base {
		t.Fatal("the MAC is not stable")
	}
}

// A decoy looks like a real answer, and is the same for a name (and its
// look-alikes) at every request, as a real userhash is.
func TestDecoy(t *testing.T) {
	t.Parallel()
	s := New(nil, "pre", secret, ttl)
	for _, tc := range []struct {
		name, a, b string
		key        []byte // for b; nil: the same
		same       bool
	}{
		{"the same name", "bob", "bob", nil, true},
		{"a look-alike", "Bob", "ｂｏｂ", nil, true},
		{"another name", "bob", "rob", nil, false},
		{"a name with no canonical form", "a b", "a b", nil, true},
		{"another server", "bob", "bob", []byte("another key"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			other := s
			if tc.key != nil {
				other = New(nil, "pre", tc.key, ttl)
			}
			h1, r1, err1 := s.Decoy(tc.a)
			h2, r2, err2 := other.Decoy(tc.b)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if (h1 == h2) != tc.same || !hex32.MatchString(h1) || !hex32.MatchString(r1) || r1 == r2 {
				t.Fatalf("Decoy(%q) = %s %s, Decoy(%q) = %s %s", tc.a, h1, r1, tc.b, h2, r2)
			}
		})
	}
}

func newStore(t *testing.T, tp testenv.Topology) (*Store, redis.UniversalClient, string) {
	t.Helper()
	rdb := testenv.RedisClient(t, tp)
	prefix := testenv.Prefix(t)
	return New(rdb, prefix, secret, ttl), rdb, prefix
}

// guess is one step of an OTP sequence: a new OTP (issue), a drop, or a
// guess with the latest (or the first) OTP's request id and code, or
// wrong ones, and whether it must succeed.
type guess struct {
	op                   string // "issue", "drop", "check"
	first                bool   // use the first OTP issued, not the latest
	wrongReqid, wrongOTP bool
	ok                   bool
}

func TestOTP(t *testing.T) {
	t.Parallel()
	testenv.EachTopology(t, testOTP)
}

func testOTP(t *testing.T, tp testenv.Topology) {
	issue, drop := guess{op: "issue"}, guess{op: "drop"}
	right := guess{op: "check", ok: true}
	spent := guess{op: "check"} // the right code, refused
	wrong := guess{op: "check", wrongOTP: true}
	for _, tc := range []struct {
		name  string
		steps []guess
		left  bool // an OTP is still stored at the end
	}{
		{"the right code works once", []guess{issue, right, spent}, false},
		{"a wrong code, then the right one", []guess{issue, wrong, right}, false},
		{"the right code with another request id", []guess{issue, {op: "check", wrongReqid: true}, right}, false},
		{"four wrong guesses leave the fifth", []guess{issue, wrong, wrong, wrong, wrong, right}, false},
		{"five wrong guesses end it", []guess{issue, wrong, wrong, wrong, wrong, wrong, spent}, false},
		{"a wrong guess leaves it stored", []guess{issue, wrong}, true},
		{"a new code replaces the old", []guess{issue, issue, {op: "check", first: true}, right}, false},
		{"dropped", []guess{issue, drop, spent}, false},
		{"none issued", []guess{{op: "check"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, rdb, _ := newStore(t, tp)
			ctx := t.Context()
			type otp struct{ reqid, code string }
			var issued []otp
			for i, g := range tc.steps {
				switch g.op {
				case "issue":
					reqid, code, err := s.IssueOTP(ctx, alice)
					if err != nil || !hex32.MatchString(reqid) || !regexp.MustCompile(`^[0-9]{6}$`).MatchString(code) {
						t.Fatalf("step %d: IssueOTP = %q, %q, %v", i, reqid, code, err)
					}
					issued = append(issued, otp{reqid, code})
					continue
				case "drop":
					if err := s.DropOTP(ctx, alice); err != nil {
						t.Fatal(err)
					}
					continue
				}
				o := otp{"00000000000000000000000000000000", "000000"}
				if len(issued) > 0 {
					o = issued[len(issued)-1]
					if g.first {
						o = issued[0]
					}
				}
				if g.wrongReqid {
					o.reqid = strings.Repeat("f", 32)
				}
				if g.wrongOTP {
					o.code = map[bool]string{true: "000001", false: "000000"}[o.code == "000000"]
				}
				err := s.CheckOTP(ctx, alice, o.reqid, o.code)
				if (err == nil) != g.ok || (err != nil && !errors.Is(err, ErrInvalid)) {
					t.Fatalf("step %d: CheckOTP = %v, want ok %v", i, err, g.ok)
				}
			}
			stored, err := rdb.HGetAll(ctx, s.otpKey(alice)).Result()
			if err != nil || (len(stored) > 0) != tc.left {
				t.Fatalf("stored %v, %v; want left %v", stored, err, tc.left)
			}
			if tc.left {
				last := issued[len(issued)-1]
				if stored["reqid"] != last.reqid || !hex64.MatchString(stored["mac"]) || strings.Contains(stored["mac"], last.code) {
					t.Fatalf("stored %v", stored)
				}
				if d := rdb.PTTL(ctx, s.otpKey(alice)).Val(); d <= 0 || d > ttl {
					t.Fatalf("expires in %s", d)
				}
			}
		})
	}
}

func TestResetToken(t *testing.T) {
	t.Parallel()
	testenv.EachTopology(t, testResetToken)
}

func testResetToken(t *testing.T, tp testenv.Topology) {
	for _, tc := range []struct {
		name string
		// edit changes the token used, or the stored value; "" keeps it.
		edit   func(t *testing.T, rdb redis.UniversalClient, key, token string) string
		valid  bool
		consum int // Consumes before the check
	}{
		{name: "issued", valid: true},
		{name: "used", consum: 1},
		{name: "unknown", edit: func(*testing.T, redis.UniversalClient, string, string) string { return strings.Repeat("0", 56) }},
		{name: "malformed", edit: func(*testing.T, redis.UniversalClient, string, string) string { return "token" }},
		{name: "in capitals (another token)", edit: func(_ *testing.T, _ redis.UniversalClient, _, token string) string { return strings.ToUpper(token) }},
		{name: "a stored value that does not parse", edit: func(t *testing.T, rdb redis.UniversalClient, key, token string) string {
			if err := rdb.Set(t.Context(), key, "garbage", ttl).Err(); err != nil {
				t.Fatal(err)
			}
			return token
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, rdb, prefix := newStore(t, tp)
			ctx := t.Context()
			before := time.Now()
			token, err := s.IssueResetToken(ctx, 7)
			after := time.Now()
			if err != nil || !validResetToken(token) || strings.ToLower(token) != token {
				t.Fatalf("IssueResetToken = %q, %v", token, err)
			}
			keys, err := testenv.Keys(ctx, rdb, prefix+":*")
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 || keys[0] != s.resetKey(token) || strings.Contains(keys[0], token) {
				t.Fatalf("keys %v", keys)
			}
			if d := rdb.PTTL(ctx, keys[0]).Val(); d <= 0 || d > ttl {
				t.Fatalf("expires in %s", d)
			}
			for range tc.consum {
				if _, err := s.ConsumeResetToken(ctx, token); err != nil {
					t.Fatal(err)
				}
			}
			if tc.edit != nil {
				token = tc.edit(t, rdb, keys[0], token)
			}
			id, issued, err := s.ResetTokenUser(ctx, token)
			if !tc.valid {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("ResetTokenUser = %d, %v", id, err)
				}
				if _, err := s.ConsumeResetToken(ctx, token); !errors.Is(err, ErrInvalid) {
					t.Fatalf("ConsumeResetToken: %v", err)
				}
				return
			}
			if err != nil || id != 7 || issued.Before(before.Truncate(0)) || issued.After(after) {
				t.Fatalf("ResetTokenUser = %d, %v, %v", id, issued, err)
			}
			if id, err := s.ConsumeResetToken(ctx, token); err != nil || id != 7 {
				t.Fatalf("ConsumeResetToken = %d, %v", id, err)
			}
			if _, err := s.ConsumeResetToken(ctx, token); !errors.Is(err, ErrInvalid) {
				t.Fatalf("the token worked twice: %v", err)
			}
		})
	}
}

// Of concurrent uses of one secret, exactly one succeeds.
func TestSingleUse(t *testing.T) {
	t.Parallel()
	testenv.EachTopology(t, testSingleUse)
}

func testSingleUse(t *testing.T, tp testenv.Topology) {
	for _, tc := range []struct {
		name string
		use  func(t *testing.T, s *Store) func() error
	}{
		{"reset token", func(t *testing.T, s *Store) func() error {
			token, err := s.IssueResetToken(t.Context(), 7)
			if err != nil {
				t.Fatal(err)
			}
			return func() error { _, err := s.ConsumeResetToken(t.Context(), token); return err }
		}},
		{"OTP", func(t *testing.T, s *Store) func() error {
			reqid, code, err := s.IssueOTP(t.Context(), alice)
			if err != nil {
				t.Fatal(err)
			}
			return func() error { return s.CheckOTP(t.Context(), alice, reqid, code) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _, _ := newStore(t, tp)
			use := tc.use(t, s)
			var wg sync.WaitGroup
			var mu sync.Mutex
			wins := 0
			for range 5 {
				wg.Go(func() {
					err := use()
					if err != nil && !errors.Is(err, ErrInvalid) {
						t.Error(err)
					}
					mu.Lock()
					defer mu.Unlock()
					if err == nil {
						wins++
					}
				})
			}
			wg.Wait()
			if wins != 1 {
				t.Fatalf("%d uses succeeded, want 1", wins)
			}
		})
	}
}
