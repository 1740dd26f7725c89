package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/mail"
	"github.com/authgate/authgate/caddymodule/store"
	"github.com/authgate/authgate/caddymodule/testenv"
)

// bounds measures the properties whose statement is a time, which the
// tests no longer assert (a test that fails by the clock of a busy machine
// teaches people to rerun it): a login for an unknown user costs what a
// wrong password costs; a frozen Redis closes the gate within a bound and
// never lets a request through; a stalled SMTP server holds a request only
// until its context ends.
func (b *bench) bounds(ctx context.Context) (section, error) {
	var out section
	for _, part := range []func(context.Context) (section, error){b.unknownUserTiming, b.redisFrozen, b.smtpStalled} {
		sec, err := part(ctx)
		if err != nil {
			return section{}, err
		}
		out.rows = append(out.rows, sec.rows...)
		out.checks = append(out.checks, sec.checks...)
		out.notes = append(out.notes, sec.notes...)
	}
	return out, nil
}

// timingLogins is how many logins of each kind the unknown-user row times.
const timingLogins = 15

// unknownUserTiming times logins for names that have no account against
// logins of the bench user with a wrong password, alternating, one at a
// time: both must cost one hash, so that the time of an answer does not
// tell whether an account exists.
func (b *bench) unknownUserTiming(ctx context.Context) (section, error) {
	site := url(b.ports.Gate)
	var unknown, wrong []time.Duration
	for i := range timingLogins {
		for step := range 2 {
			isUnknown := (i+step)%2 == 0
			name, want := benchUser, "INVALID_PASSWORD"
			if isUnknown {
				name, want = fmt.Sprintf("nosuchuser%d", i), "REGISTER_FOR_A_PASSWORD"
			}
			t := time.Now()
			a, err := call(ctx, postClient, http.MethodPost, site+"auth/users/login",
				map[string]string{"username": name, "password": "not the password of anyone"}, nil)
			d := time.Since(t)
			if err != nil {
				return section{}, err
			}
			if a.status != http.StatusUnauthorized || a.code != want {
				return section{}, fmt.Errorf("login as %s: %s, want 401 %s", name, a, want)
			}
			if isUnknown {
				unknown = append(unknown, d)
			} else {
				wrong = append(wrong, d)
			}
		}
	}
	u, w := timesResult(unknown), timesResult(wrong)
	ratio := float64(u.P50) / float64(w.P50)
	desc := fmt.Sprintf("%d logins, alternating", timingLogins)
	return section{
		rows: []row{
			{Name: "login, unknown user", Load: desc, Rounds: []result{u}, Note: "401 REGISTER_FOR_A_PASSWORD; p99 = the slowest"},
			{Name: "login, wrong password", Load: desc, Rounds: []result{w}, Note: "401 INVALID_PASSWORD; p99 = the slowest"},
		},
		checks: []check{{
			Name:     "login time: unknown user ÷ known user with a wrong password",
			Measured: fmt.Sprintf("%.2f× (medians %s and %s over %d each)", ratio, ms(u.P50), ms(w.P50), timingLogins),
			Target:   "0.50×–2.00×",
			Pass:     ratio >= 0.5 && ratio <= 2,
		}},
		notes: []string{
			fmt.Sprintf("Unknown user: %d logins for names without an account (a new name each time) and %d for the bench user with a wrong password, alternating, one at a time, through `POST /auth/users/login` on the gate site; the ratio is of the medians. Both must run one password hash (the test counts hashes); this is the time it makes.", timingLogins, timingLogins),
		},
	}, nil
}

// timesResult is a series of one-at-a-time requests as a result: its
// median as P50 and its slowest as P99.
func timesResult(ds []time.Duration) result {
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	var total time.Duration
	for _, d := range ds {
		total += d
	}
	return result{Requests: int64(len(ds)), Duration: total, P50: percentile(sorted, 50), P99: sorted[len(sorted)-1]}
}

