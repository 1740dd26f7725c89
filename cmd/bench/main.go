// Command bench measures what authgate's gate costs, against plain Caddy and
// the alternatives, and writes BENCHMARKS.md (issue 6). `make bench` runs it:
//
//	bin/bench [-d 6s] [-rounds 5] [-sessions 1000000] [-o BENCHMARKS.md]
//
// It starts its own PostgreSQL and Redis (throwaway, in a temporary
// directory), an upstream, and Caddy processes with generated Caddyfiles,
// all on loopback, then loads them with wrk. The machine it runs on is
// shared and has 2 cores, so absolute numbers drift from minute to minute:
// every comparison alternates its variants within one run, in rounds, and
// reports ratios (medians over the rounds). Every load stops by itself after
// its duration. Nothing is faked: a target that is missed is printed as
// FAIL, which is information for whoever works on the gate.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/authgate/authgate/caddymodule/password"
	"github.com/authgate/authgate/caddymodule/testenv"
)

type options struct {
	dur        time.Duration
	rounds     int
	threads    int
	conns      int
	floodConns int
	rssConns   int
	probeRate  int
	sessions   int
	out        string
	caddy      string
	security   string
	xcaddy     string
	authgate   string
	only       map[string]bool // parts to run; empty for all
	trace      string          // where to write a Go execution trace of the first flood
}

// The parts of a run, in the order they run; -only picks some.
var parts = []string{"throughput", "flood", "scale", "memory"}

// runs tells whether part is to run.
func (o options) runs(part string) bool { return len(o.only) == 0 || o.only[part] }

func main() {
	var o options
	flag.DurationVar(&o.dur, "d", 6*time.Second, "duration of each measured load (in a throughput or scale comparison, each variant runs it in two halves)")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds of each comparison (medians are reported)")
	flag.IntVar(&o.threads, "t", 2, "wrk threads")
	flag.IntVar(&o.conns, "c", 32, "wrk connections for the throughput variants")
	flag.IntVar(&o.floodConns, "flood", 100, "connections of the login flood beside the gate")
	flag.IntVar(&o.rssConns, "rss-flood", 1000, "connections of the login flood for peak memory")
	flag.IntVar(&o.probeRate, "probe-rate", 250, "requests/s of the gate latency probe during the flood comparison")
	flag.IntVar(&o.sessions, "sessions", 1_000_000, "live sessions in Redis for the scale variant (vs 1,000)")
	flag.StringVar(&o.out, "o", "BENCHMARKS.md", "report file (overwritten); empty for none")
	flag.StringVar(&o.caddy, "caddy", "bin/caddy", "Caddy with authgate (make build)")
	flag.StringVar(&o.security, "caddy-security", "bin/caddy-security", "Caddy with caddy-security, built here if missing")
	flag.StringVar(&o.xcaddy, "xcaddy", "xcaddy.json", "xcaddy config whose Caddy version the peer is built with")
	flag.StringVar(&o.authgate, "authgate", "", "more authgate global directives, ';'-separated (e.g. to compare a setting)")
	flag.StringVar(&o.trace, "trace", "", "write a Go execution trace (go tool trace) of authgate's Caddy during the first login flood to this file")
	hashLoad := flag.Duration("hash-load", 0, "only hash passwords on every core at the lowest priority, as authgate does, for this long, then exit (the bench runs itself so for a reference variant)")
	only := flag.String("only", "", "run only these parts, comma-separated ("+strings.Join(parts, ", ")+"); the report is then only printed unless -o is given")
	flag.Parse()
	if *hashLoad > 0 {
		if err := burnHashes(*hashLoad); err != nil {
			logger.Fatal(err)
		}
		return
	}
	if *only != "" {
		o.only = map[string]bool{}
		for p := range strings.SplitSeq(*only, ",") {
			if !slices.Contains(parts, p) {
				fmt.Fprintf(os.Stderr, "bench: -only: unknown part %q (parts: %s)\n", p, strings.Join(parts, ", "))
				os.Exit(2)
			}
			o.only[p] = true
		}
		// A partial run must not overwrite the committed full report.
		outSet := false
		flag.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "o" })
		if !outSet {
			o.out = ""
		}
	}
	// Caddy's packages, imported through caddymodule, send the standard
	// logger to their JSON log; xcaddy's build messages read better plain.
	log.SetOutput(os.Stderr)
	log.SetFlags(log.LstdFlags)
	log.SetPrefix("")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		logger.Fatal(err)
	}
}

