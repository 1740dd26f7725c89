// Package caddymodule is authgate's Caddy plugin: the "authgate" app holds
// what all sites share (the stores and the account settings), and the
// "http.handlers.authgate" handler puts the gate and the account endpoints
// in front of a site. The work itself lives in the sub-packages; the files
// here wire them into Caddy.
package caddymodule

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/auth"
	"github.com/authgate/authgate/caddymodule/device"
	"github.com/authgate/authgate/caddymodule/factors"
	"github.com/authgate/authgate/caddymodule/mail"
	"github.com/authgate/authgate/caddymodule/metrics"
	"github.com/authgate/authgate/caddymodule/onetime"
	"github.com/authgate/authgate/caddymodule/passkeys"
	"github.com/authgate/authgate/caddymodule/password"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/store"
	"github.com/authgate/authgate/caddymodule/throttle"
)

func init() {
	caddy.RegisterModule(new(App))
}

// Defaults of the app's settings.
const (
	DefaultSchema      = "authgate"
	DefaultRedisPrefix = "authgate"
	DefaultSessionTTL  = 24 * time.Hour
	DefaultMaxSessions = 10
	DefaultCacheSize   = 100000
	DefaultCookieName  = "authgate_session"
	DefaultOTPTTL      = 10 * time.Minute
	DefaultMailFrom    = "authgate@localhost"
	DefaultResetURL    = "{prefix}/reset?token={token}"

	DefaultPostgresMaxConns     = 16
	DefaultPostgresConnLifetime = 30 * time.Minute
	// maxPostgresConns is far above what one instance can use: a value
	// beyond it is a typo, not a pool size.
	maxPostgresConns = 1000
	DefaultMFA       = auth.MFAOptional
)

