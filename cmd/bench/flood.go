package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"github.com/authgate/authgate/caddymodule/password"
)

// flood measures a login flood: the gate's latency beside it, and the
// logins it gets through against what the machine's cores can hash.
func (b *bench) flood(ctx context.Context) (section, error) {
	if err := expectStatuses(ctx, expect{"gate", url(b.ports.Gate), b.gateHeaders(), 200}); err != nil {
		return section{}, err
	}
	latency, besideProbe, err := b.gateBesideFlood(ctx)
	if err != nil {
		return section{}, err
	}
	throughput, err := b.loginThroughput(ctx, besideProbe)
	if err != nil {
		return section{}, err
	}
	return section{
		rows:   append(latency.rows, throughput.rows...),
		checks: append(latency.checks, throughput.checks...),
		notes:  append(latency.notes, throughput.notes...),
	}, nil
}

// floodLoad posts wrong passwords for the bench user over o.floodConns
// connections, for d: every request costs one hash.
func (b *bench) floodLoad(d time.Duration) wrk {
	return wrk{URL: url(b.ports.Gate) + "auth/users/login", Threads: 1, Conns: b.o.floodConns,
		Duration: d, Timeout: 30 * time.Second, Script: floodScript(benchUser)}
}

// gateBesideFlood probes the gate's latency at a modest fixed rate: idle,
// beside a flood of wrong-password logins, and, for reference, beside the
// same hashing in another process with no login at all. It also returns
// the flood's own row.
func (b *bench) gateBesideFlood(ctx context.Context) (section, row, error) {
	probeHeader := http.Header{}
	for k, v := range b.gateHeaders() {
		probeHeader.Set(k, v)
	}
	gateProbe := probe{URL: url(b.ports.Gate), Header: probeHeader, Rate: b.o.probeRate, Duration: b.o.dur}
	probeDesc := fmt.Sprintf("Go probe, %d req/s", b.o.probeRate)
	idle := row{Name: "gate, idle", Load: probeDesc}
	flooded := row{Name: "gate, during login flood", Load: probeDesc, Note: fmt.Sprintf("beside %d login connections", b.o.floodConns)}
	flood := row{Name: "login flood, beside the probe", Load: fmt.Sprintf("wrk -t1 -c%d", b.o.floodConns), Note: "req/s = logins/s"}
	hashing := row{Name: "gate, beside hashing alone", Load: probeDesc, Note: "authgate's hashing busy in another process, no logins"}
	floodLoad := b.floodLoad(b.o.dur + 2*time.Second)
	for r := range b.o.rounds {
		hashingRes, err := besideHashing(ctx, gateProbe)
		if err != nil {
			return section{}, row{}, err
		}
		hashing.Rounds = append(hashing.Rounds, hashingRes)
		// Which goes first alternates, as in the pairs of the throughput
		// part; after a flood its queue drains before anything else is
		// measured.
		var idleRes, floodRes, probeRes result
		for step := range 2 {
			if (r+step)%2 == 0 {
				idleRes, err = gateProbe.Run(ctx)
			} else {
				trace := ""
				if r == 0 {
					trace = b.o.trace
				}
				floodRes, probeRes, err = beside(ctx, b.dir, floodLoad, gateProbe, b.ports.Admin, trace)
				sleep(ctx, 2*time.Second)
			}
			if err != nil {
				return section{}, row{}, err
			}
		}
		idle.Rounds = append(idle.Rounds, idleRes)
		flooded.Rounds = append(flooded.Rounds, probeRes)
		flood.Rounds = append(flood.Rounds, floodRes)
		logger.Printf("round %d/%d gate p99 idle %s, during the flood %s, beside hashing alone %s; %.1f logins/s, answers %v",
			r+1, b.o.rounds, ms(idleRes.P99), ms(probeRes.P99), ms(hashingRes.P99), floodRes.RPS(), floodRes.Status)
	}
	flood.Note = "req/s = logins/s; " + floodAnswers(flood)
	// What the machine allows: the same hashing, with no login handled.
	overFloor := ratioCheck(fmt.Sprintf("gate p99 during a %d-connection login flood ÷ beside hashing alone", b.o.floodConns), roundRatio(flooded, hashing, p99), "<=", 1.2)
	overIdle := ratioCheck(fmt.Sprintf("gate p99 during a %d-connection login flood ÷ idle", b.o.floodConns), roundRatio(flooded, idle, p99), "<=", 2.0)
	overIdle.Measured += fmt.Sprintf(" (beside hashing alone, no logins: %.2f× idle)", roundRatio(hashing, idle, p99))
	return section{
		rows:   []row{idle, flooded, hashing, flood},
		checks: []check{overFloor, overIdle},
		notes: []string{
			fmt.Sprintf("Login flood: wrk posts a wrong password for the real user over %d connections; the gate's latency is probed meanwhile by a Go client at %d req/s, open loop. For reference, the gate is also probed beside hashing alone: another process (bin/bench -hash-load) keeps one password hash per core running through caddymodule/password, hashing as authgate does, with no request at all; the gate's p99 there is what this machine allows beside a flood whatever the gate does, and the flood's p99 over it is what the login path adds in the gate's process.", b.o.floodConns, b.o.probeRate),
		},
	}, flood, nil
}