// logger reports progress on stderr. It is not the standard logger, which
// Caddy's packages (imported through caddymodule) send to their JSON log.
var logger = log.New(os.Stderr, "bench: ", 0)

// The user the bench registers, logs in as, and floods with wrong passwords.
const (
	benchUser     = "benchuser"
	benchPassword = "correct horse battery staple"
	securityKey   = "authgate-bench-shared-key-3f1c9a7e5b2d4c6e8a0f"
	smallSessions = 1000 // the scale variant's baseline, and how many tokens both scale variants cycle through
)

func run(ctx context.Context, o options) error {
	started := time.Now()
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found; install it with: sudo apt-get install -y wrk")
	}
	if _, err := os.Stat(o.caddy); err != nil {
		return fmt.Errorf("%w (make build makes it)", err)
	}
	if o.runs("throughput") {
		if err := buildSecurity(ctx, o.security, o.xcaddy); err != nil {
			return err
		}
	}
	caddyVersion, err := caddyVersionOf(o.xcaddy)
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "authgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Everything started is stopped in reverse order on the way out.
	var stops []func()
	defer func() {
		for _, s := range slices.Backward(stops) {
			s()
		}
	}()

	logger.Print("starting PostgreSQL and three Redis servers (gate, 1k and 1M sessions)")
	pg, err := testenv.StartPostgres(filepath.Join(dir, "postgres"))
	if err != nil {
		return err
	}
	stops = append(stops, func() { pg.Stop() })
	var redises [3]*testenv.Redis
	for i, name := range []string{"redis-gate", "redis-1k", "redis-1m"} {
		r, err := testenv.StartRedis(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		stops = append(stops, func() { r.Stop() })
		redises[i] = r
	}
	rGate, rSmall, rLarge := redises[0], redises[1], redises[2]

	ports, err := freePorts(16)
	if err != nil {
		return err
	}
	next := func() int { p := ports[0]; ports = ports[1:]; return p }
	mp := mainPorts{Admin: next(), Plain: next(), Gate: next(), ForwardAuth: next(), AuthEndpoint: next(), Upstream: next()}
	upstreamAdmin := next()
	secAdmin, secPort := next(), next()
	smallAdmin, smallPort := next(), next()
	largeAdmin, largePort := next(), next()
	rssAdmin, rssPort := next(), next()
	url := func(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/", port) }

	logger.Print("starting the upstream, authgate's Caddy (plain, gate, forward_auth sites), caddy-security's, and the scale Caddies")
	start := func(name, bin, caddyfile string, ready ...int) (*caddyProc, error) {
		p, err := startCaddy(ctx, dir, name, bin, caddyfile, ready...)
		if err == nil {
			stops = append(stops, p.Stop)
		}
		return p, err
	}
	if _, err := start("upstream", o.caddy, upstreamCaddyfile(upstreamAdmin, mp.Upstream), mp.Upstream); err != nil {
		return err
	}
	gateGlobal := func(redisURL string) string { return authgateGlobal(pg.URL(), redisURL, o.authgate) }
	if _, err := start("authgate", o.caddy, mainCaddyfile(mp, gateGlobal(rGate.URL())),
		mp.Plain, mp.Gate, mp.ForwardAuth, mp.AuthEndpoint); err != nil {
		return err
	}
	if o.runs("throughput") {
		if _, err := start("caddy-security", o.security, securityCaddyfile(secAdmin, secPort, mp.Upstream, securityKey), secPort); err != nil {
			return err
		}
	}
	if o.runs("scale") {
		if _, err := start("scale-1k", o.caddy, gateCaddyfile(smallAdmin, smallPort, mp.Upstream, gateGlobal(rSmall.URL())), smallPort); err != nil {
			return err
		}
		if _, err := start("scale-1m", o.caddy, gateCaddyfile(largeAdmin, largePort, mp.Upstream, gateGlobal(rLarge.URL())), largePort); err != nil {
			return err
		}
	}

	// One real account and session, through the users API.
	cookie, err := registerAndLogin(ctx, url(mp.Gate))
	if err != nil {
		return err
	}
	gateHeaders := map[string]string{"Cookie": cookie.String()}
	jwt := securityToken(securityKey, time.Now(), 2*time.Hour)
	secHeaders := map[string]string{"Cookie": "access_token=" + jwt}

	var smallFile, largeFile string
	type expect struct {
		name    string
		url     string
		headers map[string]string
		want    int // 0: anything but 200
	}
	// Every variant must answer 200 with its credential and refuse without
	// it, or the bench would measure error pages.
	must := []expect{
		{"plain", url(mp.Plain), gateHeaders, 200},
		{"gate", url(mp.Gate), gateHeaders, 200},
		{"gate without a session", url(mp.Gate), nil, 0},
		{"forward_auth", url(mp.ForwardAuth), gateHeaders, 200},
		{"forward_auth without a session", url(mp.ForwardAuth), nil, 0},
	}
	if o.runs("throughput") {
		must = append(must,
			expect{"caddy-security", url(secPort), secHeaders, 200},
			expect{"caddy-security without a token", url(secPort), nil, 0})
	}
	if o.runs("scale") {
		logger.Printf("seeding %d and %d sessions into Redis", smallSessions, o.sessions)
		t0 := time.Now()
		smallTokens, err := seedSessions(ctx, rSmall.URL(), "bench", smallSessions, smallSessions)
		if err != nil {
			return err
		}
		largeTokens, err := seedSessions(ctx, rLarge.URL(), "bench", o.sessions, smallSessions)
		if err != nil {
			return err
		}
		logger.Printf("seeded in %s", time.Since(t0).Round(100*time.Millisecond))
		if smallFile, err = writeTokens(dir, "tokens-1k", smallTokens); err != nil {
			return err
		}
		if largeFile, err = writeTokens(dir, "tokens-1m", largeTokens); err != nil {
			return err
		}
		must = append(must,
			expect{"scale 1k, seeded session", url(smallPort), map[string]string{"Cookie": cookie.Name + "=" + smallTokens[0]}, 200},
			expect{"scale 1M, seeded session", url(largePort), map[string]string{"Cookie": cookie.Name + "=" + largeTokens[len(largeTokens)-1]}, 200})
	}
	for _, m := range must {
		got, err := status(ctx, m.url, m.headers)
		if err != nil || !(got == m.want || m.want == 0 && got != http.StatusOK) {
			return fmt.Errorf("%s: status %d (%v), want %d (0: not 200)", m.name, got, err, m.want)
		}
	}

	load := func(u string, headers map[string]string) wrk {
		return wrk{URL: u, Threads: o.threads, Conns: o.conns, Duration: o.dur, Script: headerScript(headers)}
	}
	loadDesc := fmt.Sprintf("wrk -t%d -c%d, 2 × %s", o.threads, o.conns, o.dur/2)
	var rows []row
	var checks []check

	// 1. Throughput: the gate against plain reverse_proxy, forward_auth and
	// caddy-security. Each comparison is a round of runs back to back
	// (runPair), so that the machine's drift between one round and the
	// next cancels out of the round's ratio.
	if o.runs("throughput") {
		gate := &variant{row{Name: "gate (authgate)", Load: loadDesc, Note: "valid session cookie"}, load(url(mp.Gate), gateHeaders)}
		plain := &variant{row{Name: "plain reverse_proxy", Load: loadDesc}, load(url(mp.Plain), gateHeaders)}
		fwd := &variant{row{Name: "forward_auth → users/info", Load: loadDesc, Note: "one extra HTTP hop"}, load(url(mp.ForwardAuth), gateHeaders)}
		sec := &variant{row{Name: "caddy-security", Load: loadDesc, Note: "JWT cookie, HS512"}, load(url(secPort), secHeaders)}
		peers := []*variant{plain, fwd, sec}
		logger.Print("warming up the four variants")
		for _, v := range []*variant{gate, plain, fwd, sec} {
			w := v.load
			w.Duration = 2 * time.Second
			if _, err := w.Run(ctx, dir); err != nil {
				return err
			}
		}
		// gateBeside[i] holds the gate's runs paired with peers[i], in order.
		gateBeside := make([]row, len(peers))
		for r := range o.rounds {
			for k := range peers {
				i := (r + k) % len(peers)
				g, err := runPair(ctx, dir, fmt.Sprintf("round %d/%d", r+1, o.rounds), (r+k)%2 == 0, gate, peers[i])
				if err != nil {
					return err
				}
				gateBeside[i].Rounds = append(gateBeside[i].Rounds, g)
			}
		}
		rows = append(rows, plain.row, gate.row, fwd.row, sec.row)
		checks = append(checks,
			ratioCheck("gate ÷ plain reverse_proxy, req/s", roundRatio(gateBeside[0], plain.row, rps), ">=", 0.90),
			ratioCheck("gate ÷ caddy-security, req/s", roundRatio(gateBeside[2], sec.row, rps), ">=", 1.0),
			ratioCheck("gate ÷ forward_auth, req/s", roundRatio(gateBeside[1], fwd.row, rps), ">=", 2.0))
	}

	// 2. Login flood: the gate's latency, probed at a modest fixed rate,
	// alone and beside a flood of wrong-password logins.
	if o.runs("flood") {
		probeHeader := http.Header{}
		for k, v := range gateHeaders {
			probeHeader.Set(k, v)
		}
		gateProbe := probe{URL: url(mp.Gate), Header: probeHeader, Rate: o.probeRate, Duration: o.dur}
		probeDesc := fmt.Sprintf("Go probe, %d req/s", o.probeRate)
		idle := row{Name: "gate, idle", Load: probeDesc}
		flooded := row{Name: "gate, during login flood", Load: probeDesc, Note: fmt.Sprintf("beside %d login connections", o.floodConns)}
		flood := row{Name: "login flood, beside the probe", Load: fmt.Sprintf("wrk -t1 -c%d", o.floodConns), Note: "req/s = logins/s"}
		hashing := row{Name: "gate, beside hashing alone", Load: probeDesc, Note: "authgate's hashing threads busy in another process, no logins"}
		floodLoad := wrk{URL: url(mp.Gate) + "auth/users/login", Threads: 1, Conns: o.floodConns,
			Duration: o.dur + 2*time.Second, Timeout: 30 * time.Second, Script: floodScript(benchUser)}
		for r := range o.rounds {
			var idleRes, floodRes, probeRes, hashingRes result
			if hashingRes, err = besideHashing(ctx, gateProbe); err != nil {
				return err
			}
			hashing.Rounds = append(hashing.Rounds, hashingRes)
			// Which goes first alternates, as in the pairs above; after a
			// flood its queue drains before anything else is measured.
			for step := range 2 {
				if (r+step)%2 == 0 {
					idleRes, err = gateProbe.Run(ctx)
				} else {
					trace := ""
					if r == 0 {
						trace = o.trace
					}
					floodRes, probeRes, err = beside(ctx, dir, floodLoad, gateProbe, mp.Admin, trace)
					sleep(ctx, 2*time.Second)
				}
				if err != nil {
					return err
				}
			}
			idle.Rounds = append(idle.Rounds, idleRes)
			flooded.Rounds = append(flooded.Rounds, probeRes)
			flood.Rounds = append(flood.Rounds, floodRes)
			logger.Printf("round %d/%d gate p99 idle %s, during the flood %s, beside hashing alone %s; %.1f logins/s, answers %v",
				r+1, o.rounds, ms(idleRes.P99), ms(probeRes.P99), ms(hashingRes.P99), floodRes.RPS(), floodRes.Status)
		}
		flood.Note = "req/s = logins/s; " + floodAnswers(flood)
		floodCheck := ratioCheck(fmt.Sprintf("gate p99 during a %d-connection login flood ÷ idle", o.floodConns), roundRatio(flooded, idle, p99), "<=", 2.0)
		// What the machine allows: the same hashing, with no login handled.
		floodCheck.Measured += fmt.Sprintf(" (beside hashing alone, no logins: %.2f× idle; the flood ÷ hashing alone: %.2f×)",
			roundRatio(hashing, idle, p99), roundRatio(flooded, hashing, p99))
		checks = append(checks, floodCheck)

		// Login throughput against the machine's hash limit: the flood
		// alone (the probe and its upstream would take CPU from the
		// hashing), each round beside the limit timed around it.
		alone := row{Name: "login flood alone", Load: fmt.Sprintf("wrk -t1 -c%d -d%s", o.floodConns, o.dur)}
		floodAlone := floodLoad
		floodAlone.Duration = o.dur
		hasher, err := password.NewHasher(password.DefaultParams(), runtime.NumCPU())
		if err != nil {
			return err
		}
		var limits, parallel []float64
		for r := range o.rounds {
			// One hash's time drifts by a fifth from minute to minute
			// here: it is timed on both sides of the flood.
			before, err := hashTimes(hasher, 7)
			if err != nil {
				return err
			}
			parallelRate, err := parallelHashRate(hasher)
			if err != nil {
				return err
			}
			res, err := floodAlone.Run(ctx, dir)
			if err != nil {
				return err
			}
			sleep(ctx, 2*time.Second)
			after, err := hashTimes(hasher, 7)
			if err != nil {
				return err
			}
			hashTime := time.Duration(median(append(before, after...)))
			limits = append(limits, float64(runtime.NumCPU())/hashTime.Seconds())
			parallel = append(parallel, parallelRate)
			alone.Rounds = append(alone.Rounds, res)
			logger.Printf("round %d/%d one hash %s, limit %.1f/s (%.1f/s with %d in parallel); flood alone %.1f logins/s, answers %v",
				r+1, o.rounds, hashTime.Round(time.Millisecond/10), limits[r], parallelRate, runtime.NumCPU(), res.RPS(), res.Status)
		}
		alone.Note = "req/s = logins/s; " + floodAnswers(alone)
		rows = append(rows, idle, flooded, hashing, flood, alone)
		var ratios []float64
		for i, res := range alone.Rounds {
			ratios = append(ratios, res.RPS()/limits[i])
		}
		throughput := median(ratios)
		checks = append(checks, check{
			Name: "login throughput ÷ hash limit",
			Measured: fmt.Sprintf("%.2f× (%.1f logins/s; limit %d cores ÷ one hash's time = %.1f/s; %d hashes in parallel in-process: %.1f/s; beside the probe: %.1f logins/s)",
				throughput, alone.rps(), runtime.NumCPU(), median(limits), runtime.NumCPU(), median(parallel), flood.rps()),
			Target: "≥ 0.80×",
			Pass:   throughput >= 0.8,
		})
	}

	// 3. Scale: the gate with 1,000 live sessions in Redis vs 1,000,000;
	// both cycle through 1,000 of their sessions.
	if o.runs("scale") {
		scaleLoad := func(u, tokens string) wrk {
			return wrk{URL: u, Threads: o.threads, Conns: o.conns, Duration: o.dur, Script: rotatingScript(tokens, cookie.Name)}
		}
		small := &variant{row{Name: "gate, 1k sessions in Redis", Load: loadDesc, Note: "cycles through 1,000 sessions"}, scaleLoad(url(smallPort), smallFile)}
		large := &variant{row{Name: fmt.Sprintf("gate, %s sessions in Redis", count(o.sessions)), Load: loadDesc, Note: "cycles through 1,000 of them"}, scaleLoad(url(largePort), largeFile)}
		for _, v := range []*variant{small, large} {
			w := v.load
			w.Duration = 2 * time.Second
			if _, err := w.Run(ctx, dir); err != nil {
				return err
			}
		}
		for r := range o.rounds {
			if _, err := runPair(ctx, dir, fmt.Sprintf("round %d/%d", r+1, o.rounds), r%2 == 0, small, large); err != nil {
				return err
			}
		}
		rows = append(rows, small.row, large.row)
		checks = append(checks,
			ratioCheck(fmt.Sprintf("gate with %s ÷ 1k sessions, req/s", count(o.sessions)), roundRatio(large.row, small.row, rps), ">=", 0.90),
			ratioCheck(fmt.Sprintf("gate with %s ÷ 1k sessions, p50", count(o.sessions)), roundRatio(large.row, small.row, p50), "<=", 1.10),
			ratioCheck(fmt.Sprintf("gate with %s ÷ 1k sessions, p99", count(o.sessions)), roundRatio(large.row, small.row, p99), "<=", 1.10))
	}

	// 4. Memory: a fresh gate Caddy, its resident set at rest, then its
	// peak during a flood of rssConns login connections.
	if o.runs("memory") {
		logger.Printf("peak memory during a %d-connection login flood (fresh Caddy)", o.rssConns)
		rssProc, err := start("rss", o.caddy, gateCaddyfile(rssAdmin, rssPort, mp.Upstream, gateGlobal(rGate.URL())), rssPort)
		if err != nil {
			return err
		}
		base, peak, peakHow, err := peakMemory(ctx, dir, rssProc, rssAdmin, url(rssPort), o)
		if err != nil {
			return err
		}
		rssProc.Stop()
		hashConcurrency := runtime.NumCPU() // authgate's default bound: GOMAXPROCS
		argonMemory := int64(password.DefaultParams().Memory) << 10
		allowance := base + int64(hashConcurrency)*argonMemory + 50<<20
		checks = append(checks, check{
			Name:     fmt.Sprintf("peak RSS during a %d-connection login flood", o.rssConns),
			Measured: fmt.Sprintf("%s (at rest %s, +%s; %s)", mib(peak), mib(base), mib(peak-base), peakHow),
			Target:   fmt.Sprintf("≤ %s (at rest + %d × %s + 50 MiB)", mib(allowance), hashConcurrency, mib(argonMemory)),
			Pass:     peak <= allowance,
		})
	}
	rep := report{
		Date:    started,
		Took:    time.Since(started),
		Command: strings.Join(os.Args, " "),
		Machine: describeMachine(),
		Caddy:   fmt.Sprintf("Caddy %s with authgate (this checkout) and with %s %s", caddyVersion, securityModule, securityVersion),
		Rows:    rows,
		Checks:  checks,
		Settings: []string{
			fmt.Sprintf("Each comparison: %d rounds; in each, the two variants compared run %s each, in two halves ordered a b b a (which comes first alternates), so that a steady drift of the machine cancels out; a round's req/s is over both halves, its p50 and p99 the mean of the halves'; a ratio is the median of the rounds' ratios.", o.rounds, o.dur),
			fmt.Sprintf("authgate: default settings (argon2id m=%d KiB t=%d p=%d, hash concurrency = cores), throttles set out of reach%s.",
				password.DefaultParams().Memory, password.DefaultParams().Time, password.DefaultParams().Threads, extraNote(o.authgate)),
		},
		Notes: []string{
			"Upstream: a Caddy `respond \"ok\" 200` site in its own process; every variant proxies to it with `reverse_proxy` over loopback.",
			"plain and gate are two sites of the same Caddy process (bin/caddy); gate requests carry the session cookie of a user registered and logged in through `POST /auth/users/register` and `/auth/users/login`.",
			"forward_auth: Caddy's `forward_auth` to `/auth/users/info` on another site of the same process (the Authelia model: one more HTTP request per request; users/info also reads the account from PostgreSQL).",
			"caddy-security: `authorize with` a policy holding the shared HS512 key; each request carries a pre-made JWT cookie (`access_token`) that caddy-security verifies (it caches only tokens its own portal issued); `Remote-User`/`Remote-Email` injected, like the gate's headers.",
			fmt.Sprintf("Login flood: wrk posts a wrong password for the real user over %d connections; the gate's latency is probed meanwhile by a Go client at %d req/s, open loop. For reference, the gate is also probed beside hashing alone: another process (bin/bench -hash-load) keeps one password hash per core running through caddymodule/password, on the same lowest-priority threads, with no request at all; the gate's p99 there is what this machine allows beside a flood whatever the gate does. Login throughput is measured apart, from the same flood with nothing else running (the probe, its upstream and the gate's work would take CPU from the hashing), and compared in each round with the hash limit timed around it: cores ÷ one hash's time (median of 7 hashes before the flood and 7 after), in-process with `password.NewHasher(DefaultParams(), cores).Hash`; the same hasher's rate with one hash per core in parallel is shown beside it.", o.floodConns, o.probeRate),
			fmt.Sprintf("Memory: a fresh gate Caddy; at rest = VmRSS after one login and a second of gate traffic, once the hashing threads have given back their memory (after 30 s without logins); peak = VmHWM (reset through /proc/<pid>/clear_refs) over a %s flood of %d connections.", o.dur, o.rssConns),
			fmt.Sprintf("Scale: two identical gate Caddies with their own Redis, seeded directly (pipelined) with 1,000 and %s sessions of as many users in caddymodule/sessions' key layout; the load cycles through 1,000 seeded tokens in both.", count(o.sessions)),
		},
	}
	text := rep.Markdown()
	fmt.Print("\n" + text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return err
		}
		logger.Printf("wrote %s (%s)", o.out, rep.Took.Round(time.Second))
	}
	return nil
}