// App is the "authgate" app: the account and session stores and the
// settings every site's authgate handler shares. In a Caddyfile it is the
// global option `authgate { … }`.
type App struct {
	// PostgreSQL connection URL of the accounts database (required).
	Postgres string `json:"postgres,omitempty"`
	// PostgreSQL schema of the tables, created at start. Default: authgate.
	Schema string `json:"schema,omitempty"`
	// Connections to PostgreSQL this instance holds at most; further
	// queries wait for a free one. Every instance holds its own, so the
	// instances together must stay under the server's max_connections
	// (less its reserved ones). Default: 16.
	PostgresMaxConns int `json:"postgres_max_conns,omitempty"`
	// Connections kept open between queries. Below postgres_max_conns,
	// each burst of requests opens connections (a server process each)
	// only to close them again. Default: postgres_max_conns.
	PostgresIdleConns int `json:"postgres_idle_conns,omitempty"`
	// How long a PostgreSQL connection is used before it is replaced, so
	// that the pool follows a failover or a pooler behind the same address.
	// Default: 30m.
	PostgresConnLifetime caddy.Duration `json:"postgres_conn_lifetime,omitempty"`

	// Redis URL (redis:// or rediss://) of the session store. Exactly one of
	// redis, redis_sentinel and redis_cluster is required.
	Redis string `json:"redis,omitempty"`
	// Redis Sentinel group to use instead of a single server.
	RedisSentinel *Sentinel `json:"redis_sentinel,omitempty"`
	// Redis Cluster seed addresses to use instead of a single server.
	RedisCluster []string `json:"redis_cluster,omitempty"`
	// Prefix of every Redis key. Default: authgate.
	RedisPrefix string `json:"redis_prefix,omitempty"`

	// Development mailer: every mail is written to a file in this folder.
	MailDir string `json:"mail_dir,omitempty"`
	// Real mailer: smtp://user:pass@host:587 (STARTTLS) or smtps://… (TLS).
	SMTP string `json:"smtp,omitempty"`
	// Sender address of the mails. Default: authgate@localhost.
	MailFrom string `json:"mail_from,omitempty"`

	// "open" (default) lets anyone register; "closed" only the CLI.
	Registration string `json:"registration,omitempty"`
	// Absolute lifetime of a session. Default: 24h.
	SessionTTL caddy.Duration `json:"session_ttl,omitempty"`
	// Inactivity timeout of a session; 0 (default) turns it off.
	SessionIdle caddy.Duration `json:"session_idle,omitempty"`
	// Sessions per user; the oldest ends when one more starts. Default: 10.
	MaxSessions int `json:"max_sessions,omitempty"`
	// Sessions the gate keeps in memory after validating them, so that most
	// requests need no Redis round trip; 0 turns the cache off. Entries are
	// dropped at once when a session ends on any instance (Redis pub/sub),
	// and all of them whenever that subscription is down. Default: 100000.
	SessionCache *int `json:"session_cache,omitempty"`
	// Name of the session cookie. Default: authgate_session.
	CookieName string `json:"cookie_name,omitempty"`
	// Domain of the session cookie, to share one login across subdomains.
	CookieDomain string `json:"cookie_domain,omitempty"`
	// Lifetime of an OTP or reset token. Default: 10m.
	OTPTTL caddy.Duration `json:"otp_ttl,omitempty"`
	// Link mailed by the REST dialect. {prefix} and {token} are filled in.
	// An absolute http(s) URL is mailed as is; a path is put after the
	// site's configured origin (the handler's origin), never after a host
	// taken from the request. Default: {prefix}/reset?token={token}.
	ResetURL string `json:"reset_url,omitempty"`
	// Second factors: "off" (none is offered or asked for; enrolled ones
	// are kept but not used), "optional" (default: users may add one, and
	// a user who has one must give it at every login) or "required" (every
	// user must have one: the pages send a user without one to enrol
	// before anything else, and API logins of such a user are refused).
	MFA string `json:"mfa,omitempty"`

	// Cost of new password hashes. Default: OWASP's floor (19 MiB, t=2, p=1).
	Argon2 *Argon2 `json:"argon2,omitempty"`
	// Password hashes under way at once for this config, each holding its
	// argon2 memory; more wait. Default and maximum: GOMAXPROCS (the CPU
	// count, or the container's CPU limit). The process computes at most
	// GOMAXPROCS hashes at once, one less while the gate serves requests.
	HashConcurrency int `json:"hash_concurrency,omitempty"`
	// The zxcvbn score (0 to 4) a new password needs: lower ones are common
	// or easily guessed; 0 refuses none. Default: 2.
	PasswordMinScore *int `json:"password_min_score,omitempty"`
	// Failed attempts allowed per username. Default: 10 in 15m.
	ThrottleUser *Limit `json:"throttle_user,omitempty"`
	// Failed attempts allowed per client IP. Default: 100 in 15m.
	ThrottleIP *Limit `json:"throttle_ip,omitempty"`
	// Wrong codes allowed per user (OTPs) or per client IP (reset tokens),
	// on top of the limits above. Default: 20 in 24h.
	ThrottleCodes *Limit `json:"throttle_codes,omitempty"`

	stores   stores
	hasher   *password.Hasher // its workers run from newService to teardown
	runtime  atomic.Pointer[auth.Service]
	passkeys atomic.Pointer[passkeys.Service]
	// The account requests this config is serving (they may hash and use
	// the stores), and whether Cleanup has come. Caddy's reload does not
	// wait for the old config's requests before its Cleanup: a login still
	// waiting for a hashing slot then failed with "password hasher closed"
	// (make soak found it). The hasher stops and the stores are released
	// once both are over (teardown).
	requestsMu   sync.Mutex
	requests     int
	cleanedUp    bool
	teardownOnce sync.Once
	started      chan struct{} // closed by Start
	stopWatch    context.CancelFunc
	watching     chan struct{} // closed when the cache's watcher has ended
	metrics      *metrics.Metrics
	events       *caddyevents.App
	ctx          caddy.Context
	logger       *zap.Logger
}

