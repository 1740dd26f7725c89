package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authgate/authgate/caddymodule/testenv"
)

// The soak (make soak, bin/bench -soak 10m) runs mixed traffic against the
// real binary and real stores for minutes and samples the process and the
// stores as it goes: nothing may fail that should not, and nothing may
// grow beyond the live data. Its Caddy has short lifetimes (sessions,
// codes, throttle windows), so that the live data reaches its level within
// the warm-up and every expiry path runs many times.

// soakOptions are the soak's knobs (bin/bench -h).
type soakOptions struct {
	dur    time.Duration // how long the traffic runs
	warmup time.Duration // samples before this are not judged for slopes
	sample time.Duration // the interval between samples
	reload time.Duration // the interval between config reloads
	users  int           // accounts registered before the traffic starts
	out    string        // the file whose soak section is rewritten
}

// The soak Caddy's settings (soakCaddyfile).
const (
	soakPrefix      = "soak"
	soakSessionTTL  = 2 * time.Minute
	soakMaxSessions = 3
	soakOTPTTL      = time.Minute
	soakUserLimit   = 5 // failures per soakUserWindow, per user (or device)
	soakUserWindow  = time.Minute
	soakIPLimit     = 30
	soakIPWindow    = time.Minute
	soakCodesLimit  = 20
	soakCodesWindow = 2 * time.Minute
	soakCookie      = "authgate_session" // the default cookie_name
	// How long an answer may take before it counts as an error. Also the
	// horizon of keyModel.stable: a login ends within it.
	soakPatience = 30 * time.Second
	// A session the soak sends to the gate must live this much longer.
	soakMargin = 10 * time.Second
)

// soakActions are the kinds of traffic, each at its own steady rate.
var soakActions = []struct {
	name  string
	every time.Duration
	run   func(*soaker, context.Context)
}{
	{"gate, a session", 20 * time.Millisecond, (*soaker).gate},
	{"gate, no session", 500 * time.Millisecond, (*soaker).gateWithout},
	{"login, right password", 500 * time.Millisecond, (*soaker).loginRight},
	{"login, wrong password", 500 * time.Millisecond, (*soaker).loginWrong},
	{"login, unknown user", 5 * time.Second, (*soaker).loginUnknown},
	{"register", 2 * time.Second, (*soaker).register},
	{"register, name taken", 10 * time.Second, (*soaker).registerTaken},
	{"password reset", 5 * time.Second, (*soaker).reset},
	{"code asked, never used", 10 * time.Second, (*soaker).codeAbandoned},
	{"logout", time.Second, (*soaker).logout},
}

// soakUser is an account of the soak. mu is held by whoever acts as the
// user, so that the model sees each user's actions in the order the
// server did them.
type soakUser struct {
	mu                 sync.Mutex
	name, email, ip    string
	password, userhash string
	device             string // the device cookie of the last login
	// lost is set when an action as the user got an unexpected answer or
	// none: the soak no longer knows the user's state (see release).
	lost bool
}

// soaker is one soak run.
type soaker struct {
	o         soakOptions
	st        *stack
	proc      *caddyProc
	admin     int
	site      string
	mailDir   string
	caddyfile string
	model     *keyModel
	tally     *tally
	gateC     *http.Client // kept-alive connections, like a browser's
	rest      *rest        // lets a sample hold the traffic back

	mu      sync.Mutex
	users   []*soakUser
	nextReg int
	run     string // a random word in the names of this run's accounts
	mails   atomic.Int64
}

