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
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/authgate/authgate/caddymodule/password"
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

// bench is one run: its options, the stack every part measures, and the
// session of the bench user.
type bench struct {
	o options
	*stack
	cookie *http.Cookie
}

// section is what one part adds to the report: its variants, its targets,
// and the prose that says how they were measured.
type section struct {
	rows   []row
	checks []check
	notes  []string
}

// The parts of a run, in the order they run; -only picks some.
var parts = []struct {
	name string
	run  func(*bench, context.Context) (section, error)
}{
	{"throughput", (*bench).throughput},
	{"accounts", (*bench).accounts},
	{"flood", (*bench).flood},
	{"neighbour", (*bench).neighbour},
	{"scale", (*bench).scale},
	{"memory", (*bench).memory},
	{"bounds", (*bench).bounds},
	{"redis-memory", (*bench).redisMemory},
	{"cluster", (*bench).cluster},
}

func partNames() []string {
	var names []string
	for _, p := range parts {
		names = append(names, p.name)
	}
	return names
}

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
	flag.IntVar(&o.sessions, "sessions", 1_000_000, "live sessions in Redis for the scale variant (vs 1,000) and the Redis memory per session")
	flag.StringVar(&o.out, "o", "BENCHMARKS.md", "report file (overwritten); empty for none")
	flag.StringVar(&o.caddy, "caddy", "bin/caddy", "Caddy with authgate (make build)")
	flag.StringVar(&o.security, "caddy-security", "bin/caddy-security", "Caddy with caddy-security, built here if missing")
	flag.StringVar(&o.xcaddy, "xcaddy", "xcaddy.json", "xcaddy config whose Caddy version the peer is built with")
	flag.StringVar(&o.authgate, "authgate", "", "more authgate global directives, ';'-separated (e.g. to compare a setting)")
	flag.StringVar(&o.trace, "trace", "", "write a Go execution trace (go tool trace) of authgate's Caddy during the first login flood to this file")
	hashLoad := flag.Duration("hash-load", 0, "only hash passwords on every core through caddymodule/password, as authgate does, for this long, then exit (the bench runs itself so for a reference variant)")
	only := flag.String("only", "", "run only these parts, comma-separated ("+strings.Join(partNames(), ", ")+"); the report is then only printed unless -o is given")
	var so soakOptions
	flag.DurationVar(&so.dur, "soak", 0, "run the soak for this long instead of the bench (make soak), and write its section of -o (default RELIABILITY.md)")
	flag.DurationVar(&so.warmup, "soak-warmup", 3*time.Minute, "the start of the soak whose samples are not judged for slopes (at most a third of -soak)")
	flag.DurationVar(&so.sample, "soak-sample", 10*time.Second, "the interval between the soak's samples")
	flag.DurationVar(&so.reload, "soak-reload", 30*time.Second, "the interval between the soak's config reloads")
	flag.IntVar(&so.users, "soak-users", 100, "accounts registered before the soak's traffic starts")
	flag.Parse()
	outSet := false
	flag.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "o" })
	if *hashLoad > 0 {
		if err := burnHashes(*hashLoad); err != nil {
			logger.Fatal(err)
		}
		return
	}
	if *only != "" {
		o.only = map[string]bool{}
		for p := range strings.SplitSeq(*only, ",") {
			if !slices.Contains(partNames(), p) {
				fmt.Fprintf(os.Stderr, "bench: -only: unknown part %q (parts: %s)\n", p, strings.Join(partNames(), ", "))
				os.Exit(2)
			}
			o.only[p] = true
		}
		// A partial run must not overwrite the committed full report.
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
	var err error
	if so.dur > 0 {
		so.warmup = min(so.warmup, so.dur/3)
		so.out = "RELIABILITY.md"
		if outSet {
			so.out = o.out
		}
		err = soak(ctx, so, o.caddy, o.xcaddy)
	} else {
		err = run(ctx, o)
	}
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

// run starts the stack, registers the bench user, runs the parts asked for
// and writes the report.
func run(ctx context.Context, o options) error {
	started := time.Now()
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found; install it with: sudo apt-get install -y wrk")
	}
	if _, err := os.Stat(o.caddy); err != nil {
		return fmt.Errorf("%w (make build makes it)", err)
	}
	caddyVersion, err := caddyVersionOf(o.xcaddy)
	if err != nil {
		return err
	}
	// Before minutes of measurements, not after.
	if o.runs("throughput") {
		if err := buildSecurity(ctx, o.security, o.xcaddy); err != nil {
			return err
		}
	}

	s, err := startStack(ctx, o.caddy, o.authgate)
	if err != nil {
		return err
	}
	defer s.Stop()
	// One real account and session, through the users API.
	cookie, err := registerAndLogin(ctx, url(s.ports.Gate))
	if err != nil {
		return err
	}
	b := &bench{o: o, stack: s, cookie: cookie}

	rep := report{
		Date:    started,
		Command: strings.Join(os.Args, " "),
		Machine: describeMachine(),
		Caddy:   fmt.Sprintf("Caddy %s with authgate (this checkout) and with %s %s", caddyVersion, securityModule, securityVersion),
		Settings: []string{
			fmt.Sprintf("Each comparison: %d rounds; in each, the two variants compared run %s each, in two halves ordered a b b a (which comes first alternates), so that a steady drift of the machine cancels out; a round's req/s is over both halves, its p50 and p99 the mean of the halves'; a ratio is the median of the rounds' ratios.", o.rounds, o.dur),
			fmt.Sprintf("authgate: default settings (argon2id m=%d KiB t=%d p=%d, hash concurrency = cores), throttles set out of reach%s.",
				password.DefaultParams().Memory, password.DefaultParams().Time, password.DefaultParams().Threads, extraNote(o.authgate)),
		},
		Notes: []string{
			"Upstream: a Caddy `respond \"ok\" 200` site in its own process; every variant proxies to it with `reverse_proxy` over loopback.",
		},
	}
	for _, p := range parts {
		if !o.runs(p.name) {
			continue
		}
		sec, err := p.run(b, ctx)
		if err != nil {
			return fmt.Errorf("%s: %w\nauthgate's log ends:\n%s", p.name, err, tail(s.authgate.log))
		}
		rep.Rows = append(rep.Rows, sec.rows...)
		rep.Checks = append(rep.Checks, sec.checks...)
		rep.Notes = append(rep.Notes, sec.notes...)
	}
	rep.Took = time.Since(started)

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

// wrk is a load of the bench's usual shape (-t, -c, -d) on u with headers.
func (b *bench) wrk(u string, headers map[string]string) wrk {
	return wrk{URL: u, Threads: b.o.threads, Conns: b.o.conns, Duration: b.o.dur, Script: headerScript(headers)}
}

// loadDesc describes b.wrk's load in a table.
func (b *bench) loadDesc() string {
	return fmt.Sprintf("wrk -t%d -c%d, 2 × %s", b.o.threads, b.o.conns, b.o.dur/2)
}

// gateHeaders carry the bench user's session.
func (b *bench) gateHeaders() map[string]string {
	return map[string]string{"Cookie": b.cookie.String()}
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

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
