package caddymodule

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is one running Caddy with authgate in front of an upstream that echoes
// the identity headers it receives, over real PostgreSQL and Redis.
type env struct {
	t        testing.TB
	base     string // http://127.0.0.1:port
	host     string // the Host requests carry, when not base's
	pg       string
	redisURL string           // a single server's, unless redis is another deployment
	redis    testenv.Topology // the deployment the config names
	prefix   string
	users    string // where the users dialect is: /auth, or users_api
	mailDir  string
	logFile  string
	db       *sql.DB
	rdb      redis.UniversalClient
	apps     map[string]any

	caddyfile    string       // the config newEnv loaded
	upstream     *http.Server // the upstream echoIdentity runs in
	upstreamAddr string       // its host:port
	reached      *reached     // what the upstream got; shared by the env's copies
}

// reached counts the requests the upstream got, by Remote-User.
type reached struct {
	mu     sync.Mutex
	byUser map[string]int
	// record, when set, sees every request the upstream gets.
	record func(*http.Request)
}

// options change the generated Caddyfile.
type options struct {
	global   string // extra lines in the authgate global block
	site     string // extra lines in the site's authgate block
	usersAPI string // users_api of the site, if any
	handlers string // extra lines in the site block (other handlers)
	postgres string // default: a fresh database on the shared server
	redis    string // default: the shared server
	// topology is a Redis Cluster or Sentinel group to use instead.
	topology *testenv.Topology
	smtp     string // an SMTP URL instead of the mail_dir mailer
	caddy    string // extra lines in Caddy's own global options
	// address is the site address, with %d for the port; default
	// http://127.0.0.1:%d. The server binds 127.0.0.1 whatever it says.
	address string
	// host is the host name requests carry in Host (with the port), for an
	// address that names one.
	host string
	// apps are more Caddy apps (JSON), for what a Caddyfile cannot say. They
	// go into the first config rather than a reload: on Linux a reload binds
	// the port twice (SO_REUSEPORT), and a connection the kernel hands to the
	// old server's listener as it closes ends in EOF.
	apps map[string]any
}