// soak runs the soak and writes its section of the report.
func soak(ctx context.Context, o soakOptions, caddy, xcaddyConfig string) error {
	started := time.Now()
	if _, err := os.Stat(caddy); err != nil {
		return fmt.Errorf("%w (make build makes it)", err)
	}
	caddyVersion, err := caddyVersionOf(xcaddyConfig)
	if err != nil {
		return err
	}
	st, err := startStores(caddy, "")
	if err != nil {
		return err
	}
	defer st.Stop()
	ports, err := testenv.FreePorts(3)
	if err != nil {
		return err
	}
	s := &soaker{
		o: o, st: st, admin: ports[0], site: url(ports[1]),
		mailDir: filepath.Join(st.dir, "mail"),
		model: newKeyModel(lifetimes{
			session: soakSessionTTL, otp: soakOTPTTL,
			userWindow: soakUserWindow, ipWindow: soakIPWindow, codesWindow: soakCodesWindow,
			heard: time.Minute, maxSessions: soakMaxSessions,
			clock: 500 * time.Millisecond, sessionExpiresRounding: time.Second,
		}),
		tally: newTally(),
		rest:  newRest(),
		gateC: &http.Client{Timeout: soakPatience, Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		run:   strings.ToLower(rand.Text()[:6]),
	}
	s.caddyfile = soakCaddyfile(ports[0], ports[1], ports[2], st.pg.URL(), "redis "+st.redis.URL(), s.mailDir)
	logger.Printf("starting the soak's Caddy")
	if s.proc, err = st.start(ctx, "soak", caddy, s.caddyfile, ports[1], ports[2]); err != nil {
		return err
	}
	// The model counts announcements heard: the cache must listen.
	if _, err := waitLog(ctx, s.proc.log, "session cache on", 1, time.Minute); err != nil {
		return err
	}
	logger.Printf("registering %d accounts", o.users)
	if err := s.seedUsers(ctx); err != nil {
		return err
	}
	smp, err := newSampler(s)
	if err != nil {
		return err
	}
	defer smp.close()

	logger.Printf("soaking for %s: a sample every %s, a reload every %s", o.dur, o.sample, o.reload)
	trafficCtx, stopTraffic := context.WithTimeout(ctx, o.dur)
	defer stopTraffic()
	var wg sync.WaitGroup
	for _, a := range soakActions {
		wg.Go(func() { s.every(trafficCtx, a.name, a.every, a.run) })
	}
	wg.Go(func() { s.reloads(trafficCtx) })
	t0 := time.Now()
	samples := []sample{}
	take := func() error {
		sm, err := smp.take(ctx, time.Since(t0))
		if err != nil {
			return err
		}
		samples = append(samples, sm)
		logger.Print(sm.line())
		return nil
	}
	err = take()
	tick := time.NewTicker(o.sample)
	for err == nil && trafficCtx.Err() == nil {
		select {
		case <-trafficCtx.Done():
		case <-tick.C:
			err = take()
		}
	}
	tick.Stop()
	stopTraffic()
	wg.Wait()
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The last sample, with the traffic over.
	if err := take(); err != nil {
		return err
	}
	final, err := smp.final(ctx, s)
	if err != nil {
		return err
	}
	rep := soakReport{
		date: started, took: time.Since(started), o: o, samples: samples, tally: s.tally, final: final,
		caddyErrors: errorLines(s.proc.log, 20),
		machine:     describeMachine(), software: fmt.Sprintf("Caddy %s with authgate (this checkout); %s", caddyVersion, smp.versions),
		command: strings.Join(os.Args, " "), settings: s.settings(),
	}
	text, pass := rep.markdown()
	fmt.Print("\n" + text)
	if o.out != "" {
		if err := writeSection(o.out, text); err != nil {
			return err
		}
		logger.Printf("wrote the soak's section of %s (%s)", o.out, rep.took.Round(time.Second))
	}
	if !pass {
		return errors.New("soak: a target failed (see FAIL above)")
	}
	return nil
}

// errorLines returns the first n lines of a Caddy log at level error: what
// Caddy says of the unexpected answers (its log holds no secret).
func errorLines(path string, n int) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, `"level":"error"`) && len(out) < n {
			out = append(out, line)
		}
	}
	return out
}