// frozen is how a gate request may be held up while Redis does not answer,
// derived from the code: the options caddymodule/store gives go-redis, and
// what go-redis makes of them.
type frozen struct {
	silence  time.Duration // the session cache's silence limit
	try      time.Duration // one try at a command
	retries  int
	backoff  time.Duration // the longest pause before a retry
	lookup   time.Duration // a whole lookup: every try and pause
	first503 time.Duration // from the freeze to the first 503, at most
	how      string
}

// silenceMax mirrors caddymodule/sessions' silenceMax: the session cache is
// dropped when its subscription has said nothing for this long (it pings
// every second), and every lookup then asks Redis.
const silenceMax = 3 * time.Second

func frozenBounds() (frozen, error) {
	uo, err := store.RedisConfig{URL: "redis://127.0.0.1:1/0"}.Options()
	if err != nil {
		return frozen{}, err
	}
	// The client fills in go-redis's defaults (PoolTimeout, back-off).
	c := redis.NewClient(uo.Simple())
	o := c.Options()
	c.Close()
	f := frozen{silence: silenceMax, retries: o.MaxRetries, backoff: o.MaxRetryBackoff}
	// A try waits for a connection of the pool (PoolTimeout), then for the
	// reply (ReadTimeout). Writing a command to a stopped Redis, or
	// connecting to it, completes in the kernel at once; only reads wait.
	// A new connection's greeting is a read too, and a try whose greeting
	// times out is not retried.
	f.try = o.PoolTimeout + o.ReadTimeout
	f.lookup = time.Duration(1+f.retries)*f.try + time.Duration(f.retries)*f.backoff
	f.first503 = f.silence + f.lookup
	f.how = fmt.Sprintf("caddymodule/store gives go-redis ReadTimeout %s, WriteTimeout %s, DialTimeout %s, MaxRetries %d; go-redis then waits up to PoolTimeout %s (ReadTimeout + 1 s) for a connection of its pool (%d of them) and pauses up to %s before a retry, and retries a read that timed out and a pool wait that timed out. One try: PoolTimeout + ReadTimeout = %s (a write or a connect to a stopped Redis completes in the kernel; only reads wait). One lookup: %d tries and %d pauses = %s. The session cache serves a valid session until its subscription has been silent for %s (caddymodule/sessions' silenceMax; it pings every second), so the first 503 comes at most %s + %s = %s after the freeze.",
		o.ReadTimeout, o.WriteTimeout, o.DialTimeout, o.MaxRetries, o.PoolTimeout, o.PoolSize, o.MaxRetryBackoff,
		f.try, 1+f.retries, f.retries, f.lookup, f.silence, f.silence, f.lookup, f.first503)
	return f, nil
}

// Redis is frozen this long in each round of redisFrozen, between a lead
// and a tail of normal traffic.
const (
	freezeLead = 3 * time.Second
	freezeFor  = 15 * time.Second
	freezeTail = 8 * time.Second
	// The probes' rates: a session's requests and a forged token's.
	freezeRate       = 50
	freezeForgedRate = 10
)

