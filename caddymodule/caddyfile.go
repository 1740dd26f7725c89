package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("authgate", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("authgate", parseHandler)
	// Right after Caddy's own auth handlers: before reverse_proxy as the
	// contract says, and also before handle, respond and file_server, so
	// that no other handler of the site can answer ahead of the gate.
	httpcaddyfile.RegisterDirectiveOrder("authgate", httpcaddyfile.After, "forward_auth")
}

// parseGlobalOption reads the global option block:
//
//	authgate {
//		postgres       <url>
//		schema         <name>
//		postgres_max_conns  <n>
//		postgres_idle_conns <n>
//		postgres_conn_lifetime <duration>
//		redis          <url>
//		redis_sentinel <master> <addr>...
//		redis_cluster  <addr>...
//		redis_prefix   <string>
//		mail_dir       <dir>
//		smtp           <url>
//		mail_from      <address>
//		registration   open|closed
//		session_ttl    <duration>
//		session_idle   <duration>
//		max_sessions   <n>
//		session_cache  <n>|off
//		cookie_name    <name>
//		cookie_domain  <domain>
//		otp_ttl        <duration>
//		reset_url      <template>
//		argon2         <memory_kib> <iterations> <parallelism>
//		hash_concurrency <n>
//		password_min_score <0-4>
//		throttle_user  <max> <window>
//		throttle_ip    <max> <window>
//		throttle_codes <max> <window>
//		mfa            off|optional|required
//	}
//
// The settings are checked here as well as at provisioning, so that
// `caddy adapt` already names a wrong directive.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("authgate: the global option may appear only once")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	// The JSON keeps only what was written; the defaults are for the check.
	raw := caddyconfig.JSON(app, nil)
	app.setDefaults()
	if err := app.check(); err != nil {
		return nil, d.Err(err.Error())
	}
	return httpcaddyfile.App{Name: "authgate", Value: raw}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option's name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		directive := d.Val()
		if seen[directive] {
			return d.Errf("authgate: %s: given twice", directive)
		}
		seen[directive] = true
		args := d.RemainingArgs()
		if err := a.setDirective(d, directive, args); err != nil {
			return err
		}
	}
	return nil
}

