package caddymodule

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// directives are every setting of the global option and the site directive.
var directives = []string{
	"postgres", "schema", "postgres_max_conns", "postgres_idle_conns", "postgres_conn_lifetime", "redis", "redis_sentinel", "redis_cluster", "redis_prefix", "mail_dir", "smtp",
	"mail_from", "registration", "session_ttl", "session_idle", "max_sessions", "session_cache", "cookie_name",
	"cookie_domain", "otp_ttl", "reset_url", "argon2", "hash_concurrency", "password_min_score",
	"throttle_user", "throttle_ip", "throttle_codes", "mfa",
	"prefix", "account_api", "users_api", "public", "title", "origin",
}

// namesDirective matches an error that says which setting is wrong.
var namesDirective = regexp.MustCompile(`authgate: (unknown directive "|(` + strings.Join(directives, "|") + `): )`)

// gateCaddyfile puts global and site inside the two authgate blocks of a
// Caddyfile.
func gateCaddyfile(global, site string) string {
	return "{\n\tauthgate {\n" + global + "\n\t}\n}\n:8080 {\n\tauthgate {\n" + site + "\n\t}\n\trespond ok\n}\n"
}

// framed tells whether the Caddyfile parser reads text as gateCaddyfile
// made it: the global block with the authgate option alone, and a site
// with authgate and respond ok. Anything else (a brace that closes a
// block early, an import) is the Caddyfile parser's business, not ours.
func framed(text string) bool {
	blocks, err := caddyfile.Parse("Caddyfile", []byte(text))
	if err != nil || len(blocks) != 2 || len(blocks[0].Keys) != 0 || len(blocks[1].Keys) != 1 ||
		blocks[1].Keys[0].Text != ":8080" || len(blocks[0].Segments) != 1 || len(blocks[1].Segments) != 2 {
		return false
	}
	first := func(seg caddyfile.Segment) string { return seg[0].Text }
	respond := blocks[1].Segments[1]
	return first(blocks[0].Segments[0]) == "authgate" && first(blocks[1].Segments[0]) == "authgate" &&
		len(respond) == 2 && respond[0].Text == "respond" && respond[1].Text == "ok"
}

// FuzzCaddyfile: whatever is written inside the global option and the site
// directive, adapting never panics; it fails only with an error naming
// "authgate: <directive>"; and what adapts also provisions (caddy validate,
// which dials no store), or fails naming the directive.
func FuzzCaddyfile(f *testing.F) {
	const base = "postgres postgres://u@localhost/db\nredis redis://localhost:6379\n"
	for _, seed := range [][2]string{
		{base, ""},
		{base + "schema app\nredis_prefix myapp\nmail_dir /tmp/mail\nmail_from login@example.com\nregistration closed\n" +
			"session_ttl 12h\nsession_idle 30m\nmax_sessions 3\ncookie_name sid\ncookie_domain example.com\notp_ttl 15m\n" +
			"reset_url https://app.example.com/reset?t={token}\nargon2 19456 2 1\nhash_concurrency 2\npassword_min_score 3\n" +
			"session_cache off\nthrottle_user 5 10m\nthrottle_ip 50 1h\nthrottle_codes 20 24h\n" +
			"postgres_max_conns 24\npostgres_idle_conns 12\npostgres_conn_lifetime 1h",
			"prefix /login-area\naccount_api /api/user\npublic /healthz /assets/*\ntitle \"Example Corp\"\norigin https://app.example.com"},
		{"postgres {env.PG}\nredis {env.REDIS}\nsession_ttl {env.TTL}\nmax_sessions {env.N}", "public /{env.P}"},
		{"postgres postgres://u@localhost/db?sslmode=bogus\nredis redis://localhost:6379", ""},
		{"postgres postgres://u@localhost/db\nredis_sentinel mymaster 10.0.0.1:26379 10.0.0.2:26379", ""},
		{"postgres postgres://u@localhost/db\nredis_cluster 10.0.0.1:7000 10.0.0.2:7000", ""},
		{"postgres postgres://u@localhost/db\nredis rediss://:pw@localhost:6380/1?dial_timeout=3s", ""},
		{base + "smtp smtps://mailer:s3cret@mail.example.com", ""},
		{base + "argon2 4294967295 1 1", ""},
		{base + "session_cache -1", ""},
		{base + "max_sessions 99999999999999999999", ""},
		{base + "cookie_name a.b.c\ncookie_domain .example.com", ""},
		{base + "reset_url {prefix}/reset?token={token}", "account_api /api"},
		{base + "postgres x", ""},
		{base, "prefix /auth\naccount_api /auth/api"},
		{base, "public /a /b\npublic /c"},
		{base, "origin http://[::1]:8080"},
		{base, "users_api /api\npublic /healthz /api/public/*"},
		{base, "users_api /api\npublic /api/*"},
		{base, "users_api /api/\naccount_api /api/users"},
		{base, "prefix {"},
		{base + "throttle_user {\n}", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, global, site string) {
		text := gateCaddyfile(global, site)
		if strings.Contains(text, "import") || !framed(text) {
			return
		}
		out, err := adapt(t, text)
		if err != nil {
			if !namesDirective.MatchString(err.Error()) {
				t.Fatalf("adapting\n%s\nfails without naming the directive: %v", text, err)
			}
			return
		}
		var cfg caddy.Config
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatalf("adapting\n%s\ngives JSON that does not load: %v", text, err)
		}
		// caddy validate's own logs are not what this is about.
		cfg.Logging = &caddy.Logging{Logs: map[string]*caddy.CustomLog{"default": {BaseLog: caddy.BaseLog{Level: "ERROR"}}}}
		if err := caddy.Validate(&cfg); err != nil && !namesDirective.MatchString(err.Error()) {
			t.Fatalf("\n%s\nadapts to %s\nwhich fails validation without naming the directive: %v", text, out, err)
		}
	})
}