// Sentinel names a Redis Sentinel group.
type Sentinel struct {
	// Name of the master as the sentinels know it.
	Master string `json:"master"`
	// Addresses (host:port) of the sentinels.
	Addrs []string `json:"addrs"`
}

// Argon2 is the cost of argon2id.
type Argon2 struct {
	// Memory in KiB (at least 19456).
	MemoryKiB uint32 `json:"memory_kib"`
	// Passes over the memory (at least 2).
	Iterations uint32 `json:"iterations"`
	// Lanes (at least 1).
	Parallelism uint8 `json:"parallelism"`
}

// Limit is a number of failures within a window.
type Limit struct {
	Max    int            `json:"max"`
	Window caddy.Duration `json:"window"`
}

func (l *Limit) limit() throttle.Limit {
	return throttle.Limit{Max: l.Max, Window: time.Duration(l.Window)}
}

type stores struct {
	db       *sql.DB
	rdb      redis.UniversalClient
	accounts *accounts.Store
	sessions *sessions.Store
	redisCfg store.RedisConfig
	release  []func()
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "authgate",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision resolves placeholders, applies defaults and checks the settings,
// then prepares the store connections without dialing them: `caddy validate`
// needs no database.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	a.started = make(chan struct{})
	if err := a.prepare(); err != nil {
		return err
	}
	var err error
	if a.metrics, err = metrics.New(ctx.GetMetricsRegistry(), password.HeldMemory); err != nil {
		return err
	}
	eventsApp, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("loading events app: %w", err)
	}
	a.events = eventsApp.(*caddyevents.App)
	return nil
}

// prepare checks the settings and takes the store connections from the
// shared pool, without dialing.
func (a *App) prepare() error {
	a.resolvePlaceholders()
	a.setDefaults()
	if err := a.check(); err != nil {
		return err
	}
	db, release, err := store.Postgres(a.Postgres, store.PostgresPool{
		MaxConns: a.PostgresMaxConns, IdleConns: a.PostgresIdleConns,
		Lifetime: time.Duration(a.PostgresConnLifetime),
	})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	a.stores.db = db
	a.stores.release = append(a.stores.release, release)
	a.stores.accounts, err = accounts.New(db, a.Schema)
	if err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	a.stores.redisCfg = a.redisConfig()
	rdb, release, err := store.Redis(a.stores.redisCfg)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	a.stores.rdb = rdb
	a.stores.release = append(a.stores.release, release)
	a.stores.sessions = sessions.New(rdb, sessions.Config{
		Prefix: a.RedisPrefix, TTL: time.Duration(a.SessionTTL),
		Idle: time.Duration(a.SessionIdle), MaxPerUser: a.MaxSessions,
		CacheSize: *a.SessionCache,
	})
	return nil
}

// Standalone opens the account service outside a running Caddy, for the
// CLI. Call the returned function when done.
func (a *App) Standalone(ctx context.Context, logger *zap.Logger) (*auth.Service, func(), error) {
	a.logger = logger
	if err := a.prepare(); err != nil {
		return nil, nil, err
	}
	svc, err := a.newService(ctx)
	if err != nil {
		_ = a.Cleanup()
		return nil, nil, err
	}
	return svc, func() { _ = a.Cleanup() }, nil
}

// Start connects to the stores, migrates the schema and makes the account
// service live. A store that cannot be reached fails the start, naming it
// (without its password), rather than serving a gate that cannot work.
func (a *App) Start() error {
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	defer cancel()
	svc, err := a.newService(ctx)
	if err != nil {
		return fmt.Errorf("authgate: %w", err)
	}
	a.runtime.Store(svc)
	close(a.started)
	// On the config's context: should Stop never come (an app after this
	// one failing to start), unloading the config still ends the watcher.
	watchCtx, stop := context.WithCancel(a.ctx)
	a.stopWatch, a.watching = stop, make(chan struct{})
	go func() {
		defer close(a.watching)
		a.stores.sessions.Watch(watchCtx, a.logger)
	}()
	a.logger.Info("authgate started",
		zap.String("postgres", store.Redact(a.Postgres)), zap.String("schema", a.Schema),
		zap.Stringer("redis", a.stores.redisCfg), zap.String("registration", a.Registration))
	return nil
}