// variant is one load and the runs it measured.
type variant struct {
	row  row
	load wrk
}

// runPair measures a and b in the order a b b a (b a a b unless aFirst),
// each run lasting half of the variant's duration, and appends each
// variant's two halves, merged, to its row; it returns a's. The machine's
// speed drifts by tens of percent within seconds here: a drift that is
// steady over the round cancels out of a b b a, whereas it would count
// fully in a then b.
func runPair(ctx context.Context, dir, label string, aFirst bool, a, b *variant) (result, error) {
	order := []*variant{a, b, b, a}
	if !aFirst {
		order = []*variant{b, a, a, b}
	}
	halves := map[*variant][]result{}
	for _, v := range order {
		load := v.load
		load.Duration /= 2
		res, err := load.Run(ctx, dir)
		if err != nil {
			return result{}, err
		}
		halves[v] = append(halves[v], res)
	}
	for _, v := range []*variant{a, b} {
		res := merge(halves[v][0], halves[v][1])
		v.row.Rounds = append(v.row.Rounds, res)
		logger.Printf("%s %-30s %8.0f req/s  p50 %s  p99 %s", label, v.row.Name, res.RPS(), ms(res.P50), ms(res.P99))
	}
	return a.row.Rounds[len(a.row.Rounds)-1], nil
}

