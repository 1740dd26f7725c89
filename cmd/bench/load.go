package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// result is one load run: throughput, latency and what went wrong.
type result struct {
	Requests int64
	Duration time.Duration
	P50, P99 time.Duration
	// Errors counts socket errors and timeouts; Bad counts answers with an
	// unexpected status. A run with either is not a clean measurement.
	Errors, Bad int64
	// Status counts answers by status, when the script counts them (the
	// login flood does, to show the flood hit the hash and not a throttle).
	Status map[string]int64
}

// merge returns the result of two runs of the same load taken as one: the
// counts add up; latency percentiles cannot be merged from percentiles, so
// the merged p50 and p99 are the means of the runs' (the runs last as long).
func merge(x, y result) result {
	m := result{
		Requests: x.Requests + y.Requests,
		Duration: x.Duration + y.Duration,
		P50:      (x.P50 + y.P50) / 2,
		P99:      (x.P99 + y.P99) / 2,
		Errors:   x.Errors + y.Errors,
		Bad:      x.Bad + y.Bad,
	}
	if x.Status != nil || y.Status != nil {
		m.Status = map[string]int64{}
		for _, st := range []map[string]int64{x.Status, y.Status} {
			for k, n := range st {
				m.Status[k] += n
			}
		}
	}
	return m
}

// RPS is requests completed per second.
func (r result) RPS() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Duration.Seconds()
}

// wrk runs one wrk load with a Lua script and returns what the script's
// done() reported. The script ends in wrkDone, which prints one line of
// exact numbers (microseconds), so nothing depends on wrk's human format.
type wrk struct {
	URL      string
	Threads  int
	Conns    int
	Duration time.Duration
	Timeout  time.Duration
	Script   string // Lua, without done(); wrkDone is appended
}

// wrkDone reports the run in one line that parseWrk reads. summary.errors.status
// counts answers outside 2xx/3xx. When the script has collected per-thread
// status counters (see floodScript) it adds them up across threads.
const wrkDone = `
threads = threads or {}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("bench: requests=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f errors=%.0f bad=%.0f\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
  if #threads > 0 then
    local s401, s429, other = 0, 0, 0
    for _, t in ipairs(threads) do
      s401 = s401 + t:get("s401")
      s429 = s429 + t:get("s429")
      other = other + t:get("other")
    end
    io.write(string.format("bench-status: 401=%.0f 429=%.0f other=%.0f\n", s401, s429, other))
  end
end
`

// Run runs wrk until its duration is over (wrk stops by itself; the context
// only cuts it short on Ctrl-C).
func (w wrk) Run(ctx context.Context, dir string) (result, error) {
	f, err := os.CreateTemp(dir, "wrk-*.lua")
	if err != nil {
		return result{}, err
	}
	if _, err := f.WriteString(w.Script + wrkDone); err != nil {
		f.Close()
		return result{}, err
	}
	f.Close()
	defer os.Remove(f.Name())
	timeout := w.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	args := []string{
		"-t", strconv.Itoa(w.Threads), "-c", strconv.Itoa(w.Conns),
		"-d", fmt.Sprintf("%ds", max(1, int(w.Duration.Round(time.Second)/time.Second))),
		"--timeout", fmt.Sprintf("%ds", max(1, int(timeout/time.Second))),
		"-s", f.Name(), w.URL,
	}
	cmd := exec.CommandContext(ctx, "wrk", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("wrk %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	r, err := parseWrk(out.String())
	if err != nil {
		return result{}, fmt.Errorf("wrk %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return r, nil
}

// parseWrk reads the lines wrkDone prints from wrk's output.
func parseWrk(out string) (result, error) {
	var r result
	found := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		kind, rest, ok := strings.Cut(line, ": ")
		if !ok || (kind != "bench" && kind != "bench-status") {
			continue
		}
		fields := map[string]int64{}
		for _, f := range strings.Fields(rest) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				return r, fmt.Errorf("malformed field %q in %q", f, line)
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return r, fmt.Errorf("malformed field %q in %q", f, line)
			}
			fields[k] = n
		}
		if kind == "bench-status" {
			r.Status = map[string]int64{}
			for k, v := range fields {
				r.Status[k] = v
			}
			continue
		}
		for _, k := range []string{"requests", "duration_us", "p50_us", "p99_us", "errors", "bad"} {
			if _, ok := fields[k]; !ok {
				return r, fmt.Errorf("no %s in %q", k, line)
			}
		}
		found = true
		r.Requests = fields["requests"]
		r.Duration = time.Duration(fields["duration_us"]) * time.Microsecond
		r.P50 = time.Duration(fields["p50_us"]) * time.Microsecond
		r.P99 = time.Duration(fields["p99_us"]) * time.Microsecond
		r.Errors, r.Bad = fields["errors"], fields["bad"]
	}
	if !found {
		return r, fmt.Errorf("no bench: line in wrk's output")
	}
	return r, nil
}

// headerScript sends the same request every time, with extra headers: wrk's
// fastest mode, since no Lua runs per request.
func headerScript(headers map[string]string) string {
	var b strings.Builder
	keys := make([]string, 0, len(headers))
	for k := range headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "wrk.headers[%q] = %q\n", k, headers[k])
	}
	return b.String()
}

