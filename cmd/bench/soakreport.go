package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"mime/quotedprintable"
	netmail "net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	_ "github.com/lib/pq" // database/sql's "postgres"
	"github.com/redis/go-redis/v9"
)

// sample is the state of the soak at one moment.
type sample struct {
	at           time.Duration // since the traffic started
	ok, wrong    int           // answers so far
	rss          int64
	hashMem      int64 // argon2 working memory the hashing workers hold
	fds          int
	goroutines   int
	pgConns      int
	redisClients int
	redisMem     int64
	dbsize       int64
	keys         map[string]int // by kind, as SCAN found them
	noTTL        int            // keys that would live for ever
	expect       map[string]keyRange
	scan         time.Duration // how long the scan of Redis took
	wait         time.Duration // how long the actions under way took to end
	held         time.Duration // how long the traffic was held back in all
	underWay     int           // actions still under way when the wait gave up
	load1        float64
	ours, others float64 // CPU since the previous sample, in cores
}

// sampler reads the soak's Caddy, Redis and PostgreSQL.
type sampler struct {
	s        *soaker
	rdb      *redis.Client
	db       *sql.DB
	versions string
	cpu      cpuTimes
	cpuAt    time.Time
}

// The sampler's own connections, told apart from authgate's by name.
const samplerName = "authgate-soak-sampler"

func newSampler(s *soaker) (*sampler, error) {
	opts, err := redis.ParseURL(s.st.redis.URL())
	if err != nil {
		return nil, err
	}
	opts.ClientName = samplerName
	m := &sampler{s: s, rdb: redis.NewClient(opts)}
	if m.db, err = sql.Open("postgres", s.st.pg.URL()+"&application_name="+samplerName); err != nil {
		m.rdb.Close()
		return nil, err
	}
	ctx := context.Background()
	info, err := m.rdb.Info(ctx, "server").Result()
	if err != nil {
		m.close()
		return nil, err
	}
	var pgVersion string
	if err := m.db.QueryRow("SHOW server_version").Scan(&pgVersion); err != nil {
		m.close()
		return nil, err
	}
	m.versions = fmt.Sprintf("PostgreSQL %s; Redis %s", strings.Fields(pgVersion)[0], infoField(info, "redis_version"))
	m.cpu, m.cpuAt = readCPU(), time.Now()
	return m, nil
}

func (m *sampler) close() {
	m.rdb.Close()
	m.db.Close()
}

// restLimit is how long a sample waits for the actions under way to end.
const restLimit = 10 * time.Second

// take samples everything, holding the traffic back meanwhile.
func (m *sampler) take(ctx context.Context, at time.Duration) (sample, error) {
	sm := sample{at: at, keys: map[string]int{}}
	held := time.Now()
	sm.underWay = m.s.rest.hold(restLimit)
	defer m.s.rest.release()
	sm.wait = time.Since(held)
	from := time.Now()
	if err := m.scan(ctx, &sm); err != nil {
		return sample{}, err
	}
	sm.scan = time.Since(from)
	sm.expect = m.s.model.expect(from, time.Now())
	sm.ok, sm.wrong = m.s.tally.totals()
	if err := m.read(ctx, &sm); err != nil {
		return sample{}, err
	}
	sm.held = time.Since(held)
	cpu, now := readCPU(), time.Now()
	sm.ours, sm.others = cpu.since(m.cpu, now.Sub(m.cpuAt))
	m.cpu, m.cpuAt = cpu, now
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		sm.load1, _ = strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	}
	return sm, nil
}

// scan counts the keys by kind, and those without a lifetime. SCAN leaves
// out keys whose time is up, as Redis 7 expires them on access.
func (m *sampler) scan(ctx context.Context, sm *sample) error {
	iter := m.rdb.Scan(ctx, 0, "*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("scanning redis: %w", err)
	}
	p := m.rdb.Pipeline()
	ttls := make([]*redis.DurationCmd, len(keys))
	for i, k := range keys {
		ttls[i] = p.PTTL(ctx, k)
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redis PTTL: %w", err)
	}
	for i, k := range keys {
		sm.keys[keyKind(soakPrefix, k)]++
		// -1 ms: no expiry (go-redis keeps PTTL's -1 as is); -2: gone.
		if ttls[i].Val() == -1 {
			sm.noTTL++
		}
	}
	return nil
}

