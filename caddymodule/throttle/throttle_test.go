package throttle

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	secret = []byte("0123456789abcdef0123456789abcdef")
	limits = Limits{
		User:  Limit{Max: 3, Window: 15 * time.Minute},
		IP:    Limit{Max: 5, Window: 15 * time.Minute},
		Codes: Limit{Max: 4, Window: 24 * time.Hour},
	}
)

func TestUserKey(t *testing.T) {
	t.Parallel()
	l := New(nil, "p", secret, limits)
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, tc := range []struct {
		name string
		a, b string
		key  []byte // for b; nil: the same key
		same bool
	}{
		{"the same name", "alice", "alice", nil, true},
		{"case does not matter", "alice", "ALICE", nil, true},
		{"another name", "alice", "alicf", nil, false},
		{"another server's secret", "alice", "alice", []byte("another secret"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			other := l
			if tc.key != nil {
				other = New(nil, "p", tc.key, limits)
			}
			a, b := l.UserKey(tc.a), other.UserKey(tc.b)
			if (a == b) != tc.same {
				t.Fatalf("UserKey(%q) = %s, UserKey(%q) = %s", tc.a, a, tc.b, b)
			}
			if !hex32.MatchString(a) || strings.Contains(a, tc.a) {
				t.Fatalf("UserKey(%q) = %q: not 32 hex characters that hide the name", tc.a, a)
			}
		})
	}
}

// The counters a subject's failures go to, and their limits: the keys are
// the package's contract with Redis (and with whoever reads it).
func TestCounters(t *testing.T) {
	t.Parallel()
	l := New(nil, "pre", secret, limits)
	user := l.UserKey("alice")
	for _, tc := range []struct {
		name    string
		subject Subject
		want    []counter
	}{
		{"a name and an address", Subject{Kind: "login", Username: "alice", IP: "192.0.2.1"}, []counter{
			{"pre:throttle:login:user:" + user, limits.User},
			{"pre:throttle:login:ip:192.0.2.1", limits.IP},
		}},
		{"an address alone", Subject{Kind: "reset", IP: "2001:db8::1"}, []counter{
			{"pre:throttle:reset:ip:2001:db8::1", limits.IP},
		}},
		{"a device: its own counter only", Subject{Kind: "login", Username: "alice", IP: "192.0.2.1", Device: "d1"}, []counter{
			{"pre:throttle:login:device:d1", limits.User},
		}},
		{"a code of a user: the daily cap per user", Subject{Kind: "otp", Username: "alice", IP: "192.0.2.1", Code: true}, []counter{
			{"pre:throttle:otp:user:" + user, limits.User},
			{"pre:throttle:otp:ip:192.0.2.1", limits.IP},
			{"pre:throttle:otp:day:user:" + user, limits.Codes},
		}},
		{"a code of no user: the daily cap per address", Subject{Kind: "reset", IP: "192.0.2.1", Code: true}, []counter{
			{"pre:throttle:reset:ip:192.0.2.1", limits.IP},
			{"pre:throttle:reset:day:ip:192.0.2.1", limits.Codes},
		}},
		{"a code from a device", Subject{Kind: "otp", Username: "alice", Device: "d1", Code: true}, []counter{
			{"pre:throttle:otp:device:d1", limits.User},
			{"pre:throttle:otp:day:user:" + user, limits.Codes},
		}},
		{"kinds count apart", Subject{Kind: "mail", Username: "Alice", IP: "192.0.2.1"}, []counter{
			{"pre:throttle:mail:user:" + user, limits.User},
			{"pre:throttle:mail:ip:192.0.2.1", limits.IP},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := l.counters(tc.subject)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("counters\n%v, want\n%v", got, tc.want)
			}
			for _, c := range got {
				if strings.Contains(strings.ToLower(c.key), "alice") {
					t.Fatalf("the name is in a key: %s", c.key)
				}
			}
		})
	}
}

// step is one call to the limiter and what it must answer.
type step struct {
	forget   bool // Forget rather than Attempt
	takeBack bool // TakeBack rather than Attempt
	subject  Subject
	refused  bool
}