// floodScript posts a wrong password for an existing user, so every request
// costs one password hash. It counts statuses per thread, so that the report
// can show the flood was answered 401 (hashed), not 429 (throttled).
func floodScript(username string) string {
	return fmt.Sprintf(`
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = %q
threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) s401, s429, other = 0, 0, 0 end
function response(status, headers, body)
  if status == 401 then s401 = s401 + 1
  elseif status == 429 then s429 = s429 + 1
  else other = other + 1 end
end
`, fmt.Sprintf(`{"username":%q,"password":"wrong-password-for-the-flood"}`, username))
}

// rotatingScript sends each request with the next session token from a file,
// each thread starting at its own place, so that the scale variants look up
// many sessions rather than one hot one. Both scale variants pay the same
// per-request Lua cost.
func rotatingScript(tokenFile, cookieName string) string {
	return fmt.Sprintf(`
local tokens = {}
for line in io.lines(%q) do tokens[#tokens + 1] = line end
local n = 0
function setup(thread) n = n + 1; thread:set("start", n * 7919) end
function init(args) i = start %% #tokens end
function request()
  i = i %% #tokens + 1
  return wrk.format(nil, nil, {["Cookie"] = %q .. tokens[i]})
end
`, tokenFile, cookieName+"=")
}

// probe sends GETs at a fixed, modest rate (open loop) and measures each
// one's latency from the moment it was due, so a stalled server shows up in
// the percentiles instead of slowing the probe down (wrk, a closed loop,
// cannot hold a rate). It is how the gate's latency is measured while a
// login flood runs beside it.
type probe struct {
	URL      string
	Header   http.Header
	Rate     int // requests per second
	Duration time.Duration
	// Workers sending at once; 0 for 64. A server that holds requests for
	// seconds needs rate × seconds of them to keep the rate.
	Workers int
	// Each, when set, sees every request: when it was sent (or due, if
	// late), how long its answer took from then, and the status or error.
	Each func(sent time.Time, d time.Duration, status int, err error)
}

func (p probe) Run(ctx context.Context) (result, error) {
	n := int(p.Duration.Seconds() * float64(p.Rate))
	if n <= 0 {
		return result{}, fmt.Errorf("probe: nothing to send")
	}
	workers := cmp.Or(p.Workers, 64) // 64: enough to keep the rate through stalls of ~250 ms
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: workers,
			DisableCompression:  true,
		},
	}
	defer client.CloseIdleConnections()
	start := time.Now()
	due := make(chan time.Time, n)
	for i := range n {
		due <- start.Add(time.Duration(i) * time.Second / time.Duration(p.Rate))
	}
	close(due)
	latencies := make([]time.Duration, 0, n)
	var mu sync.Mutex
	var bad, errs int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for t := range due {
				if ctx.Err() != nil {
					return
				}
				// Latency counts from when the request was due, so that
				// time spent waiting for a free worker (the server is slow)
				// counts; but not a worker's oversleeping when it was early.
				from := t
				if wait := time.Until(t); wait > 0 {
					time.Sleep(wait)
					from = time.Now()
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
				if err != nil {
					panic(err)
				}
				req.Header = p.Header.Clone()
				resp, err := client.Do(req)
				ok := err == nil && resp.StatusCode == http.StatusOK
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				d := time.Since(from)
				if p.Each != nil {
					st := 0
					if err == nil {
						st = resp.StatusCode
					}
					p.Each(from, d, st, err)
				}
				mu.Lock()
				switch {
				case err != nil:
					errs++
				case !ok:
					bad++
				default:
					latencies = append(latencies, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	elapsed := time.Since(start)
	slices.Sort(latencies)
	return result{
		Requests: int64(len(latencies)),
		Duration: elapsed,
		P50:      percentile(latencies, 50),
		P99:      percentile(latencies, 99),
		Errors:   errs,
		Bad:      bad,
	}, nil
}

// percentile returns the p-th percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// writeTokens writes session tokens one a line for rotatingScript.
func writeTokens(dir, name string, tokens []string) (string, error) {
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, []byte(strings.Join(tokens, "\n")+"\n"), 0o644)
}