func newEnv(t testing.TB, opts options) *env {
	t.Helper()
	e := &env{t: t, pg: opts.postgres, redisURL: opts.redis, prefix: testenv.Prefix(t), apps: opts.apps,
		reached: &reached{byUser: map[string]int{}}, users: "/auth"}
	if opts.usersAPI != "" {
		e.users = opts.usersAPI
		opts.site += "\n\t\tusers_api " + opts.usersAPI
	}
	if opts.address == "" {
		opts.address = "http://127.0.0.1:%d"
	}
	if e.pg == "" {
		e.pg = testenv.PostgresURL(t)
	}
	if e.redisURL == "" && opts.topology == nil {
		e.redisURL = testenv.RedisURL(t)
	}
	e.redis = testenv.Topology{Name: "single", URL: e.redisURL}
	if opts.topology != nil {
		e.redis = *opts.topology
	}
	dir := t.TempDir()
	e.mailDir = filepath.Join(dir, "mail")
	e.logFile = filepath.Join(dir, "caddy.log")

	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.reached.mu.Lock()
		e.reached.byUser[r.Header.Get("Remote-User")]++
		record := e.reached.record
		e.reached.mu.Unlock()
		if record != nil {
			record(r)
		}
		echoIdentity(w, r)
	}), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = upstream.Serve(ln) }()
	t.Cleanup(func() { _ = upstream.Close() })
	e.upstream, e.upstreamAddr = upstream, ln.Addr().String()

	mailer := "mail_dir " + e.mailDir
	if opts.smtp != "" {
		mailer = "smtp " + opts.smtp
	}
	port := testenv.FreePort(t)
	e.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	if opts.host != "" {
		e.host = fmt.Sprintf("%s:%d", opts.host, port)
	}
	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
	log {
		output file %s
		level DEBUG
	}
	%s
	authgate {
		postgres %s
		%s
		redis_prefix %s
		%s
		%s
	}
}
%s {
	bind 127.0.0.1
	authgate {
		public /healthz /assets/*
		%s
	}
	%s
	reverse_proxy %s
}
`, e.logFile, opts.caddy, e.pg, e.redis.Directive(), e.prefix, mailer, opts.global, fmt.Sprintf(opts.address, port), opts.site, opts.handlers, ln.Addr())
	e.caddyfile = cfg
	e.load(cfg)

	e.db, err = sql.Open("postgres", e.pg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.db.Close() })
	e.rdb = testenv.RedisClient(t, e.redis)
	return e
}

// load adapts and runs a Caddyfile in this process, as `caddy run` would.
func (e *env) load(caddyfileText string) {
	e.t.Helper()
	adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
	cfgJSON, _, err := adapter.Adapt([]byte(caddyfileText), nil)
	if err != nil {
		e.t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfileText)
	}
	if len(e.apps) > 0 {
		var cfg map[string]any
		if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
			e.t.Fatal(err)
		}
		for name, app := range e.apps {
			cfg["apps"].(map[string]any)[name] = app
		}
		if cfgJSON, err = json.Marshal(cfg); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		e.t.Fatalf("loading config: %v", err)
	}
	e.t.Cleanup(func() { _ = caddy.Stop() })
}

// reload loads the env's config again with one more line in the authgate
// global block, as a config change would.
func (e *env) reload(extra string) {
	e.t.Helper()
	e.load(strings.Replace(e.caddyfile, "\tauthgate {\n", "\tauthgate {\n\t\t"+extra+"\n", 1))
}

// upstreamReached returns how many requests reached the upstream carrying
// Remote-User user ("" for none).
func (e *env) upstreamReached(user string) int {
	e.reached.mu.Lock()
	defer e.reached.mu.Unlock()
	return e.reached.byUser[user]
}

// echoIdentity is the upstream: it tells what the gate passed on.
func echoIdentity(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"user":          r.Header.Get("Remote-User"),
		"email":         r.Header.Get("Remote-Email"),
		"user_id":       r.Header.Get("Remote-User-Id"),
		"uri":           r.URL.RequestURI(),
		"cookie":        r.Header.Get("Cookie"),
		"authorization": r.Header.Get("Authorization"),
		"auth_methods":  r.Header.Get("Remote-Auth-Methods"),
		"amr":           r.Header.Get("X-Amr"),
	})
}

// client is a browser-like HTTP client: it keeps cookies and does not follow
// redirects, so tests see them.
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:           jar,
		Timeout:       testenv.Patience,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// reply is a decoded response.
type reply struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

// message returns data.message of the users-API envelope.
func (r reply) message() any {
	data, _ := r.json["data"].(map[string]any)
	return data["message"]
}

func (r reply) success() any { return r.json["success"] }

// field returns data.message.<name> of a success envelope.
func (r reply) field(name string) any {
	m, _ := r.message().(map[string]any)
	return m[name]
}

func (r reply) str(name string) string {
	s, _ := r.field(name).(string)
	return s
}

// do sends a request; body may be a string (sent as is) or a map (sent as JSON).
func (e *env) do(c *http.Client, method, path string, body any, header ...string) reply {
	e.t.Helper()
	r, err := e.try(context.Background(), c, method, path, body, header...)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// try is do for goroutines other than the test's: it returns what fails
// instead of failing the test.
func (e *env) try(ctx context.Context, c *http.Client, method, path string, body any, header ...string) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = strings.NewReader(string(j))
	}
	req, err := http.NewRequestWithContext(ctx, method, e.base+path, rd)
	if err != nil {
		return reply{}, err
	}
	if _, ok := body.(map[string]any); ok {
		req.Header.Set("Content-Type", "application/json")
	}
	if e.host != "" {
		req.Host = e.host
	}
	for i := 0; i+1 < len(header); i += 2 {
		if strings.EqualFold(header[i], "Host") {
			req.Host = header[i+1] // Go sends req.Host, not a Host header
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	if c == nil {
		c = e.client()
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("reading the answer: %w", err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, body: raw}
	_ = json.Unmarshal(raw, &r.json)
	return r, nil
}

// expect checks a users-API reply: status, success (true or false, or the
// string "true" of a successful login) and data.message (for a string
// message).
func (e *env) expect(r reply, status int, success any, message string) {
	e.t.Helper()
	if r.status != status || r.success() != success {
		e.t.Fatalf("got %d %s, want %d success=%v message=%s", r.status, r.body, status, success, message)
	}
	if message != "" && r.message() != message {
		e.t.Fatalf("got message %v (%s), want %s", r.message(), r.body, message)
	}
}

// register makes an account through the API.
func (e *env) register(username, password, email string) {
	e.t.Helper()
	r := e.do(nil, "POST", e.users+"/users/register", map[string]any{"username": username, "password": password, "email": email})
	e.expect(r, 200, true, "USER_INSERT_OK")
}

// login logs c in and returns the login reply.
func (e *env) login(c *http.Client, username, password string) reply {
	e.t.Helper()
	r := e.do(c, "POST", e.users+"/users/login", map[string]any{"username": username, "password": password})
	e.expect(r, 200, "true", "")
	return r
}

// lastMail returns the newest mail in the mail folder.
func (e *env) lastMail() string {
	e.t.Helper()
	entries, err := os.ReadDir(e.mailDir)
	if err != nil || len(entries) == 0 {
		e.t.Fatalf("no mail in %s: %v", e.mailDir, err)
	}
	var newest os.DirEntry
	var newestTime time.Time
	for _, ent := range entries {
		info, err := ent.Info()
		if err == nil && !info.ModTime().Before(newestTime) {
			newest, newestTime = ent, info.ModTime()
		}
	}
	b, err := os.ReadFile(filepath.Join(e.mailDir, newest.Name()))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// scalar runs a query returning one value.
func (e *env) scalar(query string, args ...any) any {
	e.t.Helper()
	var v any
	if err := e.db.QueryRowContext(context.Background(), query, args...).Scan(&v); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return v
}

// redisDump returns every key and value under the env's prefix as text.
func (e *env) redisDump() string {
	e.t.Helper()
	ctx := context.Background()
	var b strings.Builder
	iter := e.rdb.Scan(ctx, 0, e.prefix+":*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		b.WriteString(key + " = ")
		switch e.rdb.Type(ctx, key).Val() {
		case "string":
			b.WriteString(e.rdb.Get(ctx, key).Val())
		case "hash":
			fmt.Fprint(&b, e.rdb.HGetAll(ctx, key).Val())
		case "zset":
			fmt.Fprint(&b, e.rdb.ZRange(ctx, key, 0, -1).Val())
		}
		b.WriteString("\n")
	}
	if err := iter.Err(); err != nil {
		e.t.Fatal(err)
	}
	return b.String()
}

func formBody(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}