func newLimiter(t *testing.T, tp testenv.Topology) (*Limiter, redis.UniversalClient, string) {
	t.Helper()
	rdb := testenv.RedisClient(t, tp)
	prefix := testenv.Prefix(t)
	return New(rdb, prefix, secret, limits), rdb, prefix
}

// The counting in Redis, as sequences of attempts and successes, and the
// counters they leave. A subject's counters live in different hash slots:
// on a cluster the pipelines span nodes.
func TestLimiter(t *testing.T) {
	t.Parallel()
	testenv.EachTopology(t, testLimiter)
}

func testLimiter(t *testing.T, tp testenv.Topology) {
	alice := Subject{Kind: "login", Username: "alice", IP: "192.0.2.1"}
	fromDevice := Subject{Kind: "login", Username: "alice", IP: "192.0.2.1", Device: "d1"}
	name := func(n string) Subject { return Subject{Kind: "login", Username: n, IP: "192.0.2.9"} }
	code := Subject{Kind: "otp", Username: "alice", IP: "192.0.2.1", Code: true}
	codeFrom := func(device string) Subject {
		return Subject{Kind: "otp", Username: "alice", IP: "192.0.2.1", Device: device, Code: true}
	}
	for _, tc := range []struct {
		name  string
		steps []step
		// want are the counters left, by key suffix after "throttle:";
		// a counter of 0 may be gone.
		want map[string]int
	}{
		{"failures up to the limit, then refused, the refusal not counted",
			[]step{{subject: alice}, {subject: alice}, {subject: alice}, {subject: alice, refused: true}, {subject: alice, refused: true}},
			map[string]int{"login:user:alice": 3, "login:ip:192.0.2.1": 3}},
		{"a success clears the user's counter, not the address's",
			[]step{{subject: alice}, {subject: alice}, {forget: true, subject: alice}},
			map[string]int{"login:user:alice": 0, "login:ip:192.0.2.1": 1}},
		{"after a success the user has the whole allowance again",
			[]step{{subject: alice}, {subject: alice}, {forget: true, subject: alice}, {subject: alice}, {subject: alice}, {subject: alice}},
			map[string]int{"login:user:alice": 3, "login:ip:192.0.2.1": 4}},
		{"a device keeps its own allowance when the user is locked out",
			[]step{{subject: alice}, {subject: alice}, {subject: alice}, {subject: alice, refused: true}, {subject: fromDevice}},
			map[string]int{"login:user:alice": 3, "login:device:d1": 1}},
		{"a device's failures lock only the device",
			[]step{{subject: fromDevice}, {subject: fromDevice}, {subject: fromDevice}, {subject: fromDevice, refused: true}, {subject: alice}},
			map[string]int{"login:device:d1": 3, "login:user:alice": 1}},
		{"an address is limited across names",
			[]step{{subject: name("b")}, {subject: name("c")}, {subject: name("d")}, {subject: name("e")}, {subject: name("f")},
				{subject: name("g"), refused: true}},
			map[string]int{"login:ip:192.0.2.9": 5, "login:user:g": 0}},
		{"an attempt taken back counts nowhere",
			[]step{{subject: alice}, {subject: alice}, {takeBack: true, subject: alice}},
			map[string]int{"login:user:alice": 1, "login:ip:192.0.2.1": 1}},
		{"attempts taken back do not lock out",
			[]step{{subject: alice}, {subject: alice}, {subject: alice}, {takeBack: true, subject: alice}, {subject: alice},
				{subject: alice, refused: true}},
			map[string]int{"login:user:alice": 3, "login:ip:192.0.2.1": 3}},
		{"a code's attempt taken back, the daily cap's count too",
			[]step{{subject: code}, {takeBack: true, subject: code}},
			map[string]int{"otp:day:user:alice": 0, "otp:user:alice": 0, "otp:ip:192.0.2.1": 0}},
		{"a success at a code takes back only its own count",
			[]step{{subject: code}, {subject: code}, {forget: true, subject: code}},
			map[string]int{"otp:day:user:alice": 1, "otp:user:alice": 0, "otp:ip:192.0.2.1": 1}},
		{"the daily cap on codes counts across devices",
			[]step{{subject: codeFrom("d1")}, {subject: codeFrom("d1")}, {subject: codeFrom("d1")}, {subject: code},
				{subject: codeFrom("d2"), refused: true}},
			map[string]int{"otp:day:user:alice": 4, "otp:device:d1": 3, "otp:device:d2": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, rdb, prefix := newLimiter(t, tp)
			ctx := t.Context()
			for i, s := range tc.steps {
				if s.forget {
					if err := l.Forget(ctx, s.subject); err != nil {
						t.Fatalf("step %d: Forget: %v", i, err)
					}
					continue
				}
				if s.takeBack {
					if err := l.TakeBack(ctx, s.subject); err != nil {
						t.Fatalf("step %d: TakeBack: %v", i, err)
					}
					continue
				}
				wait, err := l.Attempt(ctx, s.subject)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				window := limits.User.Window
				if s.subject.Code {
					window = limits.Codes.Window
				}
				if refused := wait > 0; refused != s.refused || wait < 0 || (refused && (wait < time.Second || wait > window)) {
					t.Fatalf("step %d (%+v): wait %s, want refused %v within the window", i, s.subject, wait, s.refused)
				}
			}
			for suffix, want := range tc.want {
				key := prefix + ":throttle:" + strings.NewReplacer("user:alice", "user:"+l.UserKey("alice"), "user:g", "user:"+l.UserKey("g")).Replace(suffix)
				n, err := rdb.Get(ctx, key).Int()
				if err == redis.Nil {
					n, err = 0, nil
				}
				if err != nil || n != want {
					t.Errorf("%s = %d (%v), want %d", suffix, n, err, want)
				}
			}
			// Every counter ends by itself.
			keys, err := testenv.Keys(ctx, rdb, prefix+":throttle:*")
			if err != nil {
				t.Fatal(err)
			}
			for _, key := range keys {
				if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > limits.Codes.Window {
					t.Errorf("%s expires in %s", key, ttl)
				}
			}
			// Else the case would not show that the pipelines work across
			// slots.
			if tp.Name == "cluster" {
				slots := map[int64]bool{}
				for _, s := range tc.steps {
					for _, c := range l.counters(s.subject) {
						slots[rdb.ClusterKeySlot(ctx, c.key).Val()] = true
					}
				}
				if len(slots) < 2 {
					t.Errorf("the counters of the case share one hash slot")
				}
			}
		})
	}
}