// soakCaddyfile is the soak's Caddy: the gate site, proxying to an
// upstream site in the same process that answers with the Remote-User it
// got, so that every gate answer shows whom the gate let through. Client
// addresses come from X-Forwarded-For (the soak is the trusted proxy), so
// that wrong passwords spread over many addresses as an attack would. The
// proxy keeps no idle connections to the upstream: their number follows
// the last burst of traffic, up to reverse_proxy's pool size, and would
// swing the goroutines and files sampled at rest by a hundred.
func soakCaddyfile(admin, gate, upstream int, postgres, redis, mailDir string) string {
	global := "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}\n" +
		authgateOption(postgres, redis, soakPrefix,
			"mail_dir "+mailDir+"; mail_from soak@example.com",
			fmt.Sprintf("session_ttl %s; max_sessions %d; otp_ttl %s", soakSessionTTL, soakMaxSessions, soakOTPTTL),
			fmt.Sprintf("throttle_user %d %s; throttle_ip %d %s; throttle_codes %d %s",
				soakUserLimit, soakUserWindow, soakIPLimit, soakIPWindow, soakCodesLimit, soakCodesWindow))
	return globals(admin, global) + fmt.Sprintf(`
http://:%d {
	authgate
	reverse_proxy 127.0.0.1:%d {
		transport http {
			keepalive off
		}
	}
}

http://:%d {
	respond "{http.request.header.Remote-User}" 200
}
`, gate, upstream, upstream)
}

// settings describes the soak's configuration for the report.
func (s *soaker) settings() []string {
	var rates []string
	for _, a := range soakActions {
		rates = append(rates, fmt.Sprintf("%s %g/s", a.name, 1/a.every.Seconds()))
	}
	return []string{
		fmt.Sprintf("authgate: session_ttl %s, max_sessions %d, otp_ttl %s, throttle_user %d %s, throttle_ip %d %s, throttle_codes %d %s, mail_dir, the session cache on (default); everything else default (argon2id at its default cost).",
			soakSessionTTL, soakMaxSessions, soakOTPTTL, soakUserLimit, soakUserWindow, soakIPLimit, soakIPWindow, soakCodesLimit, soakCodesWindow),
		fmt.Sprintf("Traffic, each kind at a steady rate: %s; a config reload (`POST /load` of the same Caddyfile, forced) every %s. The gate site proxies to an upstream site of the same Caddy (`respond \"{http.request.header.Remote-User}\"`), without keep-alive, and the client's gate connections are kept alive between samples and closed at each.", strings.Join(rates, ", "), s.o.reload),
		fmt.Sprintf("%d accounts registered before the traffic; more join as the soak registers them. A sample every %s; slopes are judged after a warm-up of %s.", s.o.users, s.o.sample, s.o.warmup),
	}
}

// every runs f at a steady rate until ctx ends, each call in its own
// goroutine; a call still running when its next is due makes that one
// wait, so a slow server sees less of this kind instead of a pile-up.
func (s *soaker) every(ctx context.Context, name string, interval time.Duration, f func(*soaker, context.Context)) {
	const inFlight = 32
	slots := make(chan struct{}, inFlight)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			s.tally.skip(name, "all 32 of its kind still waiting")
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			s.rest.enter()
			defer s.rest.leave()
			// An action under way finishes: the model must see its end.
			f(s, context.WithoutCancel(ctx))
		})
	}
}

