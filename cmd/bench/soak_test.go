package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSlope(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		xs, ys []float64
		want   float64
	}{
		{name: "flat", xs: []float64{0, 1, 2, 3}, ys: []float64{5, 5, 5, 5}, want: 0},
		{name: "a line", xs: []float64{0, 1, 2, 3}, ys: []float64{1, 3, 5, 7}, want: 2},
		{name: "falling", xs: []float64{1, 2, 3}, ys: []float64{9, 6, 3}, want: -3},
		{name: "noise around a line", xs: []float64{0, 1, 2, 3}, ys: []float64{0, 2, 2, 4}, want: 1.2},
		{name: "uneven spacing", xs: []float64{0, 0.5, 2}, ys: []float64{10, 10.5, 12}, want: 1},
		{name: "one point", xs: []float64{1}, ys: []float64{4}, want: 0},
		{name: "no points", want: 0},
		{name: "one x only", xs: []float64{2, 2, 2}, ys: []float64{1, 2, 3}, want: 0},
		{name: "lengths differ", xs: []float64{0, 1}, ys: []float64{1}, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := slope(tc.xs, tc.ys); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("slope = %v, want %v", got, tc.want)
			}
		})
	}
}

// samplesOf makes one sample every 10 s with goroutines from gs.
func samplesOf(gs ...int) []sample {
	var out []sample
	for i, g := range gs {
		out = append(out, sample{at: time.Duration(i) * 10 * time.Second, goroutines: g})
	}
	return out
}

func TestJudgeSlopes(t *testing.T) {
	t.Parallel()
	goroutines := func(vs []slopeVerdict) slopeVerdict {
		for _, v := range vs {
			if v.name == "Caddy goroutines" {
				return v
			}
		}
		t.Fatal("no goroutines series")
		return slopeVerdict{}
	}
	for _, tc := range []struct {
		name         string
		samples      []sample
		warmup       time.Duration
		judged, pass bool
		slope        float64
	}{
		{name: "flat after a warm-up that grows", warmup: 30 * time.Second,
			samples: samplesOf(10, 20, 30, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40),
			judged:  true, pass: true, slope: 0},
		{name: "one more every sample: 6 a minute", warmup: 0,
			samples: samplesOf(10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22),
			judged:  true, pass: false, slope: 6},
		{name: "within the tolerance", warmup: 0,
			samples: samplesOf(40, 40, 40, 41, 40, 40, 41, 40, 41, 41, 40, 41, 41),
			judged:  true, pass: true, slope: 3.0 / 7},
		{name: "too short to judge", warmup: 0,
			samples: samplesOf(10, 20, 30),
			judged:  false, pass: true, slope: 60},
		{name: "nothing after the warm-up", warmup: time.Hour,
			samples: samplesOf(10, 20, 30),
			judged:  false, pass: true, slope: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := goroutines(judgeSlopes(tc.samples, tc.warmup))
			if v.judged != tc.judged || v.pass != tc.pass || math.Abs(v.slope-tc.slope) > 1e-6 {
				t.Errorf("judged %v pass %v slope %v, want %v %v %v", v.judged, v.pass, v.slope, tc.judged, tc.pass, tc.slope)
			}
		})
	}
}

func TestJudgeKeys(t *testing.T) {
	t.Parallel()
	within := map[string]keyRange{"session": {2, 3}, "index": {1, 2}, "otp": {0, 0}, "throttle": {0, 9}, "heard": {0, 1}, "other": {0, 0}}
	for _, tc := range []struct {
		name   string
		keys   map[string]int
		noTTL  int
		pass   bool
		misses int
	}{
		{name: "every kind within", keys: map[string]int{"session": 3, "index": 1, "throttle": 9}, pass: true},
		{name: "a session too many", keys: map[string]int{"session": 4, "index": 1}, misses: 1},
		{name: "a session missing", keys: map[string]int{"session": 1, "index": 1}, misses: 1},
		{name: "a key of no known kind", keys: map[string]int{"session": 2, "index": 1, "other": 1}, misses: 1},
		{name: "a key that lives for ever", keys: map[string]int{"session": 2, "index": 1}, noTTL: 1, misses: 1},
		{name: "two kinds out", keys: map[string]int{"session": 2, "otp": 1, "throttle": 10, "index": 1}, misses: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := judgeKeys([]sample{{keys: tc.keys, expect: within, noTTL: tc.noTTL}})
			if v.pass != tc.pass || len(v.misses) != tc.misses {
				t.Errorf("pass %v misses %q, want %v and %d", v.pass, v.misses, tc.pass, tc.misses)
			}
		})
	}
}

