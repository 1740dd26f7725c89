// Package store opens the PostgreSQL and Redis connections that every site
// of a Caddy instance shares, keeps them across config reloads, and tells a
// store that is down from a store that answered with an error.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/lib/pq"
	"github.com/redis/go-redis/v9"
)

// ErrUnavailable marks an error caused by a store that could not be reached
// or did not answer in time. Callers answer 503 for it and 500 for anything
// else, so that an outage is never mistaken for a bug (or a pass).
var ErrUnavailable = errors.New("store unavailable")

// Timeouts of one store operation. They are short on purpose: the gate must
// fail closed quickly rather than pile up requests behind a hung server.
const (
	DialTimeout = 2 * time.Second
	IOTimeout   = 2 * time.Second
)

// pool holds the live connections, keyed by their configuration, so that a
// config reload that keeps the same URLs keeps the same connections: the new
// config takes a reference before the old config drops its own.
var pool = caddy.NewUsagePool()

type pooledDB struct{ *sql.DB }

func (p pooledDB) Destruct() error { return p.DB.Close() }

type pooledRedis struct{ redis.UniversalClient }

func (p pooledRedis) Destruct() error { return p.UniversalClient.Close() }

// PostgresPool sizes the PostgreSQL connection pool of one instance.
type PostgresPool struct {
	// MaxConns bounds the connections open at once; more queries wait.
	MaxConns int
	// IdleConns is how many stay open between queries. Below MaxConns,
	// every burst above it opens connections (a server process each, a
	// TLS handshake over a network) only to close them again.
	IdleConns int
	// Lifetime, when set, closes a connection this long after it opened,
	// so that the pool moves to a new primary or pooler behind the same
	// address and no server process grows for ever.
	Lifetime time.Duration
}

// Postgres returns the shared connection pool for dsn and a release function
// to call at cleanup. It does not connect: use Ping to check reachability.
func Postgres(dsn string, size PostgresPool) (*sql.DB, func(), error) {
	// The sizes are part of the key: a reload that changes them gets a pool
	// of the new size, and the old one closes with the old config.
	key := fmt.Sprintf("postgres|%d|%d|%d|%s", size.MaxConns, size.IdleConns, size.Lifetime, dsn)
	val, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) {
		connector, err := pq.NewConnector(dsn)
		if err != nil {
			return nil, err
		}
		db := sql.OpenDB(connector)
		db.SetMaxOpenConns(size.MaxConns)
		db.SetMaxIdleConns(size.IdleConns)
		db.SetConnMaxIdleTime(5 * time.Minute)
		db.SetConnMaxLifetime(size.Lifetime)
		return pooledDB{db}, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("postgres %s: %w", Redact(dsn), err)
	}
	return val.(pooledDB).DB, func() { _, _ = pool.Delete(key) }, nil
}

// RedisConfig names one Redis deployment: a single server by URL, a Sentinel
// group, or a Cluster. Exactly one of the three forms is set.
type RedisConfig struct {
	URL            string
	SentinelMaster string
	SentinelAddrs  []string
	ClusterAddrs   []string
}

func (c RedisConfig) key() string {
	return strings.Join([]string{"redis", c.URL, c.SentinelMaster,
		strings.Join(c.SentinelAddrs, ","), strings.Join(c.ClusterAddrs, ",")}, "|")
}

// String names the deployment without any password, for logs and errors.
func (c RedisConfig) String() string {
	switch {
	case c.URL != "":
		return Redact(c.URL)
	case c.SentinelMaster != "":
		return "sentinel " + c.SentinelMaster + " " + redactAll(c.SentinelAddrs)
	default:
		return "cluster " + redactAll(c.ClusterAddrs)
	}
}

// Options turns the configuration into go-redis options. It is separate from
// Redis so that a config mistake is reported at load time without dialing.
func (c RedisConfig) Options() (*redis.UniversalOptions, error) {
	opts := &redis.UniversalOptions{
		DialTimeout:           DialTimeout,
		ReadTimeout:           IOTimeout,
		WriteTimeout:          IOTimeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            1,
	}
	switch {
	case c.URL != "":
		o, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, fmt.Errorf("redis URL %s: %w", Redact(c.URL), err)
		}
		opts.Addrs = []string{o.Addr}
		opts.Username, opts.Password, opts.DB, opts.TLSConfig = o.Username, o.Password, o.DB, o.TLSConfig
	case c.SentinelMaster != "":
		if err := addrsInto(opts, c.SentinelAddrs); err != nil {
			return nil, err
		}
		opts.MasterName = c.SentinelMaster
		opts.SentinelUsername, opts.SentinelPassword = opts.Username, opts.Password
	case len(c.ClusterAddrs) > 0:
		if err := addrsInto(opts, c.ClusterAddrs); err != nil {
			return nil, err
		}
		opts.IsClusterMode = true
	default:
		return nil, errors.New("no redis server configured")
	}
	return opts, nil
}

