package caddymodule

import (
	"slices"
	"strings"
	"testing"
)

// The session cookie is Secure when the client reached the site over
// HTTPS: here through a TLS-terminating proxy on 127.0.0.1 that says so in
// X-Forwarded-Proto, which counts only when Caddy trusts that proxy.
func TestSecureCookieBehindTrustedProxy(t *testing.T) {
	for _, tc := range []struct {
		name, caddy string
		trusted     bool
	}{
		{"proxy trusted", "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", true},
		{"no trusted proxies", "", false},
		{"another proxy trusted", "servers {\n\t\ttrusted_proxies static 10.0.0.0/8\n\t}", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, options{caddy: tc.caddy, site: "account_api /api/user"})
			e.register("iris", "iris-password", "")
			sessions := 0
			for _, door := range []struct {
				name, method, path string
				body               any
				header             []string
				status             int
			}{
				{"users API", "POST", "/auth/users/login", map[string]any{"username": "iris", "password": "iris-password"}, nil, 200},
				{"REST dialect", "POST", "/api/user/account", nil, []string{"Authorization", basic("iris", "iris-password")}, 200},
				{"login page", "POST", "/auth/login", formBody("username", "iris", "password", "iris-password"),
					[]string{"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html"}, 303},
			} {
				for _, proto := range []struct {
					name   string
					header []string
					secure bool
				}{
					{"plain http", nil, false},
					{"forwarded https", []string{"X-Forwarded-Proto", "https"}, tc.trusted},
					{"forwarded HTTPS", []string{"X-Forwarded-Proto", "HTTPS"}, tc.trusted},
					{"forwarded http", []string{"X-Forwarded-Proto", "http"}, false},
					{"client's https before proxy's http", []string{"X-Forwarded-Proto", "https, http"}, false},
				} {
					if door.name != "users API" && proto.name != "forwarded https" {
						continue // one front door tries every case: they share web.Cookie
					}
					t.Run(door.name+", "+proto.name, func(t *testing.T) {
						r := e.in(t).do(nil, door.method, door.path, door.body, append(slices.Clone(door.header), proto.header...)...)
						cookie := r.header.Get("Set-Cookie")
						if r.status != door.status || !strings.HasPrefix(cookie, "authgate_session=") {
							t.Fatalf("%d %s, Set-Cookie %q", r.status, r.body, cookie)
						}
						sessions++
						if secure := strings.Contains(cookie, "; Secure"); secure != proto.secure {
							t.Errorf("Secure is %v, want %v (%s)", secure, proto.secure, cookie)
						}
					})
				}
			}
			if n := e.sessionCount(); n != min(sessions, 10) {
				t.Fatalf("%d sessions in redis, want %d", n, min(sessions, 10))
			}
			// Clearing the cookie at logout follows the same rule.
			c := e.client()
			e.login(c, "iris", "iris-password")
			r := e.do(c, "POST", "/auth/users/logout", nil, "X-Forwarded-Proto", "https")
			e.expect(r, 200, true, "LOGOUT_OK")
			if cookie := r.header.Get("Set-Cookie"); !strings.Contains(cookie, "Max-Age=0") ||
				strings.Contains(cookie, "; Secure") != tc.trusted {
				t.Fatalf("logout Set-Cookie %q", cookie)
			}
		})
	}
}