func TestKeyKind(t *testing.T) {
	t.Parallel()
	uh := "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ key, want string }{
		{"soak:{" + uh + "}:session:ab12", "session"},
		{"soak:{" + uh + "}:sessions", "index"},
		{"soak:{" + uh + "}:otp", "otp"},
		{"soak:throttle:login:user:" + uh, "throttle"},
		{"soak:heard:0a1b", "heard"},
		{"soak:reset:abc", "other"},
		{"soak:{" + uh + "}:totp", "other"},
		{"soak:{" + uh, "other"},
		{"bench:{" + uh + "}:sessions", "other"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			t.Parallel()
			if got := keyKind("soak", tc.key); got != tc.want {
				t.Errorf("keyKind = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestKeyModel follows one user through a soak's life in the model.
func TestKeyModel(t *testing.T) {
	t.Parallel()
	life := lifetimes{session: 2 * time.Minute, otp: time.Minute, heard: time.Minute, maxSessions: 2,
		clock: 500 * time.Millisecond, sessionExpiresRounding: time.Second}
	t0 := time.Unix(1_800_000_000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	sp := func(from, to float64) span { return span{at(from), at(to)} }
	m := newKeyModel(life)
	check := func(name string, when float64, want map[string]keyRange) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			got := m.expect(at(when), at(when+0.1))
			for k, w := range want {
				if got[k] != w {
					t.Errorf("%s: %+v, want %+v", k, got[k], w)
				}
			}
		})
	}
	check("nothing yet", 0, map[string]keyRange{"session": {0, 0}, "index": {0, 0}, "other": {0, 0}})

	m.loggedIn("ann", "t1", sp(1, 2))
	m.loggedIn("ann", "t2", sp(3, 4))
	check("two sessions", 10, map[string]keyRange{"session": {2, 2}, "index": {1, 1}, "heard": {0, 0}})
	if n := m.loggedIn("ann", "t3", sp(5, 6)); n != 1 {
		t.Errorf("a third login ended %d sessions, want the oldest beyond max_sessions 2", n)
	}
	check("the oldest ended beyond max_sessions", 10, map[string]keyRange{"session": {2, 2}, "heard": {0, 1}})
	if got := m.usable("ann", at(10), 10*time.Second); strings.Join(got, " ") != "t2 t3" {
		t.Errorf("usable %v, want t2 t3", got)
	}

	// t2 ends 120 s after 3–4 s: in doubt around 122.5–124.5.
	if m.stable("ann", at(100), 30*time.Second) {
		t.Error("stable though t2 may end within the horizon")
	}
	if !m.stable("ann", at(50), 30*time.Second) {
		t.Error("not stable though every session surely lives past the horizon")
	}
	check("t2 in doubt", 123, map[string]keyRange{"session": {1, 2}, "index": {1, 1}})
	check("both gone", 130, map[string]keyRange{"session": {0, 0}, "index": {0, 0}, "heard": {0, 0}})

	m.loggedIn("ann", "t4", sp(200, 201))
	m.loggedOut("ann", "t4", at(202))
	check("logged out: the index may linger", 210, map[string]keyRange{"session": {0, 0}, "index": {0, 1}, "heard": {0, 1}})

	m.codeIssued("ann", sp(300, 301))
	check("a code", 310, map[string]keyRange{"otp": {1, 1}})
	check("a code past its life", 362, map[string]keyRange{"otp": {0, 0}})
	m.codeIssued("ann", sp(400, 401))
	m.loggedIn("ann", "t5", sp(402, 403))
	m.passwordChanged("ann", at(404))
	check("a reset ends sessions and codes", 410, map[string]keyRange{"session": {0, 0}, "index": {0, 0}, "otp": {0, 0}})

	m.touched(at(500), time.Minute, "login:user:ann", "login:ip:10.0.0.1")
	m.touched(at(530), time.Minute, "login:user:ann")
	check("counters within their window", 540, map[string]keyRange{"throttle": {0, 2}})
	check("one counter's window over", 580, map[string]keyRange{"throttle": {0, 1}})

	p := m.begin(map[string]int{"session": 1}, map[string]int{"session": 2})
	m.loggedIn("bob", "b1", sp(600, 601))
	check("an action under way widens the range", 601, map[string]keyRange{"session": {0, 2}})
	m.end(p)
	check("an action that ended before the scan does not", 700, map[string]keyRange{"session": {1, 1}})

	m.lose("bob", at(710))
	check("a lost user's keys are possible only", 711, map[string]keyRange{"session": {0, 2}, "index": {0, 1}, "otp": {0, 1}})
}

func TestFreezeAnalysis(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_800_000_000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	sec := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	ev := freezeEvents{freezeAt: at(10), thawAt: at(25)}
	ev.session = []probeEvent{
		{sent: at(9), d: sec(0.01), status: 200},
		{sent: at(11), d: sec(0.01), status: 200}, // from the cache
		{sent: at(13), d: sec(4), status: 503},    // the first 503, answered at 17
		{sent: at(15), d: sec(6), status: 503},
		{sent: at(24), d: sec(2), status: 503}, // answered after the thaw, at 26
		{sent: at(26), d: sec(0.01), status: 200},
	}
	ev.forged = []probeEvent{{sent: at(12), d: sec(3), status: 503}, {sent: at(20), d: sec(1), status: 401}}
	a := ev.analyse()
	if a.first503 != sec(7) || a.answers != 4 || a.max != sec(6) || a.recovery != sec(1) || a.passed != 0 || len(a.wrong) != 0 {
		t.Errorf("analysis %+v", a)
	}

	for _, tc := range []struct {
		name   string
		events freezeEvents
		passed int
		wrong  int
	}{
		{name: "a forged token through", events: freezeEvents{forged: []probeEvent{{status: 200}}}, passed: 1},
		{name: "a session answered 500", events: freezeEvents{session: []probeEvent{{status: 500}}}, wrong: 1},
		{name: "a forged token answered 403", events: freezeEvents{forged: []probeEvent{{status: 403}}}, wrong: 1},
		{name: "no 503 at all", events: freezeEvents{session: []probeEvent{{status: 200}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := tc.events.analyse()
			if a.passed != tc.passed || len(a.wrong) != tc.wrong {
				t.Errorf("passed %d, wrong %q; want %d and %d", a.passed, a.wrong, tc.passed, tc.wrong)
			}
			if tc.name == "no 503 at all" && a.first503 >= 0 {
				t.Errorf("first 503 %v, want none", a.first503)
			}
		})
	}
}

func TestFrozenBounds(t *testing.T) {
	t.Parallel()
	f, err := frozenBounds()
	if err != nil {
		t.Fatal(err)
	}
	// store: ReadTimeout 2 s, MaxRetries 1; go-redis: PoolTimeout 3 s, back-off ≤ 512 ms.
	if f.try != 5*time.Second || f.retries != 1 || f.lookup != 10*time.Second+512*time.Millisecond || f.first503 != 13*time.Second+512*time.Millisecond {
		t.Errorf("bounds %+v", f)
	}
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	m := parseMetrics("# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 21\n" +
		`caddy_http_requests_total{handler="a b",server="srv0"} 12` + "\nauthgate_password_hash_memory_bytes 1.9922944e+07\nbroken\n")
	for _, tc := range []struct {
		series string
		want   float64
	}{
		{"go_goroutines", 21},
		{`caddy_http_requests_total{handler="a b",server="srv0"}`, 12},
		{"authgate_password_hash_memory_bytes", 19922944},
	} {
		t.Run(tc.series, func(t *testing.T) {
			t.Parallel()
			if got, ok := m[tc.series]; !ok || got != tc.want {
				t.Errorf("%s = %v (%v), want %v", tc.series, got, ok, tc.want)
			}
		})
	}
	if len(m) != 3 {
		t.Errorf("%d series, want 3", len(m))
	}
}

func TestWriteSection(t *testing.T) {
	t.Parallel()
	section := soakBegin + "\n\n## Soak\n\nnew\n\n" + soakEnd + "\n"
	for _, tc := range []struct {
		name, before, want string
	}{
		{name: "no file", want: "# Reliability\n\n" + section},
		{name: "a file without the section", before: "# Reliability\n\n## Fuzzing\n\nkept\n",
			want: "# Reliability\n\n## Fuzzing\n\nkept\n\n" + section},
		{name: "the section between hand-written parts",
			before: "# Reliability\n\nintro\n\n" + soakBegin + "\n\nold\n\n" + soakEnd + "\n\n## Fuzzing\n\nkept\n",
			want:   "# Reliability\n\nintro\n\n" + section + "\n## Fuzzing\n\nkept\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "RELIABILITY.md")
			if tc.before != "" {
				if err := os.WriteFile(path, []byte(tc.before), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := writeSection(path, section); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			if string(got) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestReadMail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mail := "From: soak@example.com\r\nTo: <ann@example.com>\r\nSubject: Your password reset code\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"Your one-time code to reset the password of ann is:\r\n\r\n    042917\r\n\r\nIt is valid for 1 minute=\r\n.\r\n"
	if err := os.WriteFile(filepath.Join(dir, "20261204T000000.000000000Z-A.eml"), []byte(mail), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := takeMail(dir, "bob@example.com"); err == nil {
		t.Error("a mail for bob found")
	}
	code, err := takeMail(dir, "ann@example.com")
	if err != nil || code != "042917" {
		t.Fatalf("code %q, %v", code, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.eml")); len(left) != 0 {
		t.Errorf("mails left after reading: %v", left)
	}
}

func TestCPUSince(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		before, after cpuTimes
		d             time.Duration
		ours, others  float64
	}{
		{name: "ours and others", before: cpuTimes{busy: 1000, ours: 100}, after: cpuTimes{busy: 2500, ours: 350}, d: 10 * time.Second, ours: 0.25, others: 1.25},
		{name: "an ended process of ours", before: cpuTimes{busy: 1000, ours: 400}, after: cpuTimes{busy: 1500, ours: 300}, d: 10 * time.Second, ours: 0, others: 0.5},
		{name: "too short to tell", before: cpuTimes{}, after: cpuTimes{busy: 30, ours: 10}, d: 200 * time.Millisecond, ours: -1, others: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ours, others := tc.after.since(tc.before, tc.d)
			if math.Abs(ours-tc.ours) > 1e-9 || math.Abs(others-tc.others) > 1e-9 {
				t.Errorf("ours %v others %v, want %v %v", ours, others, tc.ours, tc.others)
			}
		})
	}
}