// addrsInto accepts host:port or redis://[user:pass@]host:port addresses;
// the credentials of the first URL apply to all of them.
func addrsInto(opts *redis.UniversalOptions, addrs []string) error {
	for _, a := range addrs {
		if !strings.Contains(a, "://") {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return fmt.Errorf("redis address %q: %w", a, err)
			}
			opts.Addrs = append(opts.Addrs, a)
			continue
		}
		o, err := redis.ParseURL(a)
		if err != nil {
			return fmt.Errorf("redis address %s: %w", Redact(a), err)
		}
		if opts.Password == "" {
			opts.Username, opts.Password, opts.TLSConfig = o.Username, o.Password, o.TLSConfig
		}
		opts.Addrs = append(opts.Addrs, o.Addr)
	}
	return nil
}

// Redis returns the shared client for c and a release function to call at
// cleanup. The client connects lazily.
func Redis(c RedisConfig) (redis.UniversalClient, func(), error) {
	opts, err := c.Options()
	if err != nil {
		return nil, nil, err
	}
	key := c.key()
	val, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) {
		rdb := redis.NewUniversalClient(opts)
		if cc, ok := rdb.(*redis.ClusterClient); ok {
			cc.AddHook(reloadOnOutage{cc})
		}
		return pooledRedis{rdb}, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return val.(pooledRedis).UniversalClient, func() { _, _ = pool.Delete(key) }, nil
}

// reloadOnOutage makes a cluster client ask for the slot map again whenever
// a command fails for want of a node. go-redis otherwise keeps sending a
// failed master's slots to it until its map is 10 seconds old, so that
// after a failover the gate stayed closed for seconds after the replica
// had taken over. The reload runs in the background, one at a time.
type reloadOnOutage struct{ cc *redis.ClusterClient }

func (h reloadOnOutage) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnOutage) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnOutage) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnOutage) check(ctx context.Context, err error) {
	if err != nil && !errors.Is(err, redis.Nil) && isOutage(err) {
		h.cc.ReloadState(ctx)
	}
}

// Redact returns a URL with its password hidden; anything that does not
// parse as a URL is hidden whole, since it may be a bare secret.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		if strings.Contains(raw, "://") || strings.Contains(raw, "@") {
			return "(unparsable URL)"
		}
		return raw
	}
	return u.Redacted()
}

func redactAll(addrs []string) string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = Redact(a)
	}
	return strings.Join(out, " ")
}

// OutageError is an error of a store that is down, unreachable, shutting
// down or too slow. It matches ErrUnavailable.
type OutageError struct {
	Store string // "postgres" or "redis"
	Err   error
}

func (e *OutageError) Error() string        { return e.Store + " unavailable: " + e.Err.Error() }
func (e *OutageError) Unwrap() error        { return e.Err }
func (e *OutageError) Is(target error) bool { return target == ErrUnavailable }

// PostgresErr marks err as an outage of PostgreSQL when it is one.
func PostgresErr(err error) error { return classify("postgres", err) }

// RedisErr marks err as an outage of Redis when it is one.
func RedisErr(err error) error { return classify("redis", err) }

func classify(name string, err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || !isOutage(err) {
		return err
	}
	return &OutageError{Store: name, Err: err}
}

func isOutage(err error) bool {
	var netErr net.Error
	var pqErr *pq.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, driver.ErrBadConn),
		errors.Is(err, sql.ErrConnDone),
		errors.Is(err, redis.ErrClosed),
		errors.Is(err, redis.ErrPoolTimeout),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), // a dropped connection, as lib/pq and go-redis report it
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.As(err, &netErr):
		return true
	case errors.As(err, &pqErr):
		// 08: connection exception; 57P: shutdown or crash; 53: out of resources.
		class := string(pqErr.Code.Class())
		return class == "08" || class == "53" || strings.HasPrefix(string(pqErr.Code), "57P")
	}
	// Redis answers these while it cannot serve.
	msg := err.Error()
	for _, p := range []string{"LOADING", "CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// Ping checks that both stores answer, naming the one that does not.
func Ping(ctx context.Context, db *sql.DB, dsn string, rdb redis.UniversalClient, rc RedisConfig) error {
	ctx, cancel := context.WithTimeout(ctx, DialTimeout+IOTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("postgres %s unreachable: %w", Redact(dsn), err)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis %s unreachable: %w", rc, err)
	}
	return nil
}