// seedUsers registers the first accounts, a few at a time.
func (s *soaker) seedUsers(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, s.o.users)
	work := make(chan struct{}, 4)
	for range s.o.users {
		work <- struct{}{}
		wg.Go(func() {
			defer func() { <-work }()
			if _, err := s.newUser(ctx, "seed"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// newUser registers a new account and adds it to the pool; an unexpected
// answer is tallied (and returned).
func (s *soaker) newUser(ctx context.Context, action string) (*soakUser, error) {
	s.mu.Lock()
	s.nextReg++
	n := s.nextReg
	s.mu.Unlock()
	u := &soakUser{
		name:     fmt.Sprintf("soak%s%d", s.run, n),
		email:    fmt.Sprintf("soak%s%d@example.com", s.run, n),
		ip:       fmt.Sprintf("10.%d.%d.%d", n/65536%256, n/256%256, n%256),
		password: "soak " + rand.Text(),
	}
	a, ok := s.send(ctx, action, http.MethodPost, "auth/users/register",
		map[string]string{"username": u.name, "password": u.password, "email": u.email}, s.from(u.ip))
	if !ok {
		return nil, errors.New("register: no answer")
	}
	if a.status != http.StatusOK || a.code != "USER_INSERT_OK" {
		s.tally.wrong(action, a, "want 200 USER_INSERT_OK")
		return nil, fmt.Errorf("register %s: %s", u.name, a)
	}
	s.tally.ok(action, a.String())
	s.mu.Lock()
	s.users = append(s.users, u)
	s.mu.Unlock()
	return u, nil
}

// from is the header of a request from the client at ip.
func (s *soaker) from(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }

// send makes one request and sends it again while no server read it (a
// reload resets such connections; see unansweredError), tallying those
// as expected. Any other failure is tallied as unexpected, and ok is
// false.
func (s *soaker) send(ctx context.Context, action, method, path string, body any, header http.Header) (answer, bool) {
	c := postClient
	if method == http.MethodGet {
		c = s.gateC
	}
	for range 5 {
		rctx, cancel := context.WithTimeout(ctx, soakPatience)
		a, err := call(rctx, c, method, s.site+path, body, header)
		cancel()
		var unanswered *unansweredError
		if errors.As(err, &unanswered) {
			s.tally.ok(action, "sent again: no server read it (reload)")
			continue
		}
		if err != nil {
			s.tally.fail(action, "transport error", err.Error())
			return answer{}, false
		}
		return a, true
	}
	s.tally.fail(action, "transport error", "5 tries, none read by a server")
	return answer{}, false
}

// someone returns a random account of the pool.
func (s *soaker) someone() *soakUser {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[mathrand.IntN(len(s.users))]
}

// claim locks a random account for which ok holds, trying a few; nil if
// none was free and fit.
func (s *soaker) claim(ok func(*soakUser) bool) *soakUser {
	for range 10 {
		u := s.someone()
		if !u.mu.TryLock() {
			continue
		}
		if ok(u) {
			return u
		}
		u.mu.Unlock()
	}
	return nil
}

// release ends an action as u. An account whose state the soak no longer
// knows (an action as it got an unexpected answer or none; the run fails
// for that already) leaves the pool, and the model counts its keys as
// possible only, so that one failure does not hide or fake others.
func (s *soaker) release(u *soakUser) {
	if u.lost {
		s.model.lose(u.name, time.Now())
		s.mu.Lock()
		if i := slices.Index(s.users, u); i >= 0 {
			s.users = slices.Delete(s.users, i, i+1)
		}
		s.mu.Unlock()
	}
	u.mu.Unlock()
}

// sessionHeader carries a session token as the cookie.
func sessionHeader(token string, more http.Header) http.Header {
	h := http.Header{"Cookie": {soakCookie + "=" + token}}
	for k, v := range more {
		h[k] = v
	}
	return h
}

// attacker is a random client address of the wrong-password traffic:
// 65,536 of them, so that no one address reaches its limit.
func attacker() string {
	return fmt.Sprintf("198.18.%d.%d", mathrand.IntN(256), mathrand.IntN(256))
}

// gate sends a session's request through the gate: the upstream must get
// it with the session's user.
func (s *soaker) gate(ctx context.Context) {
	const action = "gate, a session"
	var token string
	u := s.claim(func(u *soakUser) bool {
		live := s.model.usable(u.name, time.Now(), soakMargin)
		if len(live) == 0 {
			return false
		}
		token = live[mathrand.IntN(len(live))]
		return true
	})
	if u == nil {
		s.tally.skip(action, "no account with a live session free")
		return
	}
	defer u.mu.Unlock()
	a, ok := s.send(ctx, action, http.MethodGet, "app/page", nil, sessionHeader(token, nil))
	switch {
	case !ok:
	case a.status == http.StatusOK && a.body == u.name:
		s.tally.ok(action, "200, upstream got the user")
	default:
		s.tally.wrong(action, a, "want 200 with the user's name from the upstream")
	}
}

// gateWithout sends a request without a session: never through.
func (s *soaker) gateWithout(ctx context.Context) {
	const action = "gate, no session"
	a, ok := s.send(ctx, action, http.MethodGet, "app/page", nil, http.Header{"Accept": {"application/json"}})
	if !ok {
		return
	}
	if a.status == http.StatusUnauthorized && a.code == "PLEASE_LOGIN" {
		s.tally.ok(action, a.String())
		return
	}
	s.tally.wrong(action, a, "want 401 PLEASE_LOGIN")
}

// ended checks that a session that has just ended no longer passes.
func (s *soaker) ended(ctx context.Context, action, token string) {
	a, ok := s.send(ctx, action, http.MethodGet, "app/page", nil, sessionHeader(token, http.Header{"Accept": {"application/json"}}))
	if !ok {
		return
	}
	if a.status == http.StatusUnauthorized && a.code == "PLEASE_LOGIN" {
		s.tally.ok(action, "ended session refused: "+a.String())
		return
	}
	s.tally.wrong(action, a, "an ended session: want 401 PLEASE_LOGIN")
}

// loginRight logs an account in from its own address, with the device
// cookie of its last login.
func (s *soaker) loginRight(ctx context.Context) {
	const action = "login, right password"
	u := s.claim(func(u *soakUser) bool { return s.model.stable(u.name, time.Now(), soakPatience) })
	if u == nil {
		s.tally.skip(action, "no account free whose sessions are surely alive or gone")
		return
	}
	// A new session, the oldest ended beyond max_sessions, an index made,
	// the counters of the user, the address and the device.
	defer s.model.end(s.model.begin(
		map[string]int{"session": 1, "index": 1, "heard": 1, "throttle": 3},
		map[string]int{"session": 2, "index": 1}))
	defer s.release(u)
	h := s.from(u.ip)
	if u.device != "" {
		h.Set("Cookie", soakCookie+"_device="+u.device)
	}
	from := time.Now()
	a, ok := s.send(ctx, action, http.MethodPost, "auth/users/login", map[string]string{"username": u.name, "password": u.password}, h)
	at := span{from, time.Now()}
	if !ok {
		u.lost = true
		return
	}
	switch {
	// "success" is true, or "true" as the users dialect's own client
	// reads it (issue 12): either is a success, false never.
	case a.status == http.StatusOK && (a.success == true || a.success == "true") && a.str("ssid") != "" && a.cookie(soakCookie) == a.str("ssid"):
		s.tally.ok(action, "200 logged in")
		if u.device == "" {
			// Without a device cookie, the user's and the address's
			// counters count the attempt; a success clears the user's.
			s.model.touched(at.to, soakUserWindow, "login:user:"+u.name)
			s.model.touched(at.to, soakIPWindow, "login:ip:"+u.ip)
		}
		if d := a.cookie(soakCookie + "_device"); d != "" {
			u.device = d
		}
		if n := s.model.loggedIn(u.name, a.str("ssid"), at); n > 0 {
			s.tally.ok(action, fmt.Sprintf("ended the oldest session beyond max_sessions %d", soakMaxSessions))
		}
	case a.status == http.StatusTooManyRequests && a.code == "TOO_MANY_ATTEMPTS":
		// Only without a device cookie, after wrong passwords from elsewhere.
		s.tally.ok(action, a.String())
		s.model.touched(at.to, soakUserWindow, "login:user:"+u.name, "login:device:"+u.name)
		s.model.touched(at.to, soakIPWindow, "login:ip:"+u.ip)
	default:
		u.lost = true
		s.tally.wrong(action, a, "want 200, success, the ssid in the cookie; or 429")
	}
}

// loginWrong tries a wrong password for an account, from a random
// address: the user's and the address's counters count it.
func (s *soaker) loginWrong(ctx context.Context) {
	const action = "login, wrong password"
	u := s.someone()
	s.badLogin(ctx, action, u.name, "INVALID_PASSWORD")
}

// loginUnknown tries a name that has no account.
func (s *soaker) loginUnknown(ctx context.Context) {
	const action = "login, unknown user"
	s.badLogin(ctx, action, "nobody"+strings.ToLower(rand.Text()[:8]), "REGISTER_FOR_A_PASSWORD")
}

func (s *soaker) badLogin(ctx context.Context, action, name, code string) {
	defer s.model.end(s.model.begin(map[string]int{"throttle": 2}, nil))
	ip := attacker()
	a, ok := s.send(ctx, action, http.MethodPost, "auth/users/login",
		map[string]string{"username": name, "password": "wrong " + rand.Text()}, s.from(ip))
	s.model.touched(time.Now(), soakUserWindow, "login:user:"+name)
	s.model.touched(time.Now(), soakIPWindow, "login:ip:"+ip)
	if !ok {
		return
	}
	switch {
	case a.status == http.StatusUnauthorized && a.code == code && a.success == false:
		s.tally.ok(action, a.String())
	case a.status == http.StatusTooManyRequests && a.code == "TOO_MANY_ATTEMPTS":
		s.tally.ok(action, a.String())
	default:
		s.tally.wrong(action, a, "want 401 "+code+" or 429 TOO_MANY_ATTEMPTS")
	}
}

// register registers a new account, which joins the pool.
func (s *soaker) register(ctx context.Context) {
	_, _ = s.newUser(ctx, "register")
}

// registerTaken registers a name that has an account: nothing changes.
func (s *soaker) registerTaken(ctx context.Context) {
	const action = "register, name taken"
	u := s.someone()
	a, ok := s.send(ctx, action, http.MethodPost, "auth/users/register",
		map[string]string{"username": u.name, "password": "another " + rand.Text(), "email": "other@example.com"}, s.from(attacker()))
	if !ok {
		return
	}
	if a.status == http.StatusOK && a.code == "ERROR_LOGIN_WITH_PASSWORD" {
		s.tally.ok(action, a.String())
		return
	}
	s.tally.wrong(action, a, "want 200 ERROR_LOGIN_WITH_PASSWORD")
}

// askCode asks for a code for u and reads it from the mail. ok is false
// when the soak cannot go on with it (throttled, or unexpected: tallied).
func (s *soaker) askCode(ctx context.Context, action string, u *soakUser) (reqid, code string, ok bool) {
	from := time.Now()
	a, sent := s.send(ctx, action, http.MethodPost, "auth/users/requestotp", map[string]string{"username": u.name}, s.from(u.ip))
	at := span{from, time.Now()}
	s.model.touched(at.to, soakUserWindow, "mail:user:"+u.name)
	s.model.touched(at.to, soakIPWindow, "mail:ip:"+u.ip)
	if !sent {
		u.lost = true
		return "", "", false
	}
	switch {
	case a.status == http.StatusOK && a.str("userhash") != "" && a.str("reqid") != "":
	case a.status == http.StatusTooManyRequests && a.code == "TOO_MANY_ATTEMPTS":
		s.tally.ok(action, "code asked: "+a.String())
		return "", "", false
	default:
		u.lost = true
		s.tally.wrong(action, a, "code asked: want 200 with userhash and reqid, or 429")
		return "", "", false
	}
	s.model.codeIssued(u.name, at)
	u.userhash = a.str("userhash")
	code, err := takeMail(s.mailDir, u.email)
	if err != nil {
		u.lost = true
		s.tally.fail(action, "no mail with the code", err.Error())
		return "", "", false
	}
	s.mails.Add(1)
	s.tally.ok(action, "code asked: 200, its mail read")
	return a.str("reqid"), code, true
}

// reset sets a new password with a mailed code, sometimes after a wrong
// guess: every session of the user ends.
func (s *soaker) reset(ctx context.Context) {
	const action = "password reset"
	u := s.claim(func(*soakUser) bool { return true })
	if u == nil {
		s.tally.skip(action, "no account free")
		return
	}
	// Every session of the user and its index end; a code comes and goes;
	// the counters of mails and guesses; one announcement.
	defer s.model.end(s.model.begin(
		map[string]int{"otp": 1, "throttle": 5, "heard": 1},
		map[string]int{"session": s.model.sessionsOf(u.name), "index": 1, "otp": 1}))
	defer s.release(u)
	reqid, code, ok := s.askCode(ctx, action, u)
	if !ok {
		return
	}
	guess := func(otp, pw string) (answer, bool) {
		a, ok := s.send(ctx, action, http.MethodPost, "auth/users/modifypassword",
			map[string]string{"userhash": u.userhash, "OTP": otp, "reqid": reqid, "password": pw}, s.from(u.ip))
		// The address's and the day's counters count every guess; the
		// user's is cleared by a right one.
		s.model.touched(time.Now(), soakIPWindow, "otp:ip:"+u.ip)
		s.model.touched(time.Now(), soakCodesWindow, "otp:day:user:"+u.name)
		return a, ok
	}
	newPassword := "soak " + rand.Text()
	if mathrand.IntN(3) == 0 {
		wrongCode := fmt.Sprintf("%06d", (atoiOr(code)+1)%1_000_000)
		a, ok := guess(wrongCode, newPassword)
		s.model.touched(time.Now(), soakUserWindow, "otp:user:"+u.name)
		if !ok {
			u.lost = true
			return
		}
		if a.status != http.StatusUnauthorized || a.code != "ERROR_INVALID_OTP" {
			u.lost = true
			s.tally.wrong(action, a, "a wrong code: want 401 ERROR_INVALID_OTP")
			return
		}
		s.tally.ok(action, "wrong code: "+a.String())
	}
	old := s.model.usable(u.name, time.Now(), soakMargin)
	a, ok := guess(code, newPassword)
	if !ok {
		u.lost = true
		return
	}
	if a.status != http.StatusOK || a.code != "PASSWORD_RESET_OK" {
		u.lost = true
		s.tally.wrong(action, a, "want 200 PASSWORD_RESET_OK")
		return
	}
	s.tally.ok(action, a.String())
	u.password = newPassword
	s.model.passwordChanged(u.name, time.Now())
	for _, token := range old {
		s.ended(ctx, action, token)
	}
}

// codeAbandoned asks for a code and never uses it: it must end by itself
// after otp_ttl.
func (s *soaker) codeAbandoned(ctx context.Context) {
	const action = "code asked, never used"
	u := s.claim(func(*soakUser) bool { return true })
	if u == nil {
		s.tally.skip(action, "no account free")
		return
	}
	defer s.model.end(s.model.begin(map[string]int{"otp": 1, "throttle": 2}, map[string]int{"otp": 1}))
	defer s.release(u)
	s.askCode(ctx, action, u)
}

// logout ends one session: it must not pass the gate any more.
func (s *soaker) logout(ctx context.Context) {
	const action = "logout"
	var token string
	u := s.claim(func(u *soakUser) bool {
		live := s.model.usable(u.name, time.Now(), soakMargin)
		if len(live) == 0 {
			return false
		}
		token = live[mathrand.IntN(len(live))]
		return true
	})
	if u == nil {
		s.tally.skip(action, "no account with a live session free")
		return
	}
	defer s.model.end(s.model.begin(map[string]int{"heard": 1}, map[string]int{"session": 1, "index": 1}))
	defer s.release(u)
	a, ok := s.send(ctx, action, http.MethodPost, "auth/users/logout", nil, sessionHeader(token, nil))
	if !ok {
		u.lost = true
		return
	}
	if a.status != http.StatusOK || a.code != "LOGOUT_OK" {
		u.lost = true
		s.tally.wrong(action, a, "want 200 LOGOUT_OK")
		return
	}
	s.tally.ok(action, a.String())
	s.model.loggedOut(u.name, token, time.Now())
	s.ended(ctx, action, token)
}

// reloads loads the same config again (forced, or Caddy would skip it as
// unchanged) every o.reload, and checks Caddy's own count of it.
func (s *soaker) reloads(ctx context.Context) {
	const action = "config reload"
	tick := time.NewTicker(s.o.reload)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.rest.enter()
		s.reload(context.WithoutCancel(ctx), action)
		s.rest.leave()
	}
}

func (s *soaker) reload(ctx context.Context, action string) {
	const stamp = "caddy_config_last_reload_success_timestamp_seconds"
	before, err := readMetrics(ctx, s.admin)
	if err != nil {
		s.tally.fail(action, "metrics", err.Error())
		return
	}
	h := http.Header{"Content-Type": {"text/caddyfile"}, "Cache-Control": {"must-revalidate"}}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	a, err := call(rctx, http.DefaultClient, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", s.admin), []byte(s.caddyfile), h)
	if err != nil {
		s.tally.fail(action, "transport error", err.Error())
		return
	}
	if a.status != http.StatusOK {
		s.tally.wrong(action, a, "want 200")
		return
	}
	after, err := readMetrics(ctx, s.admin)
	if err != nil {
		s.tally.fail(action, "metrics", err.Error())
		return
	}
	if after[stamp] <= before[stamp] {
		s.tally.fail(action, "not reloaded", fmt.Sprintf("%s stayed %v", stamp, after[stamp]))
		return
	}
	s.tally.ok(action, "200, reloaded")
}

// atoiOr reads a decimal code, 0 if it is not one.
func atoiOr(code string) int {
	n := 0
	for _, c := range code {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// rest lets the sampler hold new actions back and wait for those under
// way to end, so that it reads the process and the stores at rest: the
// goroutines, files and connections of requests under way would
// otherwise swing with the machine's speed and hide a slow leak.
type rest struct {
	mu       sync.Mutex
	cond     *sync.Cond
	held     bool
	underWay int
}

func newRest() *rest {
	r := &rest{}
	r.cond = sync.NewCond(&r.mu)
	return r
}

// enter waits while the traffic is held back, then counts an action.
func (r *rest) enter() {
	r.mu.Lock()
	for r.held {
		r.cond.Wait()
	}
	r.underWay++
	r.mu.Unlock()
}

func (r *rest) leave() {
	r.mu.Lock()
	r.underWay--
	r.cond.Broadcast()
	r.mu.Unlock()
}

// hold holds new actions back and waits up to limit for those under way
// to end; it returns how many are still under way (0: at rest).
func (r *rest) hold(limit time.Duration) int {
	timer := time.AfterFunc(limit, func() {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(limit)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held = true
	for r.underWay > 0 && time.Now().Before(deadline) {
		r.cond.Wait()
	}
	return r.underWay
}

// release lets the traffic go on.
func (r *rest) release() {
	r.mu.Lock()
	r.held = false
	r.cond.Broadcast()
	r.mu.Unlock()
}

// tally counts the answers by action and kind, expected or not.
type tally struct {
	mu       sync.Mutex
	counts   map[outcome]int
	examples []string // the first unexpected answers, described
	wrongN   int
	okN      int
}

type outcome struct {
	action, answer string
	kind           outcomeKind
}

type outcomeKind int

const (
	expected outcomeKind = iota
	unexpected
	skipped // not sent: the soak had nothing fit to send it with
)

func newTally() *tally { return &tally{counts: map[outcome]int{}} }

func (t *tally) add(o outcome, detail string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.counts[o]++
	switch o.kind {
	case expected:
		t.okN++
	case unexpected:
		t.wrongN++
		if len(t.examples) < 30 {
			t.examples = append(t.examples, fmt.Sprintf("%s %s: %s: %s", time.Now().UTC().Format("15:04:05.000"), o.action, o.answer, detail))
		}
	}
}

func (t *tally) ok(action, answer string) { t.add(outcome{action, answer, expected}, "") }
func (t *tally) skip(action, why string)  { t.add(outcome{action, why, skipped}, "") }
func (t *tally) fail(action, answer, detail string) {
	t.add(outcome{action, answer, unexpected}, detail)
}

// wrong tallies an answer that is not what the action expects, by its
// status and code; the body goes to the examples.
func (t *tally) wrong(action string, a answer, want string) {
	key := fmt.Sprintf("%d %s", a.status, a.code)
	if a.code == "" {
		key = fmt.Sprintf("%d, not as expected", a.status)
	}
	t.fail(action, key, fmt.Sprintf("%s; %s", a, want))
}

// totals returns the expected and unexpected answers so far.
func (t *tally) totals() (ok, wrong int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.okN, t.wrongN
}

// tallyRow is one line of the answers table.
type tallyRow struct {
	outcome
	n int
}

// rows returns the counts sorted by action, kind and answer.
func (t *tally) rows() []tallyRow {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []tallyRow
	for o, n := range t.counts {
		out = append(out, tallyRow{o, n})
	}
	slices.SortFunc(out, func(a, b tallyRow) int {
		if c := strings.Compare(a.action, b.action); c != 0 {
			return c
		}
		if a.kind != b.kind {
			return int(a.kind) - int(b.kind)
		}
		return strings.Compare(a.answer, b.answer)
	})
	return out
}