func ratioCheck(name string, v float64, op string, target float64) check {
	pass := v >= target
	sym := "≥"
	if op == "<=" {
		pass, sym = v <= target, "≤"
	}
	return check{Name: name, Measured: fmt.Sprintf("%.2f×", v), Target: fmt.Sprintf("%s %.2f×", sym, target), Pass: pass}
}

func extraNote(extra string) string {
	if extra == "" {
		return ""
	}
	return "; plus `" + extra + "`"
}

// count writes 1000000 as 1M, 1000 as 1k.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
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
// -hash-load) keeps authgate's hashing threads busy on every core: the
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
	sleep(ctx, time.Second) // every hashing thread is busy
	res, err := p.Run(ctx)
	return res, errors.Join(err, cmd.Wait())
}

// burnHashes hashes on as many goroutines as authgate's hashing pool has
// threads, through package password (so on its low-priority threads),
// until d has passed.
func burnHashes(d time.Duration) error {
	h, err := password.NewHasher(password.DefaultParams(), 0)
	if err != nil {
		return err
	}
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	errs := make(chan error, password.PoolSize)
	for range password.PoolSize {
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

// peakMemory measures the resident set of proc at rest, then its peak
// during a flood of wrong-password logins. At rest means warm (pools open,
// one login done) and holding no password hashing memory, which the hashing
// threads give back after a while without logins: the allowance adds one
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
	logger.Print("waiting for the hashing threads to give back their memory (authgate_password_hash_memory_bytes 0)")
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
// endpoint is on port admin until its hashing threads hold no memory.
func waitHashMemoryReleased(ctx context.Context, admin int, limit time.Duration) error {
	const metric = "authgate_password_hash_memory_bytes "
	u := fmt.Sprintf("http://127.0.0.1:%d/metrics", admin)
	deadline := time.Now().Add(limit)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		value := ""
		for line := range strings.SplitSeq(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, metric); ok {
				value = v
			}
		}
		switch {
		case value == "":
			return fmt.Errorf("metrics: no %s at %s", strings.TrimSpace(metric), u)
		case value == "0":
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("the hashing threads still hold %s bytes after %s", value, limit)
		}
		sleep(ctx, 500*time.Millisecond)
	}
}