// redisFrozen freezes a gate's Redis with SIGSTOP under gate traffic and
// measures how soon the gate closes (503), how long answers take while it
// is frozen, that no request passes without a valid session, and how soon
// it recovers after SIGCONT. The gate gets a Redis and a Caddy of its own,
// so that the other parts' stores are not frozen.
func (b *bench) redisFrozen(ctx context.Context) (section, error) {
	bound, err := frozenBounds()
	if err != nil {
		return section{}, err
	}
	r, err := b.startRedis("redis-frozen")
	if err != nil {
		return section{}, err
	}
	admin, port, err := twoPorts()
	if err != nil {
		return section{}, err
	}
	proc, err := b.start(ctx, "frozen", b.caddy, gateCaddyfile(admin, port, b.ports.Upstream, b.global(r.URL())), port)
	if err != nil {
		return section{}, err
	}
	defer proc.Stop()
	site := url(port)
	cookie, err := login(ctx, site)
	if err != nil {
		return section{}, err
	}
	// The worst case: the cache on and serving the session.
	if _, err := waitLog(ctx, proc.log, "session cache on", 1, time.Minute); err != nil {
		return section{}, err
	}
	forgedToken := cookie.Value[:len(cookie.Value)-1] + flipChar(cookie.Value[len(cookie.Value)-1])
	rounds := min(b.o.rounds, 3)
	var firsts, p99s, maxes, recoveries, cacheBacks []time.Duration
	var frozenAnswers, passed, wrong int
	for round := range rounds {
		ev, err := freezeRound(ctx, r, site, cookie.Name+"="+cookie.Value, cookie.Name+"="+forgedToken)
		if err != nil {
			return section{}, err
		}
		back, err := waitLog(ctx, proc.log, "session cache on", round+2, time.Minute)
		if err != nil {
			return section{}, err
		}
		a := ev.analyse()
		if a.first503 < 0 {
			return section{}, fmt.Errorf("round %d: no 503 while Redis was frozen for %s", round+1, freezeFor)
		}
		logger.Printf("round %d/%d redis frozen: first 503 after %s, answers while frozen p99 %s (max %s, %d answers), recovered %s after SIGCONT, cache on again after %s; %d forged passed, %d wrong answers",
			round+1, rounds, a.first503.Round(time.Millisecond), a.p99.Round(time.Millisecond), a.max.Round(time.Millisecond),
			a.answers, a.recovery.Round(time.Millisecond), back.Sub(ev.thawAt).Round(100*time.Millisecond), a.passed, len(a.wrong))
		for _, w := range a.wrong[:min(len(a.wrong), 5)] {
			logger.Printf("  wrong answer: %s", w)
		}
		firsts = append(firsts, a.first503)
		p99s = append(p99s, a.p99)
		maxes = append(maxes, a.max)
		recoveries = append(recoveries, a.recovery)
		cacheBacks = append(cacheBacks, back.Sub(ev.thawAt))
		frozenAnswers += a.answers
		passed += a.passed
		wrong += len(a.wrong)
	}
	worstFirst, worstP99, worstMax, worstRecovery := slices.Max(firsts), slices.Max(p99s), slices.Max(maxes), slices.Max(recoveries)
	secs := func(ds []time.Duration) string {
		var s []string
		for _, d := range ds {
			s = append(s, fmt.Sprintf("%.2f", d.Seconds()))
		}
		return strings.Join(s, ", ") + " s"
	}
	return section{
		checks: []check{
			{
				Name:     "Redis frozen (SIGSTOP) under gate load: time to the first 503",
				Measured: fmt.Sprintf("%.2f s, the worst of %d rounds (%s)", worstFirst.Seconds(), rounds, secs(firsts)),
				Target:   fmt.Sprintf("≤ %.1f s (silence %s + one lookup %s)", bound.first503.Seconds(), bound.silence, bound.lookup),
				Pass:     worstFirst <= bound.first503,
			},
			{
				Name:     "Redis frozen: p99 of the answers to requests sent while frozen",
				Measured: fmt.Sprintf("%.2f s, the worst of %d rounds (%s; slowest %.2f s; %d answers)", worstP99.Seconds(), rounds, secs(p99s), worstMax.Seconds(), frozenAnswers),
				Target:   fmt.Sprintf("≤ %.1f s (one lookup)", bound.lookup.Seconds()),
				Pass:     worstP99 <= bound.lookup,
			},
			{
				Name:     "Redis frozen: requests passed without a valid session; answers other than 200 or 503",
				Measured: fmt.Sprintf("%d; %d", passed, wrong),
				Target:   "0; 0",
				Pass:     passed == 0 && wrong == 0,
			},
			{
				Name:     "Redis thawed (SIGCONT): from SIGCONT to the answer after which every answer is 200",
				Measured: fmt.Sprintf("%.2f s, the worst of %d rounds (%s; the session cache on again after %s)", worstRecovery.Seconds(), rounds, secs(recoveries), secs(cacheBacks)),
				Target:   fmt.Sprintf("≤ %.1f s (one lookup)", bound.lookup.Seconds()),
				Pass:     worstRecovery <= bound.lookup,
			},
		},
		notes: []string{
			fmt.Sprintf("Redis frozen: a gate Caddy with a Redis of its own, the bench user logged in and the session cache on; an open-loop Go probe sends the session's requests at %d/s and a forged token's (the session's with its last character changed) at %d/s, for %s, then Redis gets SIGSTOP for %s, then SIGCONT and %s more; %d rounds. A request's time is from its sending to its answer. Every session request must be answered 200 or 503, every forged one never 200. The bounds come from the code: %s",
				freezeRate, freezeForgedRate, freezeLead, freezeFor, freezeTail, rounds, bound.how),
		},
	}, nil
}

