package main

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Every Caddy of the bench listens on loopback only (default_bind), speaks
// plain HTTP (auto_https off: no certificates in the measurement) and has
// its own admin endpoint, which also serves /debug/pprof for profiling.
func globals(admin int, extra string) string {
	return fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tdefault_bind 127.0.0.1\n\tauto_https off\n%s}\n", admin, extra)
}

// authgateGlobal is the authgate global option of the bench. The throttles
// are set out of reach so that the login flood measures hashing, not the
// throttle's 429s. redis is the directive naming the sessions' Redis
// (redis <url>, or redis_cluster <addr>...). extra holds more directives
// (-authgate flag), e.g. to compare a setting.
func authgateGlobal(postgres, redis, extra string) string {
	return authgateOption(postgres, redis, "bench", "throttle_user 1000000 1m; throttle_ip 1000000 1m", extra)
}

// authgateOption is an authgate global option with its stores, its key
// prefix, and more directives, each argument holding ';'-separated ones.
func authgateOption(postgres, redis, prefix string, directives ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\tauthgate {\n\t\tpostgres %s\n\t\t%s\n\t\tredis_prefix %s\n", postgres, redis, prefix)
	for _, d := range directives {
		for line := range strings.SplitSeq(d, ";") {
			if line = strings.TrimSpace(line); line != "" {
				fmt.Fprintf(&b, "\t\t%s\n", line)
			}
		}
	}
	b.WriteString("\t}\n")
	return b.String()
}

// upstreamCaddyfile is the app behind every variant: a Caddy respond site,
// as cheap as an upstream gets, in its own process so that every variant
// (both binaries) proxies to the very same thing.
func upstreamCaddyfile(admin, port int) string {
	return globals(admin, "") + fmt.Sprintf("\nhttp://:%d {\n\trespond \"ok\" 200\n}\n", port)
}

// ports of the main authgate Caddy: one site per variant, all in one
// process, so plain and gated requests meet the same process and binary.
type mainPorts struct {
	Admin, Plain, Gate, ForwardAuth, AuthEndpoint, Upstream int
}

// mainCaddyfile has the plain, gate and forward_auth variants, and the
// auth endpoint forward_auth asks: authgate's own users/info on a second
// site, so forward_auth pays what Authelia-style gateways pay, one more
// HTTP hop per request (Caddy passes the request's headers, the Cookie
// included, on to the auth endpoint). The auth endpoint's site also serves
// the REST dialect at /api/user, for the accounts part (with the origin
// its recovery mails need).
func mainCaddyfile(p mainPorts, authgate string) string {
	up := fmt.Sprintf("127.0.0.1:%d", p.Upstream)
	return globals(p.Admin, authgate) + fmt.Sprintf(`
http://:%d {
	reverse_proxy %s
}

http://:%d {
	authgate
	reverse_proxy %s
}

http://:%d {
	forward_auth 127.0.0.1:%d {
		uri /auth/users/info
	}
	reverse_proxy %s
}

http://:%d {
	authgate {
		account_api /api/user
		origin http://127.0.0.1:%d
	}
	respond 404
}
`, p.Plain, up, p.Gate, up, p.ForwardAuth, p.AuthEndpoint, up, p.AuthEndpoint, p.AuthEndpoint)
}

// pairCaddyfile is a Caddy with a plain and a gate site, for a comparison
// of the two in a process of its own (the Redis Cluster part).
func pairCaddyfile(admin, plain, gate, upstream int, authgate string) string {
	up := fmt.Sprintf("127.0.0.1:%d", upstream)
	return globals(admin, authgate) + fmt.Sprintf(`
http://:%d {
	reverse_proxy %s
}

http://:%d {
	authgate
	reverse_proxy %s
}
`, plain, up, gate, up)
}

// gateCaddyfile is a Caddy with the gate site only: the scale variants and
// the memory measurement each get a fresh one.
func gateCaddyfile(admin, gate, upstream int, authgate string) string {
	return globals(admin, authgate) + fmt.Sprintf(`
http://:%d {
	authgate
	reverse_proxy 127.0.0.1:%d
}
`, gate, upstream)
}

// securityCaddyfile protects the upstream with caddy-security's authorize
// directive: every request's JWT cookie (access_token) is verified with a
// shared HMAC key and its roles checked against the policy. The user
// identity goes upstream in headers, as the gate's does.
func securityCaddyfile(admin, port, upstream int, key string) string {
	return globals(admin, fmt.Sprintf(`	security {
		authorization policy bench {
			crypto key verify %s
			allow roles authp/user
			inject header "Remote-User" from sub
			inject header "Remote-Email" from email
		}
	}
`, key)) + fmt.Sprintf(`
http://:%d {
	authorize with bench
	reverse_proxy 127.0.0.1:%d
}
`, port, upstream)
}

// securityToken returns a JWT (HS512, the first method caddy-security
// accepts for a shared key) for a user with the role the policy allows,
// valid for ttl. caddy-security's portal would issue the same kind of token
// at login; the bench skips the portal, which is not what is measured.
func securityToken(key string, now time.Time, ttl time.Duration) string {
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"alg": "HS512", "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{
		"sub":   "benchuser",
		"email": "bench@example.com",
		"name":  "Bench User",
		"roles": []string{"authp/user"},
		"iss":   "authgate-bench",
		"jti":   "bench-token",
		"iat":   now.Unix(),
		"exp":   now.Add(ttl).Unix(),
	})
	signed := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha512.New, []byte(key))
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil))
}
