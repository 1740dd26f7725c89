package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The servers PostgresURL and RedisURL start when the environment names
// none: one of each per test process, started on first use.
var (
	sharedPostgres = sync.OnceValues(func() (*Postgres, error) { return startShared("postgres", StartPostgres) })
	sharedRedis    = sync.OnceValues(func() (*Redis, error) { return startShared("redis", StartRedis) })
	// The shared topologies fail over only if a node stops answering for
	// seconds, which no test makes them do: a busy machine must not.
	sharedCluster = sync.OnceValues(func() (*Cluster, error) {
		return startShared("redis-cluster", func(dir string) (*Cluster, error) { return StartCluster(dir, sharedDownAfter) })
	})
	sharedSentinels = sync.OnceValues(func() (*Sentinels, error) {
		return startShared("redis-sentinel", func(dir string) (*Sentinels, error) { return StartSentinels(dir, sharedDownAfter) })
	})

	atExitMu sync.Mutex
	atExit   []func() // run by Main
)

// How long a master of a shared topology may not answer before it is failed
// over, and of one a test has for itself (OwnCluster, OwnSentinels): short,
// so that a failover takes seconds.
const (
	sharedDownAfter = 15 * time.Second
	ownDownAfter    = time.Second
)

// startShared starts a server for the whole test process in a temporary
// directory, and registers its removal with Main.
func startShared[S interface{ Stop() error }](name string, start func(dir string) (S, error)) (S, error) {
	var zero S
	dir, err := os.MkdirTemp("", "authgate-"+name+"-")
	if err != nil {
		return zero, err
	}
	s, err := start(dir)
	atExitMu.Lock()
	defer atExitMu.Unlock()
	atExit = append(atExit, func() {
		if err == nil {
			s.Stop()
		}
		os.RemoveAll(dir)
	})
	return s, err
}

// Main runs a package's tests, then stops the servers that PostgresURL,
// RedisURL and Topologies started and removes their files. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// Without it, those servers still shut down when the test binary exits, but
// their files stay in the temporary directory.
func Main(m *testing.M) {
	code := m.Run()
	atExitMu.Lock()
	for _, f := range atExit {
		f()
	}
	atExitMu.Unlock()
	os.Exit(code)
}

// PostgresURL returns the URL of a new, empty database, dropped when the test
// ends, on the server named by the environment variable AUTHGATE_POSTGRES (a
// postgres:// URL of a role that may create databases) or else on a server
// this test process starts (see Main).
func PostgresURL(t testing.TB) string {
	t.Helper()
	server := os.Getenv("AUTHGATE_POSTGRES")
	if server == "" {
		p, err := sharedPostgres()
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		server = p.URL()
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("testenv: AUTHGATE_POSTGRES=%q is not a postgres:// URL", server)
	}

	name := "test_" + strings.ToLower(rand.Text())
	if err := execSQL(server, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: on %s: %v", u.Redacted(), err)
	}
	t.Cleanup(func() {
		// FORCE: the code under test may still hold connections.
		if err := execSQL(server, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: on %s: %v", u.Redacted(), err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// execSQL runs one statement on the database at dsn.
func execSQL(dsn, query string) error {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, query); err != nil {
		return fmt.Errorf("%s: %w", query, err)
	}
	return nil
}

// RedisURL returns the URL of the Redis server named by the environment
// variable AUTHGATE_REDIS, or else of one this test process starts (see
// Main). Tests share it: each should keep its keys under its own Prefix.
func RedisURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("AUTHGATE_REDIS"); u != "" {
		return u
	}
	r, err := sharedRedis()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return r.URL()
}

// Prefix returns a Redis key prefix unique to the call, so that tests
// sharing a Redis server never see each other's keys. It names the test, to
// tell whose keys are whose when looking into the server.
func Prefix(t testing.TB) string {
	name := strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			return r
		}
		return '_'
	}, t.Name())
	return "test:" + name + ":" + rand.Text()[:8]
}

// OwnPostgres starts a PostgreSQL server for this test alone, for tests that
// stop, pause or restart it. It is stopped when the test ends.
func OwnPostgres(t testing.TB) *Postgres {
	t.Helper()
	p, err := StartPostgres(t.TempDir())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return p
}

// OwnRedis starts a Redis server for this test alone, for tests that stop,
// pause or restart it. It is stopped when the test ends.
func OwnRedis(t testing.TB) *Redis {
	t.Helper()
	r, err := StartRedis(t.TempDir())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return r
}

// Topologies returns the Redis deployments the store suites run over, as
// named t.Run cases: "single" (RedisURL's server), "cluster" (three masters
// with a replica each) and "sentinel" (a master, its replica and three
// sentinels). The cluster and the sentinel group are those named by
// AUTHGATE_REDIS_CLUSTER ("<addr> <addr>...") and AUTHGATE_REDIS_SENTINEL
// ("<master> <addr>..."), as the redis_cluster and redis_sentinel directives
// take them, or else started by this test process once, on first use (see
// Main). Tests share them: each keeps its keys under its own Prefix, and
// none may stop or fail over a node of them (OwnCluster, OwnSentinels).
func Topologies(t testing.TB) []Topology {
	t.Helper()
	single := Topology{Name: "single", URL: RedisURL(t)}
	var cluster, sentinel Topology
	var errs [2]error
	var wg sync.WaitGroup // the two start at once: seconds each
	wg.Go(func() { cluster, errs[0] = sharedTopology("cluster") })
	wg.Go(func() { sentinel, errs[1] = sharedTopology("sentinel") })
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	return []Topology{single, cluster, sentinel}
}

// sharedTopology returns the cluster or the sentinel group of Topologies.
func sharedTopology(name string) (Topology, error) {
	switch name {
	case "cluster":
		if env := os.Getenv("AUTHGATE_REDIS_CLUSTER"); env != "" {
			addrs := strings.Fields(strings.ReplaceAll(env, ",", " "))
			return Topology{Name: name, ClusterAddrs: addrs}, nil
		}
		c, err := sharedCluster()
		if err != nil {
			return Topology{}, err
		}
		return c.Topology(), nil
	default:
		if env := os.Getenv("AUTHGATE_REDIS_SENTINEL"); env != "" {
			f := strings.Fields(strings.ReplaceAll(env, ",", " "))
			if len(f) < 2 {
				return Topology{}, fmt.Errorf("AUTHGATE_REDIS_SENTINEL=%q: want <master> <addr>...", env)
			}
			return Topology{Name: name, SentinelMaster: f[0], SentinelAddrs: f[1:]}, nil
		}
		g, err := sharedSentinels()
		if err != nil {
			return Topology{}, err
		}
		return g.Topology(), nil
	}
}

// RedisClient returns a new client of tp, closed when the test ends.
func RedisClient(t testing.TB, tp Topology) redis.UniversalClient {
	t.Helper()
	rdb := tp.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// OwnCluster starts a Redis Cluster for this test alone, for tests that
// kill, pause or restart its nodes; a master that stops answering is
// failed over within seconds. It is stopped when the test ends.
func OwnCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := StartCluster(t.TempDir(), ownDownAfter)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return c
}

// OwnSentinels starts a Sentinel group for this test alone, for tests that
// kill, pause or restart its nodes; a master that stops answering is
// failed over within seconds. It is stopped when the test ends.
func OwnSentinels(t testing.TB) *Sentinels {
	t.Helper()
	g, err := StartSentinels(t.TempDir(), ownDownAfter)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := g.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return g
}

// FreePort returns a loopback TCP port that is free right now (see
// FreePorts), or fails the test.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return port
}