// newService checks the stores and builds the account service over them.
func (a *App) newService(ctx context.Context) (*auth.Service, error) {
	rdb := a.stores.rdb
	if err := store.Ping(ctx, a.stores.db, a.Postgres, rdb, a.stores.redisCfg); err != nil {
		return nil, err
	}
	if err := a.stores.accounts.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("postgres %s: %w", store.Redact(a.Postgres), err)
	}
	secret, err := a.stores.accounts.Secret(ctx, "hmac", 32)
	if err != nil {
		return nil, err
	}
	params := password.DefaultParams()
	if a.Argon2 != nil {
		params = password.Params{Memory: a.Argon2.MemoryKiB, Time: a.Argon2.Iterations, Threads: a.Argon2.Parallelism}
	}
	hasher, err := password.NewHasher(params, a.HashConcurrency)
	if err != nil {
		return nil, err
	}
	hasher.Observe = a.metrics.HashTime
	a.hasher = hasher // Cleanup stops it, also when what follows fails
	mailer, err := a.mailer()
	if err != nil {
		return nil, err
	}
	if err := a.reportNames(ctx); err != nil {
		return nil, err
	}
	secondFactors, err := a.factors(ctx)
	if err != nil {
		return nil, err
	}
	credentials, err := passkeys.NewStore(a.stores.db, a.Schema)
	if err != nil {
		return nil, err
	}
	secondFactors.Add(passkeys.Provider{Store: credentials})
	svc := auth.New(auth.Config{
		Accounts: a.stores.accounts,
		Sessions: a.stores.sessions,
		Codes:    onetime.New(rdb, a.RedisPrefix, secret, time.Duration(a.OTPTTL)),
		Throttle: throttle.New(rdb, a.RedisPrefix, secret, throttle.Limits{
			User:  a.ThrottleUser.limit(),
			IP:    a.ThrottleIP.limit(),
			Codes: a.ThrottleCodes.limit(),
		}),
		Devices:      device.New(secret),
		Hasher:       hasher,
		Mailer:       mailer,
		MailFrom:     a.MailFrom,
		Registration: a.Registration == "open",
		Factors:      secondFactors,
		Tickets:      factors.NewTickets(rdb, a.RedisPrefix, factors.TicketTTL),
		MFA:          a.MFA,
		Metrics:      a.metrics,
		Logger:       a.logger,
		Emit:         a.emit,
		Now:          testClock,

		PasswordMinScore: *a.PasswordMinScore,
	})
	a.passkeys.Store(passkeys.New(passkeys.Config{
		Credentials: credentials,
		Ceremonies:  passkeys.NewCeremonies(rdb, a.RedisPrefix, passkeys.CeremonyTTL),
		Accounts:    a.stores.accounts,
		Metrics:     a.metrics,
		Enrolled:    svc.FactorEnrolled,
		Removed:     svc.FactorRemoved,
		Logger:      a.logger,
	}))
	return svc, nil
}

// testClock, when a test sets it, is the account service's clock (the TOTP
// time steps); nil is the real one.
var testClock func() time.Time

// factors opens the store of second factors, with keys of their own (kept
// like the others, in the secrets table): one seals the TOTP secrets, one
// keys the hashes of the recovery codes. Every kind of second factor joins
// the registry here.
func (a *App) factors(ctx context.Context) (*factors.Registry, error) {
	totpKey, err := a.stores.accounts.Secret(ctx, "totp", factors.KeySize)
	if err != nil {
		return nil, err
	}
	recoveryKey, err := a.stores.accounts.Secret(ctx, "recovery", factors.KeySize)
	if err != nil {
		return nil, err
	}
	st, err := factors.NewStore(a.stores.db, a.Schema, totpKey, recoveryKey)
	if err != nil {
		return nil, err
	}
	return factors.NewRegistry(st), nil
}