// loginThroughput measures the logins a flood gets through against the
// machine's hash limit. The flood runs alone (the probe, its upstream and
// the gate's work would take CPU from the hashing), each round beside the
// limit timed around it; besideProbe, the same flood beside the gate's
// probe, is quoted for comparison.
func (b *bench) loginThroughput(ctx context.Context, besideProbe row) (section, error) {
	alone := row{Name: "login flood alone", Load: fmt.Sprintf("wrk -t1 -c%d -d%s", b.o.floodConns, b.o.dur)}
	flood := b.floodLoad(b.o.dur)
	hasher, err := password.NewHasher(password.DefaultParams(), runtime.NumCPU())
	if err != nil {
		return section{}, err
	}
	defer hasher.Close()
	var limits, parallel []float64
	for r := range b.o.rounds {
		// One hash's time drifts by a fifth from minute to minute here:
		// it is timed on both sides of the flood.
		before, err := hashTimes(hasher, 7)
		if err != nil {
			return section{}, err
		}
		parallelRate, err := parallelHashRate(hasher)
		if err != nil {
			return section{}, err
		}
		res, err := flood.Run(ctx, b.dir)
		if err != nil {
			return section{}, err
		}
		sleep(ctx, 2*time.Second)
		after, err := hashTimes(hasher, 7)
		if err != nil {
			return section{}, err
		}
		hashTime := time.Duration(median(append(before, after...)))
		limits = append(limits, float64(runtime.NumCPU())/hashTime.Seconds())
		parallel = append(parallel, parallelRate)
		alone.Rounds = append(alone.Rounds, res)
		logger.Printf("round %d/%d one hash %s, limit %.1f/s (%.1f/s with %d in parallel); flood alone %.1f logins/s, answers %v",
			r+1, b.o.rounds, hashTime.Round(time.Millisecond/10), limits[r], parallelRate, runtime.NumCPU(), res.RPS(), res.Status)
	}
	alone.Note = "req/s = logins/s; " + floodAnswers(alone)
	var ratios []float64
	for i, res := range alone.Rounds {
		ratios = append(ratios, res.RPS()/limits[i])
	}
	throughput := median(ratios)
	return section{
		rows: []row{alone},
		checks: []check{{
			Name: "login throughput ÷ hash limit",
			Measured: fmt.Sprintf("%.2f× (%.1f logins/s; limit %d cores ÷ one hash's time = %.1f/s; %d hashes in parallel in-process: %.1f/s; beside the probe: %.1f logins/s)",
				throughput, alone.rps(), runtime.NumCPU(), median(limits), runtime.NumCPU(), median(parallel), besideProbe.rps()),
			Target: "≥ 0.85×",
			Pass:   throughput >= 0.85,
		}},
		notes: []string{
			"Login throughput is measured apart, from the same flood with nothing else running (the probe, its upstream and the gate's work would take CPU from the hashing), and compared in each round with the hash limit timed around it: cores ÷ one hash's time (median of 7 hashes before the flood and 7 after), in-process with `password.NewHasher(DefaultParams(), cores).Hash`; the same hasher's rate with one hash per core in parallel is shown beside it.",
		},
	}, nil
}