// read samples the process and the stores.
func (m *sampler) read(ctx context.Context, sm *sample) error {
	var err error
	if sm.rss, _, err = m.s.proc.memory(); err != nil {
		return err
	}
	// At rest, but for the client's idle connections to the gate: closed
	// here, their goroutines in Caddy end a moment later.
	m.s.gateC.CloseIdleConnections()
	var metrics map[string]float64
	for settled, last, deadline := 0, -1.0, time.Now().Add(2*time.Second); settled < 2 && time.Now().Before(deadline); {
		if metrics, err = readMetrics(ctx, m.s.admin); err != nil {
			return err
		}
		if g := metrics["go_goroutines"]; g == last {
			settled++
		} else {
			settled, last = 0, g
		}
		sleep(ctx, 50*time.Millisecond)
	}
	g, ok := metrics["go_goroutines"]
	if !ok {
		return errors.New("metrics: no go_goroutines")
	}
	sm.goroutines = int(g)
	sm.hashMem = int64(metrics["authgate_password_hash_memory_bytes"])
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", m.s.proc.cmd.Process.Pid))
	if err != nil {
		return err
	}
	sm.fds = len(fds)
	if err := m.db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND backend_type = 'client backend' AND application_name <> $1`,
		samplerName).Scan(&sm.pgConns); err != nil {
		return fmt.Errorf("pg_stat_activity: %w", err)
	}
	if sm.dbsize, err = m.rdb.DBSize(ctx).Result(); err != nil {
		return err
	}
	info, err := m.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return err
	}
	if sm.redisMem, err = strconv.ParseInt(infoField(info, "used_memory"), 10, 64); err != nil {
		return fmt.Errorf("redis used_memory: %w", err)
	}
	list, err := m.rdb.ClientList(ctx).Result()
	if err != nil {
		return err
	}
	for line := range strings.SplitSeq(strings.TrimSpace(list), "\n") {
		if !strings.Contains(line, " name="+samplerName+" ") {
			sm.redisClients++
		}
	}
	return nil
}

// infoField returns a field of Redis' INFO answer.
func infoField(info, key string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return ""
}

// line is a sample in the log.
func (sm sample) line() string {
	keys := 0
	for _, n := range sm.keys {
		keys += n
	}
	return fmt.Sprintf("%s: %d answers as expected, %d not; RSS %s, %d goroutines, %d fds, %d PostgreSQL and %d Redis connections; %d keys (%s); traffic held %s, %d actions under way",
		clock(sm.at), sm.ok, sm.wrong, mib(sm.rss), sm.goroutines, sm.fds, sm.pgConns, sm.redisClients, keys, sm.keysText(), sm.held.Round(time.Millisecond), sm.underWay)
}

// keysText shows each kind's count with its expected range.
func (sm sample) keysText() string {
	var parts []string
	for _, k := range keyKinds {
		parts = append(parts, fmt.Sprintf("%s %d in %d–%d", k, sm.keys[k], sm.expect[k].lo, sm.expect[k].hi))
	}
	return strings.Join(parts, ", ")
}

// clock shows a time since the start as m:ss.
func clock(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// cpuTimes are CPU clock ticks spent: by the whole machine, and by this
// process and everything it started (the soak's Caddy, Redis, PostgreSQL).
type cpuTimes struct{ busy, ours int64 }

// ticks is Linux's USER_HZ, the unit of /proc's CPU times.
const ticks = 100

func readCPU() cpuTimes {
	var t cpuTimes
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal
		for i := 1; i < len(f) && i <= 8; i++ {
			if i == 4 || i == 5 {
				continue // idle, iowait
			}
			n, _ := strconv.ParseInt(f[i], 10, 64)
			t.busy += n
		}
	}
	t.ours = treeCPU(os.Getpid())
	return t
}

// since returns the cores used by ours and by everything else over d; -1
// for both when d is too short for /proc's ticks to say.
func (t cpuTimes) since(before cpuTimes, d time.Duration) (ours, others float64) {
	secs := d.Seconds()
	if secs < 1 {
		return -1, -1
	}
	busy := float64(t.busy-before.busy) / ticks / secs
	// A process of ours that ended takes its ticks out of the sum.
	ours = min(busy, max(0, float64(t.ours-before.ours)/ticks/secs))
	return ours, busy - ours
}

// treeCPU returns the CPU ticks of process root and its descendants
// (those that have ended are not counted).
func treeCPU(root int) int64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	parent := map[int]int{}
	spent := map[int]int64{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces: the fields start after its ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b)[i+1:]) // state ppid … utime(12) stime(13)
		if len(f) < 14 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		parent[pid], spent[pid] = ppid, utime+stime
	}
	var total int64
	for pid, n := range spent {
		for p := pid; p > 1; p = parent[p] {
			if p == root {
				total += n
				break
			}
		}
	}
	return total
}

// otpInMail finds the code in a reset mail's body (auth.RequestOTP).
var otpInMail = regexp.MustCompile(`(?m)^\s+(\d{6})\s*$`)

// takeMail reads the one mail to address in the mail_dir, returns its code
// and removes it. Mails are written before the request is answered.
func takeMail(dir, address string) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		return "", err
	}
	var mine []string
	var code string
	for _, f := range files {
		c, to, err := readMail(f)
		if errors.Is(err, os.ErrNotExist) {
			continue // another's, read and removed meanwhile
		}
		if err != nil {
			return "", err
		}
		if strings.EqualFold(to, address) {
			mine, code = append(mine, f), c
		}
	}
	for _, f := range mine {
		_ = os.Remove(f)
	}
	switch {
	case len(mine) != 1:
		return "", fmt.Errorf("%d mails to %s in %s", len(mine), address, dir)
	case code == "":
		return "", fmt.Errorf("no code in the mail to %s", address)
	}
	return code, nil
}

// readMail returns the code in a mail file and its recipient.
func readMail(path string) (code, to string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	msg, err := netmail.ReadMessage(bufio.NewReader(f))
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	addr, err := netmail.ParseAddress(msg.Header.Get("To"))
	if err != nil {
		return "", "", fmt.Errorf("%s: To: %w", path, err)
	}
	var body io.Reader = msg.Body
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	if m := otpInMail.FindSubmatch(b); m != nil {
		code = string(m[1])
	}
	return code, addr.Address, nil
}

// finals are what the soak checks once the traffic is over.
type finals struct {
	accounts, known int // accounts in PostgreSQL; accounts the soak made
	mailsLeft       int // mails nobody read
	mailsRead       int64
}

func (m *sampler) final(ctx context.Context, s *soaker) (finals, error) {
	var f finals
	if err := m.db.QueryRowContext(ctx, `SELECT count(*) FROM authgate.users`).Scan(&f.accounts); err != nil {
		return f, err
	}
	s.mu.Lock()
	f.known = len(s.users)
	s.mu.Unlock()
	left, err := filepath.Glob(filepath.Join(s.mailDir, "*.eml"))
	if err != nil {
		return f, err
	}
	f.mailsLeft, f.mailsRead = len(left), s.mails.Load()
	return f, nil
}

// slope is the least-squares slope of ys over xs; 0 with fewer than two
// distinct xs.
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if len(xs) < 2 || len(xs) != len(ys) {
		return 0
	}
	var sx, sy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
	}
	mx, my := sx/n, sy/n
	var sxy, sxx float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
	}
	if sxx == 0 {
		return 0
	}
	return sxy / sxx
}

// series is a quantity the soak follows over time.
type series struct {
	name, unit string
	// tol is the largest slope per minute, either way, that counts as
	// flat; 0: reported, not judged.
	tol float64
	of  func(sample) float64
}

// soakSeries are the series of the report, judged where tol is set.
var soakSeries = []series{
	{"Caddy RSS", "MiB", 0, func(s sample) float64 { return float64(s.rss) / (1 << 20) }},
	{"Caddy RSS less argon2 memory", "MiB", 2, func(s sample) float64 { return float64(s.rss-s.hashMem) / (1 << 20) }},
	{"Caddy goroutines", "", 2, func(s sample) float64 { return float64(s.goroutines) }},
	{"Caddy open files", "", 1, func(s sample) float64 { return float64(s.fds) }},
	{"PostgreSQL connections", "", 0.5, func(s sample) float64 { return float64(s.pgConns) }},
	{"Redis connections", "", 0.5, func(s sample) float64 { return float64(s.redisClients) }},
	{"Redis keys", "", 0, func(s sample) float64 { return float64(s.dbsize) }},
	{"Redis used memory", "MiB", 0, func(s sample) float64 { return float64(s.redisMem) / (1 << 20) }},
}

// Slopes are judged over at least this long after the warm-up, and this
// many samples.
const (
	judgedSpan    = 2 * time.Minute
	judgedSamples = 6
)

// slopeVerdict is one series' slope after the warm-up.
type slopeVerdict struct {
	series
	slope, mean, first, last float64
	judged                   bool // enough samples after the warm-up
	pass                     bool
}

// judgeSlopes fits each series over the samples after warmup.
func judgeSlopes(samples []sample, warmup time.Duration) []slopeVerdict {
	var after []sample
	for _, s := range samples {
		if s.at >= warmup {
			after = append(after, s)
		}
	}
	enough := len(after) >= judgedSamples && after[len(after)-1].at-after[0].at >= judgedSpan
	var out []slopeVerdict
	for _, sr := range soakSeries {
		v := slopeVerdict{series: sr, judged: enough && sr.tol > 0, pass: true}
		if len(after) > 0 {
			var xs, ys []float64
			for _, s := range after {
				xs = append(xs, s.at.Minutes())
				ys = append(ys, sr.of(s))
				v.mean += sr.of(s)
			}
			v.mean /= float64(len(after))
			v.slope = slope(xs, ys)
			v.first, v.last = ys[0], ys[len(ys)-1]
		}
		if v.judged {
			v.pass = math.Abs(v.slope) <= sr.tol
		}
		out = append(out, v)
	}
	return out
}

// keyVerdict judges the keys of every sample against the model: each kind
// within its range, and none without a lifetime.
type keyVerdict struct {
	pass   bool
	misses []string // the samples and kinds out of range
}

func judgeKeys(samples []sample) keyVerdict {
	v := keyVerdict{pass: true}
	for _, s := range samples {
		for _, k := range keyKinds {
			if !s.expect[k].holds(s.keys[k]) {
				v.pass = false
				v.misses = append(v.misses, fmt.Sprintf("%s: %s %d, expected %d–%d", clock(s.at), k, s.keys[k], s.expect[k].lo, s.expect[k].hi))
			}
		}
		if s.noTTL > 0 {
			v.pass = false
			v.misses = append(v.misses, fmt.Sprintf("%s: %d keys without a lifetime", clock(s.at), s.noTTL))
		}
	}
	return v
}

// soakReport is the soak's section of RELIABILITY.md.
type soakReport struct {
	date     time.Time
	took     time.Duration
	o        soakOptions
	command  string
	machine  machine
	software string
	settings []string
	samples  []sample
	tally    *tally
	final    finals
	// caddyErrors are the first lines of Caddy's log at level error.
	caddyErrors []string
}

// The soak's section lies between these lines; the rest of the file is
// written by hand and kept.
const (
	soakBegin = "<!-- make soak writes from here to its end mark; edit the rest by hand -->"
	soakEnd   = "<!-- end of make soak's part -->"
)

func (r soakReport) markdown() (string, bool) {
	var b strings.Builder
	ok, wrong := r.tally.totals()
	slopes := judgeSlopes(r.samples, r.o.warmup)
	keys := judgeKeys(r.samples)
	var checks []check
	checks = append(checks, check{
		Name: "unexpected answers (5xx, transport errors, wrong statuses or bodies)", Measured: fmt.Sprint(wrong),
		Target: "0", Pass: wrong == 0,
	})
	for _, v := range slopes {
		if v.tol == 0 {
			continue
		}
		c := check{
			Name:     fmt.Sprintf("%s after the warm-up, slope per minute", v.name),
			Measured: fmt.Sprintf("%+.2f%s (mean %.1f%s)", v.slope, unitSuffix(v.unit), v.mean, unitSuffix(v.unit)),
			Target:   fmt.Sprintf("within ±%g%s", v.tol, unitSuffix(v.unit)),
			Pass:     v.pass,
		}
		if !v.judged {
			c.Measured += "; not judged: under " + fmt.Sprint(judgedSamples) + " samples or " + judgedSpan.String() + " after the warm-up"
		}
		checks = append(checks, c)
	}
	// The pools' own bounds: caddymodule/store opens at most 32 PostgreSQL
	// connections (SetMaxOpenConns) and go-redis 10 per GOMAXPROCS (its
	// PoolSize default), plus the session cache's subscription (two for a
	// moment at a reload). Growth beyond them would be connections nobody
	// pools.
	pgMax, redisMax := 0, 0
	for _, sm := range r.samples {
		pgMax, redisMax = max(pgMax, sm.pgConns), max(redisMax, sm.redisClients)
	}
	redisBound := 10*r.machine.CPUs + 2
	checks = append(checks, check{
		Name:     "connections at most, PostgreSQL; Redis",
		Measured: fmt.Sprintf("%d; %d", pgMax, redisMax),
		Target:   fmt.Sprintf("≤ 32 (the pool's bound); ≤ %d (10 per core, and the subscriptions)", redisBound),
		Pass:     pgMax <= 32 && redisMax <= redisBound,
	})
	keysMeasured := "every sample within"
	if !keys.pass {
		keysMeasured = fmt.Sprintf("%d misses, the first: %s", len(keys.misses), strings.Join(keys.misses[:min(3, len(keys.misses))], "; "))
	}
	checks = append(checks,
		check{Name: "Redis keys of each kind against the live data the soak holds (sessions, indexes, codes, throttle counters, announcements); keys without a lifetime", Measured: keysMeasured, Target: "within the model's range at every sample; none", Pass: keys.pass},
		check{Name: "accounts in PostgreSQL, against those the soak registered", Measured: fmt.Sprintf("%d of %d", r.final.accounts, r.final.known), Target: "equal", Pass: r.final.accounts == r.final.known},
		check{Name: "mails in mail_dir nobody read (every code asked for was mailed once and read)", Measured: fmt.Sprintf("%d left; %d read", r.final.mailsLeft, r.final.mailsRead), Target: "0 left", Pass: r.final.mailsLeft == 0},
	)
	pass := true
	for _, c := range checks {
		pass = pass && c.Pass
	}

	b.WriteString(soakBegin + "\n\n## Soak\n\n")
	b.WriteString(soakProse)
	fmt.Fprintf(&b, "\n- Date: %s (the run took %s; traffic for %s)\n", r.date.UTC().Format("2006-01-02 15:04 MST"), r.took.Round(time.Second), r.o.dur)
	fmt.Fprintf(&b, "- Command: `make soak` (`%s`)\n", r.command)
	fmt.Fprintf(&b, "- Machine: %d cores (`nproc`), %s, %s memory, %s; shared with other jobs (see the load below)\n", r.machine.CPUs, r.machine.Model, r.machine.Memory, r.machine.Kernel)
	fmt.Fprintf(&b, "- Software: %s; %s\n", r.software, r.machine.Go)
	for _, s := range r.settings {
		fmt.Fprintf(&b, "- %s\n", s)
	}
	fmt.Fprintf(&b, "- Result: %d answers as expected, %d not; %s\n", ok, wrong, verdict(pass))
	b.WriteString("\n### Targets\n\n")
	b.WriteString(checkTable(checks))
	b.WriteString("\n### The machine meanwhile\n\n")
	b.WriteString(loadText(r.samples))
	b.WriteString("\n### Over time\n\n")
	fmt.Fprintf(&b, "Answers are counted since the start; each key kind shows what SCAN found, with the model's range beside it (lo–hi); `argon2` is the part of RSS that is the hashing workers' working memory (authgate_password_hash_memory_bytes); `held` is how long the sample held the traffic back (waiting for the actions under way to end, at most %s, then reading); `others` is the CPU (in cores) used by processes that are not the soak's since the previous sample.\n\n", restLimit)
	b.WriteString(sampleTable(r.samples))
	b.WriteString("\n### Slopes after the warm-up\n\n")
	fmt.Fprintf(&b, "Least-squares slope over the samples from %s on (%d of them).\n\n", clock(r.o.warmup), countAfter(r.samples, r.o.warmup))
	b.WriteString(slopeTable(slopes))
	b.WriteString("\n### Answers by kind\n\n")
	b.WriteString(tallyTable(r.tally.rows()))
	b.WriteString("\n### Unexpected answers\n\n")
	r.tally.mu.Lock()
	examples := r.tally.examples
	r.tally.mu.Unlock()
	if len(examples) == 0 {
		b.WriteString("None.\n")
	}
	for _, e := range examples {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	if len(r.caddyErrors) > 0 {
		fmt.Fprintf(&b, "\nCaddy's log at level error (the first %d lines):\n\n```\n%s\n```\n", len(r.caddyErrors), strings.Join(r.caddyErrors, "\n"))
	}
	if !keys.pass {
		b.WriteString("\n### Keys out of range\n\n")
		for _, m := range keys.misses[:min(30, len(keys.misses))] {
			fmt.Fprintf(&b, "- %s\n", m)
		}
	}
	b.WriteString("\n" + soakEnd + "\n")
	return b.String(), pass
}

const soakProse = `What runs: the real binary (bin/caddy) with a throwaway PostgreSQL and Redis, all on loopback, and a Go client sending a steady mix of traffic for the whole run: requests through the gate with live sessions (the upstream answers with the Remote-User it got, which must be the session's user) and without one, logins with the right password (from the account's own address, with its device cookie) and wrong ones (from random addresses through ` + "`X-Forwarded-For`" + `, as an attack spreads), logins of unknown names, registrations new and taken, password resets whose code is read back from the mail in ` + "`mail_dir`" + ` (a third of them after a wrong guess), codes asked for and never used, logouts, and a config reload through the admin API (` + "`POST /load`" + ` of the same Caddyfile) every 30 seconds. After each logout and reset the ended sessions are tried at the gate and must be refused.

How to read it: every answer is checked against what the contract says for that request. A 401 for a wrong password or a 429 once a throttle is full are answers as expected and are counted by kind; a 5xx, a transport error, a wrong status or a wrong body is unexpected, and one is a failure. A request that no server read because a reload closed its connection first is sent again, as HTTP allows, and counted. Every sample (every 10 s) reads Caddy's resident memory (` + "`/proc`" + `), its goroutines (its metrics' ` + "`go_goroutines`" + `) and open files, PostgreSQL's connections (` + "`pg_stat_activity`" + `), Redis' connections, keys and memory. Caddy's resident memory is judged without the hashing workers' argon2 working memory (19 MiB a worker while logins come; a worker gives it back after 30 s without one, and a reload's new workers start without it), which makes a saw-tooth with the reload period, not growth. What a leak looks like is growth that goes on after the warm-up (in which pools fill, caches warm and the short lifetimes of the soak's data come round once): a series is flat when its least-squares slope per minute is within the tolerance, and a real leak of, say, one goroutine per reload or per thousand requests would show as several per minute. Redis keys are judged not by their slope (shown for information: the live data grows a little as registered accounts join the traffic) but against the live data: the client knows every session it holds, every code it has not used, every throttle counter and announcement it caused, and when each must end; Redis may hold nothing beyond that, nor lack what surely lives. Each sample holds new traffic back and waits for what is under way to end (for up to 10 s), so that it reads the process and the stores at rest: the goroutines, files and connections of requests under way swing with the machine's speed and would hide a slow leak; an action it could not wait for widens the range of keys by what it may add or remove. The machine is shared: the CPU used by other jobs is measured beside every sample, and a slow moment shows there rather than being hidden.
`

func unitSuffix(unit string) string {
	if unit == "" {
		return ""
	}
	return " " + unit
}

func countAfter(samples []sample, warmup time.Duration) int {
	n := 0
	for _, s := range samples {
		if s.at >= warmup {
			n++
		}
	}
	return n
}

// loadText says how busy the machine was with other work.
func loadText(samples []sample) string {
	var others, ours, load []float64
	for _, s := range samples {
		if s.others >= 0 {
			others = append(others, s.others)
			ours = append(ours, s.ours)
		}
		load = append(load, s.load1)
	}
	if len(others) == 0 {
		return "No samples.\n"
	}
	return fmt.Sprintf("Other processes on the machine used %.2f cores on average between samples (median %.2f, the most %.2f); the soak's own (the client, Caddy, PostgreSQL, Redis) %.2f (the most %.2f); the 1-minute load average was %.1f on average (the most %.1f). %s\n",
		mean(others), median(others), maxOf(others), mean(ours), maxOf(ours), mean(load), maxOf(load), disturbance(others))
}

// disturbance says in words whether other jobs took much of the machine.
func disturbance(others []float64) string {
	switch m := mean(others); {
	case m >= 1:
		return "Other jobs took half the machine or more: latencies and the pace of the traffic suffered, and the figures are of a disturbed run."
	case m >= 0.3:
		return "Other jobs took a noticeable share of the machine: the figures are of a somewhat disturbed run."
	default:
		return "Other jobs left the machine mostly to the soak."
	}
}

func mean(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	var s float64
	for _, v := range vs {
		s += v
	}
	return s / float64(len(vs))
}

func maxOf(vs []float64) float64 {
	m := math.Inf(-1)
	for _, v := range vs {
		m = max(m, v)
	}
	return m
}

func sampleTable(samples []sample) string {
	head := []string{"t", "answers ok", "not ok", "RSS", "argon2", "goroutines", "fds", "PG conns", "Redis conns", "DBSIZE", "Redis mem"}
	for _, k := range keyKinds {
		head = append(head, k)
	}
	head = append(head, "no TTL", "held", "others")
	cells := [][]string{head}
	for _, s := range samples {
		row := []string{clock(s.at), fmt.Sprint(s.ok), fmt.Sprint(s.wrong), mib(s.rss), mib(s.hashMem), fmt.Sprint(s.goroutines), fmt.Sprint(s.fds),
			fmt.Sprint(s.pgConns), fmt.Sprint(s.redisClients), fmt.Sprint(s.dbsize), fmt.Sprintf("%.1f MiB", float64(s.redisMem)/(1<<20))}
		for _, k := range keyKinds {
			row = append(row, fmt.Sprintf("%d (%d–%d)", s.keys[k], s.expect[k].lo, s.expect[k].hi))
		}
		others := "–"
		if s.others >= 0 {
			others = fmt.Sprintf("%.2f", s.others)
		}
		row = append(row, fmt.Sprint(s.noTTL), heldText(s), others)
		cells = append(cells, row)
	}
	return table(cells)
}

// heldText shows how long a sample held the traffic back, and how many
// actions it could not wait for.
func heldText(s sample) string {
	t := fmt.Sprintf("%d ms", s.held.Milliseconds())
	if s.underWay > 0 {
		t += fmt.Sprintf(", %d under way", s.underWay)
	}
	return t
}

func slopeTable(vs []slopeVerdict) string {
	cells := [][]string{{"series", "slope per minute", "mean", "first → last", "tolerance", "result"}}
	for _, v := range vs {
		tol, res := "reported only", ""
		if v.tol > 0 {
			tol = fmt.Sprintf("±%g%s", v.tol, unitSuffix(v.unit))
			res = verdict(v.pass)
			if !v.judged {
				res = "not judged (run too short)"
			}
		}
		cells = append(cells, []string{v.name, fmt.Sprintf("%+.3f%s", v.slope, unitSuffix(v.unit)), fmt.Sprintf("%.1f%s", v.mean, unitSuffix(v.unit)),
			fmt.Sprintf("%.1f → %.1f", v.first, v.last), tol, res})
	}
	return table(cells)
}

func tallyTable(rows []tallyRow) string {
	cells := [][]string{{"traffic", "answer", "count", "kind"}}
	for _, r := range rows {
		kind := map[outcomeKind]string{expected: "expected", unexpected: "UNEXPECTED", skipped: "not sent"}[r.kind]
		cells = append(cells, []string{r.action, r.answer, fmt.Sprint(r.n), kind})
	}
	return table(cells)
}

// writeSection puts the soak's section into path: in place of the one
// there, or at the end, or as a new file.
func writeSection(path, section string) error {
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return os.WriteFile(path, []byte("# Reliability\n\n"+section), 0o644)
	case err != nil:
		return err
	}
	text := string(old)
	i, j := strings.Index(text, soakBegin), strings.Index(text, soakEnd)
	if i < 0 || j < i {
		return os.WriteFile(path, []byte(strings.TrimRight(text, "\n")+"\n\n"+section), 0o644)
	}
	return os.WriteFile(path, []byte(text[:i]+strings.TrimSuffix(section, "\n")+text[j+len(soakEnd):]), 0o644)
}
