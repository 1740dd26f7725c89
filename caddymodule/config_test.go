package caddymodule

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/testenv"
)

func adapt(t *testing.T, text string) ([]byte, error) {
	t.Helper()
	out, _, err := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}.Adapt([]byte(text), nil)
	return out, err
}

const specCaddyfile = `{
	authgate {
		postgres      postgres://authgate@localhost/authgate?sslmode=disable
		redis         redis://127.0.0.1:6379/0
		redis_prefix  myapp
		mail_dir      /tmp/mail
		mail_from     login@example.com
		registration  closed
		session_ttl   12h
		session_idle  30m
		max_sessions  3
		cookie_name   sid
		cookie_domain example.com
		otp_ttl       15m
		reset_url     https://app.example.com/reset?t={token}
		mfa           required
	}
}

app.example.com {
	authgate {
		prefix       /login-area
		account_api  /api/user
		public       /healthz /assets/*
	}
	reverse_proxy 127.0.0.1:3000
}
`

func TestCaddyfileAdaptsToJSON(t *testing.T) {
	out, err := adapt(t, specCaddyfile)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			Authgate map[string]any `json:"authgate"`
			HTTP     struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Routes []struct {
								Handle []map[string]any `json:"handle"`
							} `json:"routes"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"postgres": "postgres://authgate@localhost/authgate?sslmode=disable", "redis": "redis://127.0.0.1:6379/0",
		"redis_prefix": "myapp", "mail_dir": "/tmp/mail", "mail_from": "login@example.com", "registration": "closed",
		"session_ttl": 12 * 3600e9, "session_idle": 30 * 60e9, "max_sessions": 3.0, "cookie_name": "sid",
		"cookie_domain": "example.com", "otp_ttl": 15 * 60e9, "reset_url": "https://app.example.com/reset?t={token}",
		"mfa": "required",
	}
	for k, v := range want {
		if cfg.Apps.Authgate[k] != v {
			t.Errorf("authgate.%s = %v, want %v", k, cfg.Apps.Authgate[k], v)
		}
	}
	if len(cfg.Apps.Authgate) != len(want) {
		t.Errorf("authgate app has %d settings, want %d: %v", len(cfg.Apps.Authgate), len(want), cfg.Apps.Authgate)
	}
	var handlers []string
	var gate map[string]any
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, h := range srv.Routes[0].Handle[0].Routes {
			for _, hh := range h.Handle {
				handlers = append(handlers, hh["handler"].(string))
				if hh["handler"] == "authgate" {
					gate = hh
				}
			}
		}
	}
	if strings.Join(handlers, ",") != "authgate,reverse_proxy" {
		t.Fatalf("handler order %v", handlers)
	}
	if gate["prefix"] != "/login-area" || gate["account_api"] != "/api/user" ||
		strings.Join(toStrings(gate["public"]), " ") != "/healthz /assets/*" {
		t.Fatalf("handler %v", gate)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// Every config mistake fails at adapt time with the directive's name.
func TestCaddyfileErrorsNameTheDirective(t *testing.T) {
	const base = "postgres postgres://u@localhost/db\nredis redis://localhost:6379\n"
	for _, tc := range []struct{ name, global, site, directive string }{
		{"session_ttl not a duration", base + "session_ttl forever", "", "session_ttl"},
		{"session_idle without a unit", base + "session_idle 10", "", "session_idle"},
		{"registration neither open nor closed", base + "registration maybe", "", "registration"},
		{"mfa neither off, optional nor required", base + "mfa sometimes", "", "mfa"},
		{"mfa without a value", base + "mfa", "", "mfa"},
		{"no postgres", "redis redis://localhost:6379", "", "postgres"},
		{"postgres not a postgres URL", "postgres mysql://u@localhost/db\nredis redis://localhost:6379", "", "postgres"},
		{"no redis", "postgres postgres://u@localhost/db", "", "redis"},
		{"redis not a URL", "postgres postgres://u@localhost/db\nredis localhost:6379", "", "redis"},
		{"redis and redis_cluster", base + "redis_cluster 10.0.0.1:7000", "", "redis"},
		{"max_sessions negative", base + "max_sessions -1", "", "max_sessions"},
		{"max_sessions not a number", base + "max_sessions lots", "", "max_sessions"},
		{"otp_ttl too short", base + "otp_ttl 1s", "", "otp_ttl"},
		{"cookie_name with a semicolon", base + "cookie_name a;b", "", "cookie_name"},
		{"reset_url without {token}", base + "reset_url https://x/reset", "", "reset_url"},
		{"mail_from not an address", base + "mail_from nobody", "", "mail_from"},
		{"smtp not an SMTP URL", base + "smtp ftp://mail.example.com", "", "smtp"},
		{"argon2 below the floor", base + "argon2 1024 1 1", "", "argon2"},
		{"throttle_user of no attempts", base + "throttle_user 0 1m", "", "throttle_user"},
		{"throttle_codes of no window", base + "throttle_codes 20 0s", "", "throttle_codes"},
		{"throttle_codes without a window", base + "throttle_codes 20", "", "throttle_codes"},
		{"password_min_score above 4", base + "password_min_score 5", "", "password_min_score"},
		{"password_min_score negative", base + "password_min_score -1", "", "password_min_score"},
		{"password_min_score not a number", base + "password_min_score strong", "", "password_min_score"},
		{"password_min_score twice a number", base + "password_min_score 1 2", "", "password_min_score"},
		{"an unknown setting", base + "colour blue", "", "colour"},
		{"schema not an identifier", base + "schema Bad-Name", "", "schema"},
		{"postgres_max_conns zero", base + "postgres_max_conns 0", "", "postgres_max_conns"},
		{"postgres_max_conns not a number", base + "postgres_max_conns many", "", "postgres_max_conns"},
		{"postgres_max_conns beyond any pool", base + "postgres_max_conns 100000", "", "postgres_max_conns"},
		{"postgres_idle_conns zero", base + "postgres_idle_conns 0", "", "postgres_idle_conns"},
		{"postgres_idle_conns above the default ceiling", base + "postgres_idle_conns 17", "", "postgres_idle_conns"},
		{"postgres_idle_conns above postgres_max_conns", base + "postgres_max_conns 4\npostgres_idle_conns 5", "", "postgres_idle_conns"},
		{"postgres_conn_lifetime too short", base + "postgres_conn_lifetime 10s", "", "postgres_conn_lifetime"},
		{"postgres_conn_lifetime not a duration", base + "postgres_conn_lifetime long", "", "postgres_conn_lifetime"},
		{"prefix not a path", base, "prefix auth", "prefix"},
		{"account_api under prefix", base, "account_api /auth/api", "account_api"},
		{"public without patterns", base, "public", "public"},
		{"public not a path", base, "public healthz", "public"},
		{"public with a dot segment", base, "public /assets/../x", "public"},
		{"public with a request placeholder", base, "public /{http.request.host}", "public"},
		{"prefix with a semicolon", base, "prefix /a;b", "prefix"},
		{"account_api with an escape", base, "account_api /api/%75ser", "account_api"},
		{"users_api without a path", base, "users_api", "users_api"},
		{"users_api with a trailing slash", base, "users_api /api/", "users_api"},
		{"users_api under prefix", base, "users_api /auth/api", "users_api"},
		{"users_api beside account_api at its users path", base, "users_api /api\naccount_api /api/users", "users_api"},
		{"users_api where public opens its paths", base, "users_api /api\npublic /healthz /api/*", "users_api"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adapt(t, gateCaddyfile(tc.global, tc.site))
			if err == nil || !strings.Contains(err.Error(), "authgate: ") || !strings.Contains(err.Error(), tc.directive) {
				t.Fatalf("error %v, want one naming authgate: %s", err, tc.directive)
			}
		})
	}
}

// A JSON handler with a root prefix would swallow the whole site.
func TestHandlerRefusesRootPrefix(t *testing.T) {
	h := &Handler{Prefix: "/"}
	if err := h.Validate(); err == nil || !strings.Contains(err.Error(), "prefix") {
		t.Fatalf("prefix /: %v", err)
	}
}

// JSON configs (which skip the Caddyfile) are checked when provisioning.
func TestValidateChecksJSONConfig(t *testing.T) {
	for _, tc := range []struct{ name, app, want string }{
		{"no postgres", `{"redis":"redis://localhost:6379"}`, "postgres"},
		{"registration neither open nor closed", `{"postgres":"postgres://u@h/db","redis":"redis://h:1","registration":"maybe"}`, "registration"},
		{"max_sessions negative", `{"postgres":"postgres://u@h/db","redis":"redis://h:1","max_sessions":-4}`, "max_sessions"},
		{"postgres_max_conns negative", `{"postgres":"postgres://u@h/db","redis":"redis://h:1","postgres_max_conns":-1}`, "postgres_max_conns"},
		{"postgres_idle_conns above postgres_max_conns", `{"postgres":"postgres://u@h/db","redis":"redis://h:1","postgres_max_conns":2,"postgres_idle_conns":3}`, "postgres_idle_conns"},
		{"postgres_conn_lifetime too short", `{"postgres":"postgres://u@h/db","redis":"redis://h:1","postgres_conn_lifetime":1000000000}`, "postgres_conn_lifetime"},
		{"mfa neither off, optional nor required", `{"postgres":"postgres://u@h/db","redis":"redis://h:1","mfa":"always"}`, "mfa"},
		{"redis and redis_cluster", `{"postgres":"postgres://u@h/db","redis":"redis://h:1","redis_cluster":["h:2"]}`, "redis"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := caddy.Validate(&caddy.Config{AppsRaw: caddy.ModuleMap{"authgate": json.RawMessage(tc.app)}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: error %v, want one naming %s", tc.app, err, tc.want)
			}
		})
	}
}

func TestEnvPlaceholders(t *testing.T) {
	t.Setenv("AG_TEST_PG", "postgres://u:secret@db/app")
	t.Setenv("AG_TEST_TTL", "2h")
	out, err := adapt(t, "{\n\tauthgate {\n\t\tpostgres {env.AG_TEST_PG}\n\t\tredis redis://h:6379\n\t\tsession_ttl {env.AG_TEST_TTL}\n\t}\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	// Strings keep the placeholder (no secret in the adapted JSON); numbers
	// are resolved at adapt time.
	if !strings.Contains(string(out), `"postgres":"{env.AG_TEST_PG}"`) || !strings.Contains(string(out), `"session_ttl":7200000000000`) {
		t.Fatalf("adapted: %s", out)
	}
	app := &App{Postgres: "{env.AG_TEST_PG}"}
	app.resolvePlaceholders()
	if app.Postgres != "postgres://u:secret@db/app" {
		t.Fatalf("resolved %q", app.Postgres)
	}
}

// Instances starting at once on an empty database take turns migrating and
// end up with one schema.
func TestConcurrentMigrations(t *testing.T) {
	dsn := testenv.PostgresURL(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := sql.Open("postgres", dsn)
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			s, err := accounts.New(db, "authgate")
			if err == nil {
				err = s.Migrate(context.Background())
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	db, _ := sql.Open("postgres", dsn)
	defer db.Close()
	var schemas, versions int
	_ = db.QueryRow("SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'authgate'").Scan(&schemas)
	_ = db.QueryRow("SELECT count(*) FROM authgate.schema_migrations").Scan(&versions)
	if schemas != 1 || versions != migrationCount(t) {
		t.Fatalf("%d schemas, %d migration rows, want 1 and %d", schemas, versions, migrationCount(t))
	}
}

// migrationCount is how many migrations there are: each runs once.
func migrationCount(t testing.TB) int {
	t.Helper()
	files, err := filepath.Glob("accounts/migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations found: %v", err)
	}
	return len(files)
}

// A reload with the same stores keeps the same connection pools.
func TestReloadKeepsPools(t *testing.T) {
	e := newEnv(t, options{})
	first := activeApp(t)
	e.register("rose", "rose-password", "")
	c := e.client()
	e.login(c, "rose", "rose-password")

	cfg := activeConfigText(e, "max_sessions 5")
	e.load(cfg)
	second := activeApp(t)
	if first == second {
		t.Fatal("no new app after reload")
	}
	if first.stores.db != second.stores.db || first.stores.rdb != second.stores.rdb {
		t.Fatal("reload opened new pools")
	}
	if err := second.stores.db.Ping(); err != nil {
		t.Fatalf("pool closed by the old config's cleanup: %v", err)
	}
	// The old server closes its connections as it shuts down, which may end
	// just after the reload returns: a client retries on a new connection.
	var status int
	testenv.WaitFor(t, "an answer from the new server", func() bool {
		c.CloseIdleConnections()
		resp, err := c.Get(e.base + "/auth/users/info")
		if err != nil {
			return false
		}
		status = resp.StatusCode
		resp.Body.Close()
		return true
	})
	if status != 200 {
		t.Fatalf("session after the reload: %d", status)
	}
}

func activeApp(t *testing.T) *App {
	t.Helper()
	ctx := caddy.ActiveContext()
	app, err := ctx.AppIfConfigured("authgate")
	if err != nil {
		t.Fatal(err)
	}
	return app.(*App)
}

// activeConfigText rebuilds the env's Caddyfile with an extra global line.
func activeConfigText(e *env, extra string) string {
	port := strings.TrimPrefix(e.base, "http://127.0.0.1:")
	return "{\n\tadmin off\n\tpersist_config off\n\tauthgate {\n\t\tpostgres " + e.pg + "\n\t\tredis " + e.redisURL +
		"\n\t\tredis_prefix " + e.prefix + "\n\t\t" + extra + "\n\t}\n}\nhttp://127.0.0.1:" + port +
		" {\n\tbind 127.0.0.1\n\tauthgate\n\trespond ok\n}\n"
}

// A store that cannot be reached at start fails the start, naming the URL
// but never its password.
func TestUnreachableStoreFailsStart(t *testing.T) {
	for _, tc := range []struct{ name, pg, redis, want string }{
		{"postgres", "postgres://authgate:hunter2@127.0.0.1:1/authgate?sslmode=disable&connect_timeout=2", testenv.RedisURL(t), "postgres://authgate:xxxxx@127.0.0.1:1"},
		{"redis", testenv.PostgresURL(t), "redis://:hunter2@127.0.0.1:1/0", "redis://:xxxxx@127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "{\n\tadmin off\n\tpersist_config off\n\tauthgate {\n\t\tpostgres " + tc.pg + "\n\t\tredis " + tc.redis + "\n\t}\n}\n"
			cfg, err := adapt(t, text)
			if err != nil {
				t.Fatal(err)
			}
			err = caddy.Load(cfg, true)
			if err == nil {
				_ = caddy.Stop()
				t.Fatalf("started with an unreachable store")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q, want it to name %s without the password", err, tc.want)
			}
		})
	}
}

// adaptedGate returns the authgate handler of an adapted config.
func adaptedGate(t *testing.T, out []byte) map[string]any {
	t.Helper()
	var found map[string]any
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "authgate" && found == nil {
				found = v
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var cfg any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	walk(cfg)
	if found == nil {
		t.Fatalf("no authgate handler in %s", out)
	}
	return found
}

// The origin of mailed links comes from the site's own address. This also
// guards siteKeys, which reads the site block's keys out of Caddy's Helper by
// reflection: if a Caddy upgrade changes that, every case here fails.
func TestSiteOriginFromAddress(t *testing.T) {
	const global = "{\n\t%s\n\tauthgate {\n\t\tpostgres postgres://u@localhost/db\n\t\tredis redis://localhost:6379\n\t}\n}\n"
	for _, tc := range []struct{ name, options, address, site, want string }{
		{"host name", "", "app.example.com", "", "https://app.example.com"},
		{"host and port", "", "app.example.com:8443", "", "https://app.example.com:8443"},
		{"http scheme", "", "http://app.example.com", "", "http://app.example.com"},
		{"http on its port", "", "app.example.com:80", "", "http://app.example.com"},
		{"https default port dropped", "", "https://APP.example.com:443", "", "https://app.example.com"},
		{"make run's address", "", "http://localhost:8080", "", "http://localhost:8080"},
		{"localhost gets automatic https", "", "localhost:8080", "", "https://localhost:8080"},
		{"ip address", "", "http://127.0.0.1:8080", "", "http://127.0.0.1:8080"},
		{"ipv6", "", "[::1]:8443", "", "https://[::1]:8443"},
		{"first real host", "", ":8080, *.example.com, www.example.com, app.example.com", "", "https://www.example.com"},
		{"path ignored", "", "app.example.com/shop", "", "https://app.example.com"},
		{"https_port", "https_port 8443", "app.example.com", "", "https://app.example.com:8443"},
		{"http_port", "http_port 8081", "app.example.com:8081", "", "http://app.example.com:8081"},
		{"http_port without a port", "http_port 8081", "http://app.example.com", "", "http://app.example.com:8081"},
		{"port only", "", ":8080", "", ""},
		{"wildcard only", "", "*.example.com", "", ""},
		{"given origin wins", "", "app.example.com", "origin https://login.example.com", "https://login.example.com"},
		{"given origin on a port-only site", "", ":8080", "account_api /api/user\n\t\torigin https://login.example.com/", "https://login.example.com/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := fmt.Sprintf(global, tc.options) + tc.address + " {\n\tauthgate {\n\t\t" + tc.site + "\n\t}\n\trespond ok\n}\n"
			out, err := adapt(t, text)
			if err != nil {
				t.Fatalf("adapt: %v\n%s", err, text)
			}
			origin, _ := adaptedGate(t, out)["origin"].(string)
			if origin != tc.want {
				t.Fatalf("origin %q, want %q", origin, tc.want)
			}
		})
	}
}

// A site that mails reset links needs an origin for a reset_url that is a
// path: the only other host would be the request's, which the asker picks.
func TestResetURLNeedsTheSiteHost(t *testing.T) {
	const base = "postgres postgres://u@localhost/db\n\t\tredis redis://localhost:6379\n"
	for _, tc := range []struct{ name, global, address, site, want string }{
		{"port only", base, ":8080", "account_api /api/user", "reset_url"},
		{"wildcard", base, "*.example.com", "account_api /api/user", "reset_url"},
		{"port only, path reset_url", base + "reset_url /reset?t={token}", "http://:8080", "account_api /api/user", "reset_url"},
		{"protocol-relative reset_url", base + "reset_url //evil.example/r?t={token}", "app.example.com", "", "reset_url"},
		{"relative reset_url", base + "reset_url reset?t={token}", "app.example.com", "", "reset_url"},
		{"other scheme", base + "reset_url javascript:alert({token})", "app.example.com", "", "reset_url"},
		{"bad origin", base, ":8080", "origin ftp://login.example.com", "origin"},
		{"origin with a path", base, ":8080", "origin https://login.example.com/auth", "origin"},
		{"port only, absolute reset_url", base + "reset_url https://login.example.com/reset?t={token}", ":8080", "account_api /api/user", ""},
		{"port only, no account_api", base, ":8080", "", ""},
		{"named site", base, "app.example.com", "account_api /api/user", ""},
		{"port only, given origin", base, ":8080", "account_api /api/user\n\t\torigin https://login.example.com", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "{\n\tauthgate {\n\t\t" + tc.global + "\n\t}\n}\n" + tc.address + " {\n\tauthgate {\n\t\t" + tc.site + "\n\t}\n\trespond ok\n}\n"
			_, err := adapt(t, text)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("adapt: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), "authgate: "+tc.want+":")):
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

// JSON configs, which skip the adapter, meet the same rule at provisioning.
func TestResetURLNeedsOriginInJSON(t *testing.T) {
	const app = `{"postgres":"postgres://u@127.0.0.1:1/db","redis":"redis://127.0.0.1:1"%s}`
	for _, tc := range []struct{ name, app, handler, want string }{
		{"no origin", "", `"account_api":"/api/user"`, "reset_url"},
		{"bad origin", "", `"account_api":"/api/user","origin":"https://x.example/auth"`, "origin"},
		{"with origin", "", `"account_api":"/api/user","origin":"https://x.example"`, ""},
		{"absolute reset_url", `,"reset_url":"https://x.example/r?t={token}"`, `"account_api":"/api/user"`, ""},
		{"no account_api", "", `"prefix":"/auth"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fmt.Sprintf(`{"admin":{"disabled":true},"apps":{"authgate":`+app+`,"http":{"servers":{"s":{"listen":["127.0.0.1:0"],`+
				`"routes":[{"handle":[{"handler":"authgate",%s}]}]}}}}}`, tc.app, tc.handler)
			var config caddy.Config
			if err := json.Unmarshal([]byte(cfg), &config); err != nil {
				t.Fatal(err)
			}
			err := caddy.Validate(&config)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), "authgate: "+tc.want+":")):
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