// reportNames tells the operator, at every start, of the accounts without a
// canonical username (see accounts.Unreconciled), and ends any session of
// those whose names are refused: such a name must not reach the upstream.
func (a *App) reportNames(ctx context.Context) error {
	conflicts, refused, err := a.stores.accounts.Unreconciled(ctx)
	if err != nil {
		return fmt.Errorf("checking usernames: %w", err)
	}
	taken := 0
	for _, c := range conflicts {
		taken += len(c.IDs)
		a.logger.Warn("username conflict: an older account holds the canonical name; these accounts log in by their exact names until renamed",
			zap.String("canonical", c.Canonical), zap.Int64("holder_id", c.HolderID), zap.Int64s("user_ids", c.IDs))
	}
	for _, r := range refused {
		a.logger.Warn("username refused: the account cannot log in until renamed",
			zap.Int64("user_id", r.ID), zap.String("username", r.Username), zap.String("reason", r.Reason))
		if live, err := a.stores.sessions.List(ctx, r.Userhash); err != nil || len(live) > 0 {
			if _, err := a.stores.sessions.RevokeUser(ctx, r.Userhash, ""); err != nil {
				a.logger.Error("ending the sessions of an account whose username is refused", zap.Int64("user_id", r.ID), zap.Error(err))
			}
		}
	}
	a.metrics.UsernameConflicts("taken", taken)
	a.metrics.UsernameConflicts("refused", len(refused))
	return nil
}

// emit sends an audit event through Caddy's events app, when running in Caddy.
func (a *App) emit(name string, data map[string]any) {
	if a.events != nil {
		a.events.Emit(a.ctx, name, data)
	}
}

func (a *App) mailer() (mail.Mailer, error) {
	if a.SMTP != "" {
		m, err := mail.NewSMTPMailer(a.SMTP)
		if err != nil {
			return nil, fmt.Errorf("smtp: %w", err)
		}
		return m, nil
	}
	if a.MailDir != "" {
		m, err := mail.NewDirMailer(a.MailDir)
		if err != nil {
			return nil, fmt.Errorf("mail_dir: %w", err)
		}
		return m, nil
	}
	return noMailer{}, nil
}

// noMailer fails every mail: with no mailer configured, password recovery
// answers that sending failed instead of pretending.
type noMailer struct{}

func (noMailer) Send(context.Context, mail.Message) error {
	return errors.New("no mailer configured (set mail_dir or smtp)")
}

// watcherStopTimeout bounds how long Stop waits for the session cache's
// watcher. It ends within a Redis I/O timeout; a bug that kept it longer
// must not hold up a reload for ever.
const watcherStopTimeout = 10 * time.Second

// Stop ends the session cache's subscription and waits for its goroutines to
// end, so that a reload leaves none behind; requests still in flight finish
// with the service, and the connections belong to the pool until Cleanup.
func (a *App) Stop() error {
	if a.stopWatch == nil {
		return nil
	}
	a.stopWatch()
	select {
	case <-a.watching:
	case <-time.After(watcherStopTimeout):
		return fmt.Errorf("authgate: the session cache's watcher did not stop within %s", watcherStopTimeout)
	}
	return nil
}

// Cleanup stops the password hashing workers and releases this config's
// hold on the shared connections (they close when no loaded config uses
// them any more), at once, or once the last account request this config
// is serving has been answered.
func (a *App) Cleanup() error {
	a.requestsMu.Lock()
	a.cleanedUp = true
	idle := a.requests == 0
	a.requestsMu.Unlock()
	if idle {
		a.teardown()
	}
	return nil
}