func (a *App) setDirective(d *caddyfile.Dispenser, directive string, args []string) error {
	want := func(n int) error {
		if len(args) != n {
			return d.Errf("authgate: %s: takes %d argument(s), got %d", directive, n, len(args))
		}
		return nil
	}
	str := func(dst *string) error {
		if err := want(1); err != nil {
			return err
		}
		*dst = args[0]
		return nil
	}
	dur := func(dst *caddy.Duration, s string) error {
		v, err := caddy.ParseDuration(resolveNow(s))
		if err != nil {
			return d.Errf("authgate: %s: %q is not a duration (like 30m or 24h)", directive, s)
		}
		*dst = caddy.Duration(v)
		return nil
	}
	num := func(dst *int, s string) error {
		v, err := strconv.Atoi(resolveNow(s))
		if err != nil {
			return d.Errf("authgate: %s: %q is not a whole number", directive, s)
		}
		*dst = v
		return nil
	}
	limit := func(dst **Limit) error {
		if err := want(2); err != nil {
			return err
		}
		l := new(Limit)
		if err := num(&l.Max, args[0]); err != nil {
			return err
		}
		*dst = l
		return dur(&l.Window, args[1])
	}

	switch directive {
	case "postgres":
		return str(&a.Postgres)
	case "schema":
		return str(&a.Schema)
	case "redis":
		return str(&a.Redis)
	case "redis_sentinel":
		if len(args) < 2 {
			return d.Errf("authgate: redis_sentinel: needs a master name and at least one sentinel address")
		}
		a.RedisSentinel = &Sentinel{Master: args[0], Addrs: args[1:]}
	case "redis_cluster":
		if len(args) < 1 {
			return d.Errf("authgate: redis_cluster: needs at least one address")
		}
		a.RedisCluster = args
	case "redis_prefix":
		return str(&a.RedisPrefix)
	case "mail_dir":
		return str(&a.MailDir)
	case "smtp":
		return str(&a.SMTP)
	case "mail_from":
		return str(&a.MailFrom)
	case "registration":
		return str(&a.Registration)
	case "mfa":
		return str(&a.MFA)
	case "session_ttl", "session_idle", "otp_ttl":
		if err := want(1); err != nil {
			return err
		}
		dst := map[string]*caddy.Duration{"session_ttl": &a.SessionTTL, "session_idle": &a.SessionIdle, "otp_ttl": &a.OTPTTL}[directive]
		return dur(dst, args[0])
	case "max_sessions", "hash_concurrency":
		if err := want(1); err != nil {
			return err
		}
		dst := map[string]*int{"max_sessions": &a.MaxSessions, "hash_concurrency": &a.HashConcurrency}[directive]
		return num(dst, args[0])
	case "postgres_max_conns", "postgres_idle_conns":
		if err := want(1); err != nil {
			return err
		}
		dst := map[string]*int{"postgres_max_conns": &a.PostgresMaxConns, "postgres_idle_conns": &a.PostgresIdleConns}[directive]
		if err := num(dst, args[0]); err != nil {
			return err
		}
		// In the JSON, 0 is the default: written here, it is a mistake
		// (no pool, or no idle connection) that must not pass as one.
		if *dst < 1 {
			return d.Errf("authgate: %s: %d: must be at least 1", directive, *dst)
		}
	case "postgres_conn_lifetime":
		if err := want(1); err != nil {
			return err
		}
		if err := dur(&a.PostgresConnLifetime, args[0]); err != nil {
			return err
		}
		if a.PostgresConnLifetime < caddy.Duration(time.Minute) {
			return d.Errf("authgate: %s: %s: must be at least 1m", directive, time.Duration(a.PostgresConnLifetime))
		}
	case "cookie_name":
		return str(&a.CookieName)
	case "cookie_domain":
		return str(&a.CookieDomain)
	case "reset_url":
		return str(&a.ResetURL)
	case "argon2":
		if err := want(3); err != nil {
			return err
		}
		var m, t, p int
		for i, dst := range []*int{&m, &t, &p} {
			if err := num(dst, args[i]); err != nil {
				return err
			}
			if *dst < 0 || *dst > 1<<31 {
				return d.Errf("authgate: argon2: %q is out of range", args[i])
			}
		}
		if p > 255 {
			return d.Errf("authgate: argon2: parallelism %d is above 255", p)
		}
		a.Argon2 = &Argon2{MemoryKiB: uint32(m), Iterations: uint32(t), Parallelism: uint8(p)}
	case "session_cache":
		if err := want(1); err != nil {
			return err
		}
		size := 0
		if args[0] != "off" {
			if err := num(&size, args[0]); err != nil {
				return err
			}
		}
		a.SessionCache = &size
	case "password_min_score":
		if err := want(1); err != nil {
			return err
		}
		a.PasswordMinScore = new(int)
		return num(a.PasswordMinScore, args[0])
	case "throttle_user":
		return limit(&a.ThrottleUser)
	case "throttle_ip":
		return limit(&a.ThrottleIP)
	case "throttle_codes":
		return limit(&a.ThrottleCodes)
	default:
		return d.Errf("authgate: unknown directive %q", directive)
	}
	return nil
}

// resolveNow fills in {env.*} in a number or duration at adapt time: the
// JSON config holds those as numbers, so they cannot wait for run time.
func resolveNow(s string) string {
	return caddy.NewReplacer().ReplaceKnown(s, "")
}

// parseHandler reads the site directive:
//
//	authgate {
//		prefix      /auth
//		account_api /api/user
//		users_api   /api
//		public      /healthz /assets/*
//		title       "Example Corp"
//		origin      https://app.example.com
//	}
//
// origin defaults to the site's own address (siteOrigin).
func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	keys, keysErr := siteKeys(h)
	if handler.Origin == "" {
		handler.Origin = siteOrigin(keys, h.Option("http_port"), h.Option("https_port"))
	}
	if err := handler.Validate(); err != nil {
		return nil, err
	}
	if err := handler.needOrigin(globalResetURL(h)); err != nil {
		if keysErr != nil {
			err = fmt.Errorf("%w (%v)", err, keysErr)
		}
		return nil, h.Err(err.Error())
	}
	return handler, nil
}

