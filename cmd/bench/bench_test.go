package main

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// wrkOutput is what wrk 4.1 prints with the bench's done() and a status
// counting script.
const wrkOutput = `Running 10s test @ http://127.0.0.1:40123/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.91ms    1.12ms  31.05ms   88.02%
    Req/Sec     8.71k   612.33     9.90k    71.00%
  173321 requests in 10.00s, 23.81MB read
  Non-2xx or 3xx responses: 12
Requests/sec:  17326.52
Transfer/sec:      2.38MB
bench: requests=173321 duration_us=10003441 p50_us=1652 p99_us=6021 errors=3 bad=12
bench-status: 401=10 429=2 other=0
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 173321 || r.Duration != 10003441*time.Microsecond ||
		r.P50 != 1652*time.Microsecond || r.P99 != 6021*time.Microsecond || r.Errors != 3 || r.Bad != 12 {
		t.Errorf("parsed %+v", r)
	}
	if got := r.RPS(); got < 17326 || got > 17327 {
		t.Errorf("RPS = %f", got)
	}
	if r.Status["401"] != 10 || r.Status["429"] != 2 || r.Status["other"] != 0 {
		t.Errorf("status %v", r.Status)
	}
}

func TestParseWrkRefuses(t *testing.T) {
	for name, out := range map[string]string{
		"no line":       "Requests/sec: 100\n",
		"missing field": "bench: requests=1 duration_us=2 p50_us=3 errors=0 bad=0\n",
		"not a number":  "bench: requests=1.5 duration_us=2 p50_us=3 p99_us=4 errors=0 bad=0\n",
	} {
		if _, err := parseWrk(out); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 200; i++ {
		ds = append(ds, time.Duration(i))
	}
	for p, want := range map[float64]time.Duration{50: 100, 99: 198, 100: 200, 0: 1} {
		if got := percentile(ds, p); got != want {
			t.Errorf("p%v = %d, want %d", p, got, want)
		}
	}
	if percentile(nil, 99) != 0 {
		t.Error("empty")
	}
}

func TestMedianAndRoundRatio(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
	mk := func(rps ...float64) row {
		var r row
		for _, v := range rps {
			r.Rounds = append(r.Rounds, result{Requests: int64(v), Duration: time.Second})
		}
		return r
	}
	// Round by round: 0.9, 0.5 (a noisy round), 0.95: the median is 0.9.
	if got := roundRatio(mk(900, 500, 1900), mk(1000, 1000, 2000), rps); got != 0.9 {
		t.Errorf("roundRatio = %v", got)
	}
}

func TestParseStatusMemory(t *testing.T) {
	status := "Name:\tcaddy\nVmPeak:\t 1000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
	rss, peak, err := parseStatusMemory(strings.NewReader(status))
	if err != nil || rss != 100<<20 || peak != 200<<20 {
		t.Errorf("rss %d peak %d err %v", rss, peak, err)
	}
	if _, _, err := parseStatusMemory(strings.NewReader("Name:\tx\n")); err == nil {
		t.Error("no fields accepted")
	}
}

func TestSecurityToken(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tok := securityToken("k", now, time.Hour)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	mac := hmac.New(sha512.New, []byte("k"))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) != parts[2] {
		t.Error("bad signature")
	}
	var claims struct {
		Roles []string `json:"roles"`
		Exp   int64    `json:"exp"`
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(b, &claims); err != nil || claims.Exp != now.Add(time.Hour).Unix() || claims.Roles[0] != "authp/user" {
		t.Errorf("claims %s: %v", b, err)
	}
}

func TestTable(t *testing.T) {
	got := table([][]string{{"a", "bb"}, {"ccc", "≥"}})
	want := "| a   | bb |\n| --- | -- |\n| ccc | ≥  |\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int]string{1_000_000: "1M", 1000: "1k", 20000: "20k", 1500: "1500"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %s", n, got)
		}
	}
}

func TestAuthgateGlobal(t *testing.T) {
	g := authgateGlobal("postgres://p", "redis redis://r", "session_cache off; hash_concurrency 1")
	for _, want := range []string{"postgres postgres://p", "redis redis://r", "redis_prefix bench",
		"throttle_user 1000000 1m", "throttle_ip 1000000 1m", "\t\tsession_cache off\n", "\t\thash_concurrency 1\n"} {
		if !strings.Contains(g, want) {
			t.Errorf("no %q in\n%s", want, g)
		}
	}
}

func TestFloodAnswers(t *testing.T) {
	flood := row{Rounds: []result{
		{Status: map[string]int64{"401": 700, "429": 2}},
		{Status: map[string]int64{"401": 650, "other": 1}},
	}}
	if got, want := floodAnswers(flood), "answers: 1350 × 401, 2 × 429, 1 other"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMerge(t *testing.T) {
	x := result{Requests: 300, Duration: 3 * time.Second, P50: 2 * time.Millisecond, P99: 10 * time.Millisecond, Errors: 1, Status: map[string]int64{"401": 300}}
	y := result{Requests: 600, Duration: 3 * time.Second, P50: 4 * time.Millisecond, P99: 20 * time.Millisecond, Bad: 2, Status: map[string]int64{"401": 598, "other": 2}}
	m := merge(x, y)
	if m.RPS() != 150 || m.P50 != 3*time.Millisecond || m.P99 != 15*time.Millisecond || m.Errors != 1 || m.Bad != 2 {
		t.Errorf("merged %+v", m)
	}
	if m.Status["401"] != 898 || m.Status["other"] != 2 {
		t.Errorf("merged statuses %v", m.Status)
	}
	if merge(result{}, result{}).Status != nil {
		t.Error("statuses out of nothing")
	}
}