// freezeEvents is what the probes of one freeze round saw.
type freezeEvents struct {
	freezeAt, thawAt time.Time
	session, forged  []probeEvent
}

type probeEvent struct {
	sent   time.Time
	d      time.Duration
	status int
	err    error
}

func (e probeEvent) answered() time.Time { return e.sent.Add(e.d) }

// freezeRound runs the probes and freezes Redis in the middle.
func freezeRound(ctx context.Context, r *testenv.Redis, site, session, forged string) (freezeEvents, error) {
	var (
		mu sync.Mutex
		ev freezeEvents
		wg sync.WaitGroup
	)
	record := func(into *[]probeEvent) func(time.Time, time.Duration, int, error) {
		return func(sent time.Time, d time.Duration, status int, err error) {
			mu.Lock()
			*into = append(*into, probeEvent{sent, d, status, err})
			mu.Unlock()
		}
	}
	total := freezeLead + freezeFor + freezeTail
	probes := []probe{
		{URL: site, Header: http.Header{"Cookie": {session}}, Rate: freezeRate, Duration: total, Workers: 1024, Each: record(&ev.session)},
		{URL: site, Header: http.Header{"Cookie": {forged}, "Accept": {"application/json"}}, Rate: freezeForgedRate, Duration: total, Workers: 256, Each: record(&ev.forged)},
	}
	errs := make([]error, len(probes)+1)
	for i, p := range probes {
		wg.Go(func() { _, errs[i] = p.Run(ctx) })
	}
	sleep(ctx, freezeLead)
	if err := r.Pause(); err != nil {
		return freezeEvents{}, err
	}
	freezeAt := time.Now()
	sleep(ctx, freezeFor)
	errs[len(probes)] = r.Resume()
	thawAt := time.Now()
	wg.Wait()
	ev.freezeAt, ev.thawAt = freezeAt, thawAt
	return ev, errors.Join(errs...)
}

// freezeAnalysis is one round's figures.
type freezeAnalysis struct {
	first503 time.Duration // from the freeze to the first 503 answer; -1 for none
	p99, max time.Duration // of the session requests sent while frozen
	answers  int           // session requests sent while frozen
	recovery time.Duration // from the thaw to the last answer that was not 200
	passed   int           // forged requests answered 200
	wrong    []string      // answers neither 200 nor 503, and errors
}