// registerAndLogin registers the bench user and logs in, as a client of
// the users API would, and returns the session cookie.
func registerAndLogin(ctx context.Context, site string) (*http.Cookie, error) {
	body, _ := json.Marshal(map[string]string{"username": benchUser, "password": benchPassword, "email": "bench@example.com"})
	resp, err := post(ctx, site+"auth/users/register", body)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("register: status %d", resp.StatusCode)
	}
	return login(ctx, site)
}

// login logs the bench user in and returns the session cookie it set.
func login(ctx context.Context, site string) (*http.Cookie, error) {
	body, _ := json.Marshal(map[string]string{"username": benchUser, "password": benchPassword})
	resp, err := post(ctx, site+"auth/users/login", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var answer struct {
		Success bool `json:"success"`
		Data    struct {
			Message struct {
				SSID string `json:"ssid"`
			} `json:"message"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || !answer.Success || answer.Data.Message.SSID == "" {
		return nil, fmt.Errorf("login: status %d, %v", resp.StatusCode, err)
	}
	for _, c := range resp.Cookies() {
		if c.Value == answer.Data.Message.SSID {
			return &http.Cookie{Name: c.Name, Value: c.Value}, nil
		}
	}
	return nil, errors.New("login: no cookie holds the ssid")
}

func post(ctx context.Context, u string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return http.DefaultClient.Do(req)
}

// status returns the status of a GET with the given headers.
func status(ctx context.Context, u string, headers map[string]string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
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
// at a time, through authgate's hashing threads.
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

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