// serving notes an account request of this config under way; the function
// it returns notes its end.
func (a *App) serving() (done func()) {
	a.requestsMu.Lock()
	a.requests++
	a.requestsMu.Unlock()
	return func() {
		a.requestsMu.Lock()
		a.requests--
		last := a.cleanedUp && a.requests == 0
		a.requestsMu.Unlock()
		if last {
			a.teardown()
		}
	}
}

// teardown stops the hashing workers, waiting for a hash under way, and
// releases the stores.
func (a *App) teardown() {
	a.teardownOnce.Do(func() {
		if a.hasher != nil {
			_ = a.hasher.Close()
		}
		for _, release := range a.stores.release {
			release()
		}
		a.stores.release = nil
	})
}

// service returns the live account service. Caddy starts its apps in no
// set order, so the HTTP server may take requests a moment before this app
// has connected its stores: those wait for it (briefly) rather than fail.
// It returns nil when the app has not started in time.
func (a *App) service(ctx context.Context) *auth.Service {
	if svc := a.runtime.Load(); svc != nil {
		return svc
	}
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	select {
	case <-a.started:
	case <-ctx.Done():
	case <-timer.C:
	}
	return a.runtime.Load()
}

func (a *App) redisConfig() store.RedisConfig {
	c := store.RedisConfig{URL: a.Redis, ClusterAddrs: a.RedisCluster}
	if a.RedisSentinel != nil {
		c.SentinelMaster, c.SentinelAddrs = a.RedisSentinel.Master, a.RedisSentinel.Addrs
	}
	return c
}

// resolvePlaceholders fills in {env.*} and other global placeholders in the
// string settings, so that secrets can stay out of the config.
func (a *App) resolvePlaceholders() {
	repl := caddy.NewReplacer()
	for _, s := range []*string{&a.Postgres, &a.Schema, &a.Redis, &a.RedisPrefix, &a.MailDir,
		&a.SMTP, &a.MailFrom, &a.Registration, &a.CookieName, &a.CookieDomain, &a.MFA} {
		*s = repl.ReplaceKnown(*s, "")
	}
	for i := range a.RedisCluster {
		a.RedisCluster[i] = repl.ReplaceKnown(a.RedisCluster[i], "")
	}
	if a.RedisSentinel != nil {
		a.RedisSentinel.Master = repl.ReplaceKnown(a.RedisSentinel.Master, "")
		for i := range a.RedisSentinel.Addrs {
			a.RedisSentinel.Addrs[i] = repl.ReplaceKnown(a.RedisSentinel.Addrs[i], "")
		}
	}
}

func (a *App) setDefaults() {
	setDefault(&a.Schema, DefaultSchema)
	setDefault(&a.RedisPrefix, DefaultRedisPrefix)
	setDefault(&a.MailFrom, DefaultMailFrom)
	setDefault(&a.Registration, "open")
	setDefault(&a.CookieName, DefaultCookieName)
	setDefault(&a.ResetURL, DefaultResetURL)
	setDefault(&a.MFA, DefaultMFA)
	if a.SessionTTL == 0 {
		a.SessionTTL = caddy.Duration(DefaultSessionTTL)
	}
	if a.OTPTTL == 0 {
		a.OTPTTL = caddy.Duration(DefaultOTPTTL)
	}
	if a.PostgresMaxConns == 0 {
		a.PostgresMaxConns = DefaultPostgresMaxConns
	}
	if a.PostgresIdleConns == 0 {
		a.PostgresIdleConns = a.PostgresMaxConns
	}
	if a.PostgresConnLifetime == 0 {
		a.PostgresConnLifetime = caddy.Duration(DefaultPostgresConnLifetime)
	}
	if a.MaxSessions == 0 {
		a.MaxSessions = DefaultMaxSessions
	}
	if a.SessionCache == nil {
		size := DefaultCacheSize
		a.SessionCache = &size
	}
	if a.PasswordMinScore == nil {
		score := password.DefaultMinScore
		a.PasswordMinScore = &score
	}
	if a.ThrottleUser == nil {
		a.ThrottleUser = &Limit{Max: 10, Window: caddy.Duration(15 * time.Minute)}
	}
	if a.ThrottleIP == nil {
		a.ThrottleIP = &Limit{Max: 100, Window: caddy.Duration(15 * time.Minute)}
	}
	if a.ThrottleCodes == nil {
		a.ThrottleCodes = &Limit{Max: 20, Window: caddy.Duration(24 * time.Hour)}
	}
}