func (ev freezeEvents) analyse() freezeAnalysis {
	a := freezeAnalysis{first503: -1}
	var during []time.Duration
	var lastBad time.Time
	for _, e := range ev.session {
		switch {
		case e.err != nil:
			a.wrong = append(a.wrong, fmt.Sprintf("session request at %+.2f s: %v", e.sent.Sub(ev.freezeAt).Seconds(), e.err))
		case e.status != http.StatusOK && e.status != http.StatusServiceUnavailable:
			a.wrong = append(a.wrong, fmt.Sprintf("session request at %+.2f s: status %d", e.sent.Sub(ev.freezeAt).Seconds(), e.status))
		}
		if e.status == http.StatusServiceUnavailable {
			if t := e.answered().Sub(ev.freezeAt); a.first503 < 0 || t < a.first503 {
				a.first503 = t
			}
		}
		if !e.sent.Before(ev.freezeAt) && e.sent.Before(ev.thawAt) {
			during = append(during, e.d)
		}
		if e.status != http.StatusOK && e.answered().After(lastBad) {
			lastBad = e.answered()
		}
	}
	for _, e := range ev.forged {
		switch {
		case e.err == nil && e.status == http.StatusOK:
			a.passed++
		case e.err != nil:
			a.wrong = append(a.wrong, fmt.Sprintf("forged request at %+.2f s: %v", e.sent.Sub(ev.freezeAt).Seconds(), e.err))
		case e.status != http.StatusUnauthorized && e.status != http.StatusServiceUnavailable:
			a.wrong = append(a.wrong, fmt.Sprintf("forged request at %+.2f s: status %d", e.sent.Sub(ev.freezeAt).Seconds(), e.status))
		}
	}
	slices.Sort(during)
	a.answers = len(during)
	if len(during) > 0 {
		a.p99, a.max = percentile(during, 99), during[len(during)-1]
	}
	if lastBad.After(ev.thawAt) {
		a.recovery = lastBad.Sub(ev.thawAt)
	}
	return a
}

// flipChar returns another character of the token alphabet than c.
func flipChar(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// waitLog waits until the log holds n lines containing what, and returns
// when it saw the n-th.
func waitLog(ctx context.Context, path, what string, n int, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			return time.Time{}, err
		}
		if strings.Count(string(b), what) >= n {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no %d × %q in %s after %s\n%s", n, what, path, limit, tail(path))
		}
		sleep(ctx, 20*time.Millisecond)
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
	}
}

// stallServer accepts connections and never says a word: an SMTP server
// that hangs. It notes when each connection came and when its client
// closed it.
type stallServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []stalled
	wg    sync.WaitGroup
}

type stalled struct{ accepted, closed time.Time }

func startStallServer() (*stallServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &stallServer{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			i := len(s.conns)
			s.conns = append(s.conns, stalled{accepted: time.Now()})
			s.mu.Unlock()
			s.wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(io.Discard, c) // until the client closes it
				s.mu.Lock()
				s.conns[i].closed = time.Now()
				s.mu.Unlock()
			})
		}
	})
	return s, nil
}

func (s *stallServer) addr() string { return s.ln.Addr().String() }

// conn returns the i-th connection, if it has come.
func (s *stallServer) conn(i int) (stalled, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i >= len(s.conns) {
		return stalled{}, false
	}
	return s.conns[i], true
}

// Close stops accepting and waits for every connection to be closed by
// its client.
func (s *stallServer) Close() {
	s.ln.Close()
	s.wg.Wait()
}

// How many times the client gives up on a request whose mail stalls.
const stallCancels = 5