// The PostgreSQL pool keeps open what it may use (by default), so that a
// burst of queries does not open connections (a server process each) only
// to close them again; both sizes are the operator's to set.
func TestPostgresPoolSizes(t *testing.T) {
	for _, tc := range []struct {
		name, global string
		max, idle    int
	}{
		{"default", "", DefaultPostgresMaxConns, DefaultPostgresMaxConns},
		{"set", "postgres_max_conns 3\n\t\tpostgres_idle_conns 2", 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, options{global: tc.global})
			db := activeApp(t).stores.db
			if got := db.Stats().MaxOpenConnections; got != tc.max {
				t.Fatalf("MaxOpenConnections = %d, want %d", got, tc.max)
			}
			// A burst that holds every connection at once, then lets go.
			ctx := context.Background()
			closedBefore := db.Stats().MaxIdleClosed
			conns := make([]*sql.Conn, tc.max)
			for i := range conns {
				c, err := db.Conn(ctx)
				if err == nil {
					err = c.PingContext(ctx)
				}
				if err != nil {
					t.Fatal(err)
				}
				conns[i] = c
			}
			for _, c := range conns {
				_ = c.Close()
			}
			st := db.Stats()
			if st.OpenConnections != tc.idle || st.Idle != tc.idle || st.MaxIdleClosed-closedBefore != int64(tc.max-tc.idle) {
				t.Fatalf("after the burst: %d open, %d idle, %d closed for the idle limit; want %d, %d, %d",
					st.OpenConnections, st.Idle, st.MaxIdleClosed-closedBefore, tc.idle, tc.idle, tc.max-tc.idle)
			}
			// The server agrees: the pool's connections, and the test's own.
			const backends = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
			var got int64
			testenv.WaitFor(t, fmt.Sprintf("%d connections to the database", tc.idle+1), func() bool {
				got = e.scalar(backends).(int64)
				return got == int64(tc.idle+1)
			})
		})
	}
}