// globalResetURL is reset_url as the global option sets it ("" for the
// default), so that a site that cannot use it fails at adapt already.
func globalResetURL(h httpcaddyfile.Helper) string {
	opt, ok := h.Option("authgate").(httpcaddyfile.App)
	if !ok {
		return ""
	}
	var app App
	if err := json.Unmarshal(opt.Value, &app); err != nil {
		return ""
	}
	return app.ResetURL
}

var errSiteKeys = errors.New("this Caddy version hides the site's addresses from plugins; see siteKeys")

// siteKeys returns the addresses of the site block whose directive is being
// parsed. Caddy's Helper holds that block (parentBlock) but keeps it
// unexported and has no accessor for its keys, so they are read here through
// reflection, read-only and without unsafe. TestSiteOriginFromAddress fails
// if a Caddy upgrade (xcaddy.json pins the version) renames or reshapes the
// field; until it is fixed, such a build refuses a site that needs the
// origin, rather than guessing one.
func siteKeys(h httpcaddyfile.Helper) ([]string, error) {
	block := reflect.ValueOf(h).FieldByName("parentBlock")
	if !block.IsValid() || block.Type() != reflect.TypeFor[caddyfile.ServerBlock]() {
		return nil, errSiteKeys
	}
	keys := block.FieldByName("Keys") // []caddyfile.Token, by the type check
	out := make([]string, 0, keys.Len())
	for i := range keys.Len() {
		out = append(out, keys.Index(i).FieldByName("Text").String())
	}
	return out, nil
}

// siteOrigin makes the site's public origin from its addresses: the first
// with a real host name (not just a port, not a wildcard, no placeholder).
// Its scheme is the one Caddy serves it with: http when the address says
// http:// or names the HTTP port, else https (automatic HTTPS, also for
// localhost). A port other than the scheme's default is kept; an address
// without one gets Caddy's http_port or https_port.
func siteOrigin(keys []string, httpPortOpt, httpsPortOpt any) string {
	httpPort, httpsPort := strconv.Itoa(caddyhttp.DefaultHTTPPort), strconv.Itoa(caddyhttp.DefaultHTTPSPort)
	if p, ok := httpPortOpt.(int); ok {
		httpPort = strconv.Itoa(p)
	}
	if p, ok := httpsPortOpt.(int); ok {
		httpsPort = strconv.Itoa(p)
	}
	for _, key := range keys {
		if strings.ContainsAny(key, "{}") {
			continue
		}
		addr, err := httpcaddyfile.ParseAddress(key)
		if err != nil || addr.Host == "" || strings.Contains(addr.Host, "*") ||
			(addr.Scheme != "" && addr.Scheme != "http" && addr.Scheme != "https") {
			continue
		}
		scheme, port := "https", addr.Port
		if addr.Scheme == "http" || (addr.Scheme == "" && port == httpPort) {
			scheme = "http"
		}
		if port == "" {
			port = map[string]string{"http": httpPort, "https": httpsPort}[scheme]
		}
		host := strings.ToLower(addr.Host)
		if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
			return scheme + "://" + host
		}
		return scheme + "://" + net.JoinHostPort(host, port)
	}
	return ""
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		directive := d.Val()
		args := d.RemainingArgs()
		switch directive {
		case "prefix", "account_api", "users_api", "title", "origin":
			if len(args) != 1 {
				return d.Errf("authgate: %s: takes one argument", directive)
			}
			*map[string]*string{"prefix": &h.Prefix, "account_api": &h.AccountAPI, "users_api": &h.UsersAPI,
				"title": &h.Title, "origin": &h.Origin}[directive] = args[0]
		case "public":
			if len(args) == 0 {
				return d.Errf("authgate: public: takes one or more path patterns")
			}
			h.Public = append(h.Public, args...)
		default:
			return d.Errf("authgate: unknown directive %q", directive)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