// smtpStalled measures the real binary against an SMTP server that
// accepts and never answers: a code request is answered
// ERROR_EMAIL_SENDING_FAILED once the send gives up (mail.DefaultTimeout),
// and when the client gives up first, the send ends with the request's
// context; no code is left in Redis either way.
func (b *bench) smtpStalled(ctx context.Context) (section, error) {
	const slack = 2 * time.Second
	st, err := startStallServer()
	if err != nil {
		return section{}, err
	}
	defer st.Close()
	admin, port, err := twoPorts()
	if err != nil {
		return section{}, err
	}
	global := authgateGlobal(b.pg.URL(), "redis "+b.redis.URL(), b.extra+"; smtp smtp://"+st.addr()+"; mail_from bench@example.com")
	proc, err := b.start(ctx, "smtp-stall", b.caddy, gateCaddyfile(admin, port, b.ports.Upstream, global), port)
	if err != nil {
		return section{}, err
	}
	defer proc.Stop()
	site := url(port)
	request := func(ctx context.Context) (answer, error) {
		return call(ctx, postClient, http.MethodPost, site+"auth/users/requestotp", map[string]string{"username": benchUser}, nil)
	}
	otpKeys := func() (int, error) {
		opts, err := redis.ParseURL(b.redis.URL())
		if err != nil {
			return 0, err
		}
		rdb := redis.NewClient(opts)
		defer rdb.Close()
		keys, err := rdb.Keys(ctx, "bench:*:otp").Result()
		return len(keys), err
	}

	// The client gives up once the server holds the mail's connection.
	var afterCancel []time.Duration
	leftAfterCancel := 0
	for i := range stallCancels {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := request(rctx)
			done <- err
		}()
		if err := waitFor(ctx, time.Minute, func() bool { _, ok := st.conn(i); return ok }); err != nil {
			cancel()
			return section{}, fmt.Errorf("the mail's connection never came: %w", err)
		}
		cancel()
		cancelled := time.Now()
		if err := <-done; !errors.Is(err, context.Canceled) {
			return section{}, fmt.Errorf("a request given up: %v, want context.Canceled", err)
		}
		var closed time.Time
		if err := waitFor(ctx, time.Minute, func() bool { c, _ := st.conn(i); closed = c.closed; return !closed.IsZero() }); err != nil {
			return section{}, fmt.Errorf("authgate kept the stalled mail's connection after its request ended: %w", err)
		}
		afterCancel = append(afterCancel, closed.Sub(cancelled))
		n, err := otpKeys()
		if err != nil {
			return section{}, err
		}
		leftAfterCancel = max(leftAfterCancel, n)
	}

	// The client waits for the answer.
	logger.Printf("a code request against a stalled SMTP server, waiting for its answer (up to %s)", mail.DefaultTimeout)
	t := time.Now()
	a, err := request(ctx)
	waited := time.Since(t)
	if err != nil {
		return section{}, err
	}
	left, err := otpKeys()
	if err != nil {
		return section{}, err
	}
	answerOK := a.status == http.StatusInternalServerError && a.code == "ERROR_EMAIL_SENDING_FAILED"
	worst := slices.Max(afterCancel)
	var each []string
	for _, d := range afterCancel {
		each = append(each, ms(d))
	}
	return section{
		checks: []check{
			{
				Name:     "SMTP server stalled, client waits: time to ERROR_EMAIL_SENDING_FAILED",
				Measured: fmt.Sprintf("%.2f s (%s; codes left in Redis: %d)", waited.Seconds(), a, left),
				Target:   fmt.Sprintf("%s to %s, 500 ERROR_EMAIL_SENDING_FAILED, 0 codes", mail.DefaultTimeout, mail.DefaultTimeout+slack),
				Pass:     answerOK && waited >= mail.DefaultTimeout && waited <= mail.DefaultTimeout+slack && left == 0,
			},
			{
				Name:     "SMTP server stalled, client gives up: from its request's end to the mail's connection closed",
				Measured: fmt.Sprintf("%s, the worst of %d (%s; codes left in Redis: %d)", ms(worst), stallCancels, strings.Join(each, ", "), leftAfterCancel),
				Target:   fmt.Sprintf("≤ %s, 0 codes", slack),
				Pass:     worst <= slack && leftAfterCancel == 0,
			},
		},
		notes: []string{
			fmt.Sprintf("SMTP stalled: a Caddy with `smtp` pointing at a listener of the bench that accepts and never answers; the bench user asks for a code (`POST /auth/users/requestotp`). %d times the client gives up as soon as the listener holds the mail's connection, and the time is from then to the listener seeing authgate close it (the request's context ends when its client goes; the send must end with it). Once the client waits: the send, without a deadline of its request's, gives up after mail.DefaultTimeout (%s), and the answer must follow within %s. After each, no code may be left in Redis (`bench:*:otp`): nobody got the mail.", stallCancels, mail.DefaultTimeout, slack),
		},
	}, nil
}

// waitFor polls cond until it holds, for up to limit.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		sleep(ctx, 10*time.Millisecond)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}