// A counter whose window ended between SETNX and INCR is left without an
// expiry (INCR makes it anew): the next attempt gives it its window, so
// that it does not count for ever. Made here directly, not by a race.
func TestLimiterCounterWithoutExpiry(t *testing.T) {
	t.Parallel()
	testenv.EachTopology(t, testLimiterCounterWithoutExpiry)
}

func testLimiterCounterWithoutExpiry(t *testing.T, tp testenv.Topology) {
	for _, tc := range []struct {
		name    string
		count   int
		refused bool
	}{
		{"under the limit", 1, false},
		{"at the limit", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, rdb, prefix := newLimiter(t, tp)
			s := Subject{Kind: "login", Username: "alice", IP: "192.0.2.1"}
			key := prefix + ":throttle:login:user:" + l.UserKey("alice")
			if err := rdb.Set(t.Context(), key, tc.count, 0).Err(); err != nil {
				t.Fatal(err)
			}
			wait, err := l.Attempt(t.Context(), s)
			if err != nil || (wait > 0) != tc.refused {
				t.Fatalf("wait %s, %v; want refused %v", wait, err, tc.refused)
			}
			if ttl := rdb.PTTL(t.Context(), key).Val(); ttl <= 0 || ttl > limits.User.Window {
				t.Fatalf("the counter expires in %s", ttl)
			}
		})
	}
}
