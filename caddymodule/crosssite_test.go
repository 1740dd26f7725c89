package caddymodule

import (
	"os"
	"strings"
	"testing"
)

// A browser sends a GET requestotp of any page's making (an <img>, a link),
// and the code mail lands in the victim's inbox. Those from another site are
// refused; the seed front-end's own calls still work.
func TestRequestOTPByGETRefusedCrossSite(t *testing.T) {
	e := newEnv(t, options{})
	e.register("gina", "gina-password", "gina@example.com")
	const path = "/auth/users/requestotp?username=gina"
	noMail := func(when string) {
		t.Helper()
		if entries, _ := os.ReadDir(e.mailDir); len(entries) != 0 {
			t.Fatalf("%s: %d mails sent", when, len(entries))
		}
		if keys := e.rdb.Keys(t.Context(), e.prefix+":*:otp").Val(); len(keys) != 0 {
			t.Fatalf("%s: OTP keys %v in redis", when, keys)
		}
	}
	for _, tc := range []struct {
		name   string
		header []string
	}{
		{"cross-site fetch", []string{"Sec-Fetch-Site", "cross-site"}},
		{"cross-site image", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Dest", "image"}},
		{"same-site sibling", []string{"Sec-Fetch-Site", "same-site"}},
		{"foreign Origin", []string{"Origin", "https://evil.example"}},
		{"foreign Referer", []string{"Referer", "https://evil.example/page"}},
		{"opaque Origin", []string{"Origin", "null"}},
		{"cross-site with own Origin", []string{"Sec-Fetch-Site", "cross-site", "Origin", e.base}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{"GET", "HEAD"} {
				r := e.do(nil, method, path, nil, tc.header...)
				if method == "GET" {
					e.expect(r, 403, false, "CROSS_SITE_REQUEST")
				} else if r.status != 403 {
					t.Fatalf("HEAD: %d", r.status)
				}
			}
			noMail(tc.name)
		})
	}
	// The mail throttle is not spent by refused requests either.
	if keys := e.rdb.Keys(t.Context(), e.prefix+":throttle:mail:*").Val(); len(keys) != 0 {
		t.Fatalf("throttle keys %v after refused requests", keys)
	}

	mails := 0
	for _, tc := range []struct {
		name   string
		header []string
	}{
		{"same-origin fetch", []string{"Sec-Fetch-Site", "same-origin", "Origin", e.base}},
		{"same-origin, no Origin", []string{"Sec-Fetch-Site", "same-origin", "Referer", e.base + "/reset"}},
		{"typed in the address bar", []string{"Sec-Fetch-Site", "none"}},
		{"no browser", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(nil, "GET", path, nil, tc.header...)
			e.expect(r, 200, true, "")
			if !hex32.MatchString(r.str("reqid")) {
				t.Fatalf("reqid %q", r.str("reqid"))
			}
			mails++
			if entries, _ := os.ReadDir(e.mailDir); len(entries) != mails {
				t.Fatalf("%d mails, want %d", len(entries), mails)
			}
			if keys := e.rdb.Keys(t.Context(), e.prefix+":*:otp").Val(); len(keys) != 1 {
				t.Fatalf("OTP keys %v", keys)
			}
		})
	}
}

// Every state-changing request of every front door is refused when the
// browser says it comes from another site, whatever Origin it carries.
func TestSecFetchSiteRefusesCrossSitePosts(t *testing.T) {
	e := newEnv(t, options{site: "account_api /api/user"})
	e.register("hugo", "hugo-password", "hugo@example.com")
	form := "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, method, path, body, contentType string
		status                                int
		text                                  string
	}{
		{"users login", "POST", "/auth/users/login", `{"username":"hugo","password":"hugo-password"}`, "text/plain", 403, `"CROSS_SITE_REQUEST"`},
		{"users requestotp", "POST", "/auth/users/requestotp", `{"username":"hugo"}`, "text/plain", 403, `"CROSS_SITE_REQUEST"`},
		{"REST login", "POST", "/api/user/account", "", "", 403, "Cross-site request refused"},
		{"REST recovery", "POST", "/api/user/password/hugo", `{"uid_type":"username"}`, "text/plain", 403, "Cross-site request refused"},
		{"login page", "POST", "/auth/login", formBody("username", "hugo", "password", "hugo-password"), form, 403, "sent from another site"},
		{"reset page", "POST", "/auth/reset", formBody("step", "request", "username", "hugo"), form, 403, "sent from another site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, site := range []string{"cross-site", "same-site"} {
				// As a browser sends it: the login page answers pages
				// only to requests that accept HTML.
				header := []string{"Sec-Fetch-Site", site, "Origin", e.base, "Authorization", basic("hugo", "hugo-password"), "Accept", "text/html"}
				if tc.contentType != "" {
					header = append(header, "Content-Type", tc.contentType)
				}
				r := e.do(nil, tc.method, tc.path, tc.body, header...)
				if r.status != tc.status || !strings.Contains(string(r.body), tc.text) || r.header.Get("Set-Cookie") != "" {
					t.Fatalf("%s: %d %s (Set-Cookie %q)", site, r.status, r.body, r.header.Get("Set-Cookie"))
				}
			}
		})
	}
	if entries, _ := os.ReadDir(e.mailDir); len(entries) != 0 {
		t.Fatalf("%d mails sent", len(entries))
	}
	if stored := e.storedSessions(); len(stored) != 0 {
		t.Fatalf("sessions %v started", stored)
	}
	// The same requests from the site itself go through.
	r := e.do(nil, "POST", "/auth/users/login", `{"username":"hugo","password":"hugo-password"}`,
		"Sec-Fetch-Site", "same-origin", "Origin", e.base, "Content-Type", "text/plain")
	e.expect(r, 200, "true", "")
}
