package testenv_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestOwnPostgres(t *testing.T) {
	t.Parallel()
	p := testenv.OwnPostgres(t)
	checkFaults(t, p, func(timeout time.Duration) error { return pgQuery(p.URL(), timeout, "SELECT 1") })
}

func TestOwnRedis(t *testing.T) {
	t.Parallel()
	r := testenv.OwnRedis(t)
	checkFaults(t, r, func(timeout time.Duration) error { return redisPing(r.URL(), timeout) })
}

// checkFaults checks that s answers, and does not while paused or stopped.
// query waits for an answer at most timeout: a server that is up gets all
// the time a busy machine may need, one that is down a second to answer.
func checkFaults(t *testing.T, s interface {
	Pause() error
	Resume() error
	Stop() error
	Start() error
}, query func(timeout time.Duration) error) {
	up := func(step string) {
		t.Helper()
		if err := query(testenv.Patience); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	down := func(step string) {
		t.Helper()
		if query(time.Second) == nil {
			t.Fatalf("%s: the server still answers", step)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	up("started")
	must(s.Pause())
	down("paused")
	must(s.Resume())
	up("resumed")
	must(s.Pause())
	must(s.Stop()) // while paused
	down("stopped")
	must(s.Stop())
	must(s.Start())
	up("started again")
}

func TestPostgresKeepsItsCluster(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, err := testenv.StartPostgres(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if err := pgQuery(p.URL(), testenv.Patience, "CREATE TABLE kept (x int)"); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}

	p, err = testenv.StartPostgres(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if err := pgQuery(p.URL(), testenv.Patience, "SELECT x FROM kept"); err != nil {
		t.Fatal(err)
	}
}

func TestPostgresURL(t *testing.T) {
	t.Parallel()
	outer := testenv.PostgresURL(t)
	var inner string
	t.Run("fresh", func(t *testing.T) {
		inner = testenv.PostgresURL(t)
		if inner == outer {
			t.Fatalf("two tests got the same database %s", inner)
		}
		if err := pgQuery(inner, testenv.Patience, "CREATE TABLE t (x int)"); err != nil {
			t.Fatal(err)
		}
	})

	u, err := url.Parse(inner)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("postgres", outer)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var dropped bool
	err = db.QueryRow(`SELECT NOT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, strings.TrimPrefix(u.Path, "/")).Scan(&dropped)
	if err != nil {
		t.Fatal(err)
	}
	if !dropped {
		t.Errorf("database %s outlived its test", u.Path)
	}
}

func TestRedisURL(t *testing.T) {
	t.Parallel()
	if err := redisPing(testenv.RedisURL(t), testenv.Patience); err != nil {
		t.Fatal(err)
	}
	a, b := testenv.Prefix(t), testenv.Prefix(t)
	if a == b || !strings.Contains(a, "TestRedisURL") {
		t.Errorf("prefixes %q and %q: want distinct, naming the test", a, b)
	}
}

// pgQuery runs query on a new connection, so a paused server cannot answer
// from a pooled one.
func pgQuery(dsn string, timeout time.Duration, query string) error {
	// lib/pq does not give up connecting when ctx ends; connect_timeout does.
	db, err := sql.Open("postgres", fmt.Sprintf("%s&connect_timeout=%d", dsn, int(timeout.Seconds())))
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err = db.ExecContext(ctx, query)
	return err
}

func redisPing(rawURL string, timeout time.Duration) error {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return err
	}
	opt.DialTimeout, opt.ReadTimeout, opt.MaxRetries = timeout, timeout, -1
	c := redis.NewClient(opt)
	defer c.Close()
	return c.Ping(context.Background()).Err()
}

// Each topology takes keys in every slot through its client, Keys finds
// them all (on a cluster, on every master), and the directive names the
// deployment as the Caddyfile does.
func TestTopologies(t *testing.T) {
	t.Parallel()
	tops := testenv.Topologies(t)
	if names := fmt.Sprint(tops[0].Name, tops[1].Name, tops[2].Name); names != "singleclustersentinel" {
		t.Fatalf("topologies %s", names)
	}
	for _, tp := range tops {
		t.Run(tp.Name, func(t *testing.T) {
			t.Parallel()
			rdb := testenv.RedisClient(t, tp)
			prefix := testenv.Prefix(t)
			ctx := t.Context()
			const n = 50
			// One pipeline over keys of many slots.
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := range n {
					p.Set(ctx, fmt.Sprintf("%s:%d", prefix, i), i, time.Minute)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			keys, err := testenv.Keys(ctx, rdb, prefix+":*")
			if err != nil || len(keys) != n {
				t.Fatalf("Keys found %d of %d keys (%v)", len(keys), n, err)
			}
			directive := map[string]string{"single": "redis redis://", "cluster": "redis_cluster 127.0.0.1:", "sentinel": "redis_sentinel authgate 127.0.0.1:"}[tp.Name]
			if d := tp.Directive(); !strings.HasPrefix(d, directive) {
				t.Errorf("directive %q, want it to start %q", d, directive)
			}
		})
	}
}