func setDefault(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

// check validates the settings without touching the network. Each error
// names the directive, so that a config mistake is found at load time.
// Values still holding a placeholder (at adapt time) are not judged.
func (a *App) check() error {
	fail := func(directive, format string, args ...any) error {
		return fmt.Errorf("authgate: %s: %s", directive, fmt.Sprintf(format, args...))
	}
	unresolved := func(s string) bool { return strings.Contains(s, "{") }

	switch {
	case a.Postgres == "":
		return fail("postgres", "required: the PostgreSQL URL of the accounts database")
	case !unresolved(a.Postgres):
		u, err := url.Parse(a.Postgres)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			return fail("postgres", "not a postgres:// URL: %s", store.Redact(a.Postgres))
		}
	}
	if !accounts.ValidSchema(a.Schema) && !unresolved(a.Schema) {
		return fail("schema", "%q is not a plain lower-case identifier", a.Schema)
	}
	if a.PostgresMaxConns < 1 || a.PostgresMaxConns > maxPostgresConns {
		return fail("postgres_max_conns", "%d: must be between 1 and %d", a.PostgresMaxConns, maxPostgresConns)
	}
	if a.PostgresIdleConns < 1 || a.PostgresIdleConns > a.PostgresMaxConns {
		return fail("postgres_idle_conns", "%d: must be between 1 and postgres_max_conns (%d)", a.PostgresIdleConns, a.PostgresMaxConns)
	}
	if a.PostgresConnLifetime < caddy.Duration(time.Minute) {
		return fail("postgres_conn_lifetime", "%s: must be at least 1m", time.Duration(a.PostgresConnLifetime))
	}

	forms := 0
	for _, set := range []bool{a.Redis != "", a.RedisSentinel != nil, len(a.RedisCluster) > 0} {
		if set {
			forms++
		}
	}
	switch {
	case forms == 0:
		return fail("redis", "required: a redis:// URL, or redis_sentinel or redis_cluster")
	case forms > 1:
		return fail("redis", "use only one of redis, redis_sentinel and redis_cluster")
	case a.Redis != "" && !unresolved(a.Redis):
		u, err := url.Parse(a.Redis)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			return fail("redis", "not a redis:// or rediss:// URL: %s", store.Redact(a.Redis))
		}
		if _, err := a.redisConfig().Options(); err != nil {
			return fail("redis", "%v", err)
		}
	case a.RedisSentinel != nil:
		if a.RedisSentinel.Master == "" || len(a.RedisSentinel.Addrs) == 0 {
			return fail("redis_sentinel", "needs a master name and at least one sentinel address")
		}
		if _, err := a.redisConfig().Options(); err != nil && !unresolved(strings.Join(a.RedisSentinel.Addrs, "")) {
			return fail("redis_sentinel", "%v", err)
		}
	case len(a.RedisCluster) > 0:
		if _, err := a.redisConfig().Options(); err != nil && !unresolved(strings.Join(a.RedisCluster, "")) {
			return fail("redis_cluster", "%v", err)
		}
	}
	if strings.ContainsAny(a.RedisPrefix, "{} \t\r\n") {
		return fail("redis_prefix", "%q must not contain braces or spaces", a.RedisPrefix)
	}

	if a.MailDir != "" && a.SMTP != "" {
		return fail("smtp", "use either mail_dir or smtp, not both")
	}
	if a.SMTP != "" && !unresolved(a.SMTP) {
		if _, err := mail.NewSMTPMailer(a.SMTP); err != nil {
			return fail("smtp", "%v", err)
		}
	}
	if !unresolved(a.MailFrom) {
		if _, err := (mail.Message{From: a.MailFrom, To: a.MailFrom}).Bytes(time.Now()); err != nil {
			return fail("mail_from", "%q is not a mail address", a.MailFrom)
		}
	}
	if a.Registration != "open" && a.Registration != "closed" && !unresolved(a.Registration) {
		return fail("registration", "%q: must be open or closed", a.Registration)
	}
	switch a.MFA {
	case auth.MFAOff, auth.MFAOptional, auth.MFARequired:
	default:
		if !unresolved(a.MFA) {
			return fail("mfa", "%q: must be off, optional or required", a.MFA)
		}
	}
	if a.SessionTTL < caddy.Duration(time.Minute) {
		return fail("session_ttl", "%s: must be at least 1m", time.Duration(a.SessionTTL))
	}
	if a.SessionIdle < 0 || (a.SessionIdle > 0 && a.SessionIdle < caddy.Duration(time.Minute)) {
		return fail("session_idle", "%s: must be 0 (off) or at least 1m", time.Duration(a.SessionIdle))
	}
	if a.MaxSessions < 1 {
		return fail("max_sessions", "%d: must be at least 1", a.MaxSessions)
	}
	if !validCookieName(a.CookieName) {
		return fail("cookie_name", "%q is not a valid cookie name", a.CookieName)
	}
	if strings.ContainsAny(a.CookieDomain, " ;,\t\r\n") {
		return fail("cookie_domain", "%q is not a domain", a.CookieDomain)
	}
	if a.OTPTTL < caddy.Duration(time.Minute) || a.OTPTTL > caddy.Duration(24*time.Hour) {
		return fail("otp_ttl", "%s: must be between 1m and 24h", time.Duration(a.OTPTTL))
	}
	if !strings.Contains(a.ResetURL, "{token}") {
		return fail("reset_url", "%q must contain {token}", a.ResetURL)
	}
	if _, err := resetURLIsPath(a.ResetURL); err != nil {
		return fail("reset_url", "%v", err)
	}
	if a.Argon2 != nil {
		p := password.Params{Memory: a.Argon2.MemoryKiB, Time: a.Argon2.Iterations, Threads: a.Argon2.Parallelism}
		if err := p.Validate(); err != nil {
			return fail("argon2", "%v", err)
		}
	}
	if *a.SessionCache < 0 {
		return fail("session_cache", "%d: must be a size, or 0 (off)", *a.SessionCache)
	}
	if *a.PasswordMinScore < 0 || *a.PasswordMinScore > 4 {
		return fail("password_min_score", "%d: must be 0 (no check) to 4", *a.PasswordMinScore)
	}
	if a.HashConcurrency < 0 {
		return fail("hash_concurrency", "%d: must not be negative", a.HashConcurrency)
	}
	for name, l := range map[string]*Limit{"throttle_user": a.ThrottleUser, "throttle_ip": a.ThrottleIP, "throttle_codes": a.ThrottleCodes} {
		if l.Max < 1 || l.Window < caddy.Duration(time.Second) {
			return fail(name, "needs at least 1 attempt and a window of at least 1s")
		}
	}
	return nil
}

// resetURLIsPath tells whether a reset_url template is a path on the site
// (to be put after the site's origin) rather than an absolute URL. Anything
// else, such as "//host/…" (which browsers read as another host) or a
// relative path, is an error.
func resetURLIsPath(template string) (bool, error) {
	filled := strings.NewReplacer("{prefix}", "/auth", "{token}", "token").Replace(template)
	if strings.HasPrefix(filled, "/") && !strings.HasPrefix(filled, "//") && !strings.HasPrefix(filled, "/\\") {
		return true, nil
	}
	u, err := url.Parse(filled)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return false, fmt.Errorf("%q must be an absolute http(s) URL or a path starting with /", template)
	}
	return false, nil
}

func validCookieName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, c) {
			return false
		}
	}
	return true
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
