package caddymodule

import (
	"encoding/base64"
	"strings"
	"testing"
)

// The gate takes the seed client's Basic userhash:ssid as a session when
// users_api is set, and never passes a session token upstream: not in
// Basic credentials, nor as the value of the client's own cookies.
func TestGateSeedClientBasic(t *testing.T) {
	seedBasic := func(userhash, ssid string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(userhash+":"+ssid))
	}
	for _, usersAPI := range []string{"/api", ""} {
		name := "users_api " + usersAPI
		if usersAPI == "" {
			name = "no users_api"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, options{usersAPI: usersAPI})
			e.register("otto", "otto-password", "otto@example.com")
			login := e.login(nil, "otto", "otto-password")
			ssid, userhash := login.str("ssid"), login.str("userhash")
			own := "userhash=" + userhash + "; ssid=" + ssid + "; theme=dark"

			r := e.do(nil, "GET", "/api/things", nil, "Authorization", seedBasic(userhash, ssid), "Cookie", own, "Accept", "application/json")
			if usersAPI != "" {
				if r.status != 200 || r.json["user"] != "otto" || r.json["email"] != "otto@example.com" || r.json["user_id"] == "" ||
					r.json["authorization"] != "" || r.json["cookie"] != "userhash="+userhash+"; theme=dark" {
					t.Fatalf("Basic: %d %s", r.status, r.body)
				}
			} else {
				// Not a session without users_api, and not passed on.
				e.expect(r, 401, false, "PLEASE_LOGIN")
				r = e.do(nil, "GET", "/api/things", nil, "Authorization", seedBasic(userhash, ssid), "Cookie", own+"; authgate_session="+ssid)
				if r.status != 200 || r.json["user"] != "otto" || r.json["authorization"] != "" || r.json["cookie"] != "userhash="+userhash+"; theme=dark" {
					t.Fatalf("Basic beside the cookie: %d %s", r.status, r.body)
				}
			}

			// Another userhash, or a session that ended: no session, and
			// the token goes nowhere.
			other := seedBasic(strings.Repeat("0", 32), ssid)
			r = e.do(nil, "GET", "/api/things", nil, "Authorization", other, "Accept", "application/json")
			e.expect(r, 401, false, "PLEASE_LOGIN")
			r = e.do(nil, "GET", "/api/things", nil, "Authorization", other, "Cookie", "authgate_session="+ssid)
			if r.status != 200 || r.json["user"] != "otto" || r.json["authorization"] != "" {
				t.Fatalf("Basic of another userhash beside the cookie: %d %s", r.status, r.body)
			}

			// The app's own Basic credentials pass untouched, and are no
			// session.
			app := basic("app-user", "app-password")
			r = e.do(nil, "GET", "/api/things", nil, "Authorization", app, "Accept", "application/json")
			e.expect(r, 401, false, "PLEASE_LOGIN")
			r = e.do(nil, "GET", "/api/things", nil, "Authorization", app, "Cookie", "authgate_session="+ssid)
			if r.status != 200 || r.json["user"] != "otto" || r.json["authorization"] != app {
				t.Fatalf("the app's Basic: %d %s", r.status, r.body)
			}
			// On a public path the token goes too.
			r = e.do(nil, "GET", "/healthz", nil, "Authorization", seedBasic(userhash, ssid), "Cookie", own)
			if r.status != 200 || r.json["user"] != "" || r.json["authorization"] != "" || r.json["cookie"] != "userhash="+userhash+"; theme=dark" {
				t.Fatalf("public: %d %s", r.status, r.body)
			}

			r = e.do(nil, "POST", e.users+"/users/logout", nil, "Authorization", "Bearer "+ssid)
			e.expect(r, 200, true, "LOGOUT_OK")
			if n := e.sessionCount(); n != 0 {
				t.Fatalf("%d sessions after logout", n)
			}
			r = e.do(nil, "GET", "/api/things", nil, "Authorization", seedBasic(userhash, ssid), "Cookie", own, "Accept", "application/json")
			e.expect(r, 401, false, "PLEASE_LOGIN")
		})
	}
}