// beside runs the login flood and, once it is under way, the probe. With
// a trace file, it also records an execution trace of the Caddy whose
// admin endpoint is on port admin while the probe runs.
func beside(ctx context.Context, dir string, flood wrk, p probe, admin int, trace string) (floodRes, probeRes result, err error) {
	var wg sync.WaitGroup
	var floodErr, traceErr error
	wg.Go(func() { floodRes, floodErr = flood.Run(ctx, dir) })
	sleep(ctx, time.Second) // the flood's connections are open and queued
	if trace != "" {
		wg.Go(func() { traceErr = record(ctx, admin, p.Duration, trace) })
	}
	probeRes, err = p.Run(ctx)
	wg.Wait()
	return floodRes, probeRes, errors.Join(err, floodErr, traceErr)
}

// besideHashing runs the probe while another process (this program with
// -hash-load) keeps authgate's hashing busy on every core: the
// same code at the same priority as during a login flood, without a
// single request. The gate's latency beside it is what the machine allows
// beside a flood; the flood's own overhead is what the rest adds.
func besideHashing(ctx context.Context, p probe) (result, error) {
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	cmd := exec.CommandContext(ctx, self, "-hash-load", (p.Duration + 2*time.Second).String())
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("hash load: %w", err)
	}
	sleep(ctx, time.Second) // every hashing worker is busy
	res, err := p.Run(ctx)
	return res, errors.Join(err, cmd.Wait())
}

// burnHashes keeps one hash per core (GOMAXPROCS) computing through
// package password, as authgate hashes, until d has passed.
func burnHashes(d time.Duration) error {
	h, err := password.NewHasher(password.DefaultParams(), 0)
	if err != nil {
		return err
	}
	defer h.Close()
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	errs := make(chan error, runtime.GOMAXPROCS(0))
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if _, err := h.Hash(context.Background(), "a password of some length"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// record writes an execution trace of d from the Caddy whose admin
// endpoint is on port admin (Caddy serves net/http/pprof there) to file.
func record(ctx context.Context, admin int, d time.Duration, file string) error {
	u := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/trace?seconds=%d", admin, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("trace: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("trace: status %d", resp.StatusCode)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("trace: %w", err)
	}
	logger.Printf("wrote an execution trace of the flood to %s (go tool trace %s)", file, file)
	return f.Close()
}

// floodAnswers tells how a flood's logins were answered: it is only a flood of
// hashes if they were 401, not 429.
func floodAnswers(flood row) string {
	var hashed, throttled, other int64
	for _, res := range flood.Rounds {
		hashed += res.Status["401"]
		throttled += res.Status["429"]
		other += res.Status["other"]
	}
	return fmt.Sprintf("answers: %d × 401, %d × 429, %d other", hashed, throttled, other)
}

// hashTimes returns the times of n argon2id hashes at the default cost, one
// at a time, through authgate's hashing workers.
func hashTimes(h *password.Hasher, n int) ([]float64, error) {
	var ts []float64
	for range n {
		t := time.Now()
		if _, err := h.Hash(context.Background(), "a password of some length"); err != nil {
			return nil, err
		}
		ts = append(ts, float64(time.Since(t)))
	}
	return ts, nil
}

// parallelHashRate returns the rate of as many hashes in parallel as there
// are cores: it shows what the cores achieve together (they share memory
// bandwidth), beside the limit of cores ÷ one hash's time.
func parallelHashRate(h *password.Hasher) (float64, error) {
	const each = 7
	cores := runtime.NumCPU()
	t := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, cores)
	for range cores {
		wg.Go(func() {
			for range each {
				if _, err := h.Hash(context.Background(), "a password of some length"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(cores*each) / time.Since(t).Seconds(), nil
}
