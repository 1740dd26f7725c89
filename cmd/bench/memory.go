package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/authgate/authgate/caddymodule/password"
)

// memory measures a fresh gate Caddy's resident set at rest, then its peak
// during a flood of o.rssConns login connections, against an allowance of
// one hash's memory per hashing slot on top of what it holds at rest.
func (b *bench) memory(ctx context.Context) (section, error) {
	logger.Printf("peak memory during a %d-connection login flood (fresh Caddy)", b.o.rssConns)
	admin, port, err := twoPorts()
	if err != nil {
		return section{}, err
	}
	proc, err := b.start(ctx, "rss", b.caddy, gateCaddyfile(admin, port, b.ports.Upstream, b.global(b.redis.URL())), port)
	if err != nil {
		return section{}, err
	}
	base, peak, how, err := peakMemory(ctx, b.dir, proc, admin, url(port), b.o)
	if err != nil {
		return section{}, err
	}
	proc.Stop()
	hashConcurrency := runtime.NumCPU() // authgate's default bound: GOMAXPROCS
	argonMemory := int64(password.DefaultParams().Memory) << 10
	allowance := base + int64(hashConcurrency)*argonMemory + 50<<20
	return section{
		checks: []check{{
			Name:     fmt.Sprintf("peak RSS during a %d-connection login flood", b.o.rssConns),
			Measured: fmt.Sprintf("%s (at rest %s, +%s; %s)", mib(peak), mib(base), mib(peak-base), how),
			Target:   fmt.Sprintf("≤ %s (at rest + %d × %s + 50 MiB)", mib(allowance), hashConcurrency, mib(argonMemory)),
			Pass:     peak <= allowance,
		}},
		notes: []string{
			fmt.Sprintf("Memory: a fresh gate Caddy; at rest = VmRSS after one login and a second of gate traffic, once the hashing workers have given back their memory (after 30 s without logins); peak = VmHWM (reset through /proc/<pid>/clear_refs) over a %s flood of %d connections.", b.o.dur, b.o.rssConns),
		},
	}, nil
}

// peakMemory measures the resident set of proc at rest, then its peak
// during a flood of wrong-password logins. At rest means warm (pools open,
// one login done) and holding no password hashing memory, which the hashing
// workers give back after a while without logins: the allowance adds one
// hash's memory per core to it.
func peakMemory(ctx context.Context, dir string, proc *caddyProc, admin int, gateURL string, o options) (base, peak int64, how string, err error) {
	// At rest, but warm: one login (pools, the hasher) and a little traffic.
	cookie, err := login(ctx, gateURL)
	if err != nil {
		return 0, 0, "", err
	}
	warm := wrk{URL: gateURL, Threads: 1, Conns: 8, Duration: time.Second, Script: headerScript(map[string]string{"Cookie": cookie.String()})}
	if _, err := warm.Run(ctx, dir); err != nil {
		return 0, 0, "", err
	}
	sleep(ctx, 2*time.Second)
	logger.Print("waiting for the hashing workers to give back their memory (authgate_password_hash_memory_bytes 0)")
	if err := waitHashMemoryReleased(ctx, admin, time.Minute); err != nil {
		return 0, 0, "", err
	}
	if base, _, err = proc.memory(); err != nil {
		return 0, 0, "", err
	}
	// The kernel's high-water mark is exact; sampling VmRSS is the fallback
	// where it cannot be reset.
	how = "VmHWM"
	if err := proc.resetPeak(); err != nil {
		how = "max VmRSS sampled every 20 ms"
	}
	var sampled int64
	stopSampling := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if rss, _, err := proc.memory(); err == nil {
				sampled = max(sampled, rss)
			}
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	})
	flood := wrk{URL: gateURL + "auth/users/login", Threads: o.threads, Conns: o.rssConns,
		Duration: o.dur, Timeout: 30 * time.Second, Script: floodScript(benchUser)}
	_, err = flood.Run(ctx, dir)
	close(stopSampling)
	wg.Wait()
	if err != nil {
		return 0, 0, "", err
	}
	_, hwm, err := proc.memory()
	if err != nil {
		return 0, 0, "", err
	}
	if how == "VmHWM" {
		return base, hwm, how, nil
	}
	return base, sampled, how, nil
}

// waitHashMemoryReleased polls the metrics of the Caddy whose admin
// endpoint is on port admin until its hashing workers hold no memory.
func waitHashMemoryReleased(ctx context.Context, admin int, limit time.Duration) error {
	const metric = "authgate_password_hash_memory_bytes"
	deadline := time.Now().Add(limit)
	for {
		m, err := readMetrics(ctx, admin)
		if err != nil {
			return err
		}
		value, ok := m[metric]
		switch {
		case !ok:
			return fmt.Errorf("metrics: no %s at port %d", metric, admin)
		case value == 0:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("the hashing workers still hold %.0f bytes after %s", value, limit)
		}
		sleep(ctx, 500*time.Millisecond)
	}
}

// readMetrics returns the Prometheus metrics of the Caddy whose admin
// endpoint is on port admin, by series (the name with its labels).
func readMetrics(ctx context.Context, admin int) (map[string]float64, error) {
	u := fmt.Sprintf("http://127.0.0.1:%d/metrics", admin)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: status %d at %s", resp.StatusCode, u)
	}
	return parseMetrics(string(body)), nil
}

// parseMetrics reads Prometheus' text format: one "series value" a line,
// comments skipped.
func parseMetrics(text string) map[string]float64 {
	m := map[string]float64{}
	for line := range strings.SplitSeq(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}
