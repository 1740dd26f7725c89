package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/caddymodule/gatepath/gatepathtest"
)

// pleaseLogin is the gate's whole answer to a request without a session.
const pleaseLogin = `{"data":{"message":"PLEASE_LOGIN"},"success":false}` + "\n"

// exchange is one request sent as raw bytes and its answer, with the
// model upstream's report when the request reached it.
type exchange struct {
	status int
	body   string
	report *gatepathtest.Report // nil: the upstream did not answer
}

// send writes request as it is on a new connection (Go's client would
// clean the path) and reads the answer. request is the request line and
// headers without the final empty line; body, if any, follows it as is.
func (g *gate) send(request, body string) exchange {
	g.t.Helper()
	host := strings.TrimPrefix(g.base, "http://")
	conn, err := net.DialTimeout("tcp", host, 10*time.Second)
	if err != nil {
		g.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	line, headers, _ := strings.Cut(request, "\n")
	msg := line + "\r\nHost: " + host + "\r\nConnection: close\r\n"
	if headers != "" {
		msg += strings.ReplaceAll(headers, "\n", "\r\n") + "\r\n"
	}
	msg += "\r\n" + body
	if _, err := io.WriteString(conn, msg); err != nil {
		g.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		g.t.Fatalf("reading the answer to %q: %v", request, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatalf("reading the answer to %q: %v", request, err)
	}
	x := exchange{status: resp.StatusCode, body: string(raw)}
	if resp.Header.Get(gatepathtest.ModelHeader) != "" {
		x.report = new(gatepathtest.Report)
		if err := json.Unmarshal(raw, x.report); err != nil {
			g.t.Fatalf("the upstream's report on %q: %v\n%s", request, err, raw)
		}
	}
	return x
}

// startModelGate starts the gate with public /healthz /assets/* and the
// users dialect at /api (users_api) in front of model m, and returns it
// with the session token of a user "hostile".
func startModelGate(t *testing.T, m gatepathtest.Model) (*gate, string) {
	g := startGate(t, withUpstream(gatepathtest.Handler(m)),
		withSite("public "+strings.Join(gatepathtest.PublicPatterns, " ")), withUsersAPI(gatepathtest.UsersMount))
	g.register("hostile", "hostile-password", "hostile@example.com")
	return g, g.login("hostile", "hostile-password")
}

// Every hostile path, against every model upstream, through the real
// binary: without a session a request reaches the upstream only when the
// upstream takes the path for a public one; with a session it always does;
// and the upstream receives exactly the path the gate judged.
func TestHostilePaths(t *testing.T) {
	for _, m := range gatepathtest.Models() {
		t.Run(m.Name, func(t *testing.T) {
			g, ssid := startModelGate(t, m)
			for _, tc := range gatepathtest.Hostile {
				u, ok := gatepathtest.Forwarded(tc.Target)
				// Go refuses some targets before any handler runs.
				if !ok {
					for _, cookie := range []string{"", "\nCookie: authgate_session=" + ssid} {
						x := g.send("GET "+tc.Target+" HTTP/1.1\nAccept: application/json"+cookie, "")
						if x.status != 400 || x.report != nil {
							t.Errorf("%q: %d %s, want Go's 400", tc.Target, x.status, x.body)
						}
					}
					continue
				}
				// What the gate judged and forwards: the target itself,
				// unless Go escaped a byte of it (it then judges the
				// escaped form, and forwards that).
				want := u.RequestURI()

				x := g.send("GET "+tc.Target+" HTTP/1.1\nAccept: application/json\nRemote-User: admin", "")
				switch {
				case x.report != nil && !x.report.Public:
					t.Errorf("%q without a session reached %s's private route %s", tc.Target, m.Name, x.report.Route)
				case tc.Public && (x.status != 200 || x.report == nil):
					t.Errorf("%q is public, but: %d %s", tc.Target, x.status, x.body)
				case !tc.Public && (x.status != 401 || x.body != pleaseLogin || x.report != nil):
					t.Errorf("%q without a session: %d %s, want 401 %s", tc.Target, x.status, x.body, pleaseLogin)
				}
				if x.report != nil {
					if x.report.URI != want {
						t.Errorf("%q: the upstream received %q, want %q", tc.Target, x.report.URI, want)
					}
					if len(x.report.Header["Remote-User"]) != 0 {
						t.Errorf("%q: the upstream received Remote-User %q", tc.Target, x.report.Header["Remote-User"])
					}
				}

				x = g.send("GET "+tc.Target+" HTTP/1.1\nAccept: application/json\nCookie: authgate_session="+ssid, "")
				if x.status != 200 || x.report == nil {
					t.Errorf("%q with a session: %d %s", tc.Target, x.status, x.body)
					continue
				}
				// A public path is passed on without looking the session up.
				user := []string{"hostile"}
				if tc.Public {
					user = nil
				}
				if x.report.URI != want || !slices.Equal(x.report.Header["Remote-User"], user) || len(x.report.Header["Cookie"]) != 0 {
					t.Errorf("%q with a session: the upstream received %q as %q with cookies %q, want %q as %q without cookies",
						tc.Target, x.report.URI, x.report.Header["Remote-User"], x.report.Header["Cookie"], want, user)
				}
			}
			hostileMount(t, g, ssid)
		})
	}
}

// hostileMount sends every target of gatepathtest.UsersMountCases: the gate
// answers a target itself (as the users dialect) exactly when the case says
// so, and then every upstream reads it inside the mount; any other reaches
// the upstream only with a session, as the client sent it.
func hostileMount(t *testing.T, g *gate, ssid string) {
	for _, tc := range gatepathtest.UsersMountCases {
		u, ok := gatepathtest.Forwarded(tc.Target)
		if !ok {
			t.Errorf("%q: Go refuses it", tc.Target)
			continue
		}
		want := u.RequestURI()
		for _, cookie := range []string{"", "\nCookie: authgate_session=" + ssid} {
			x := g.send("GET "+tc.Target+" HTTP/1.1\nAccept: application/json"+cookie, "")
			answered := x.report == nil && !(x.status == 401 && x.body == pleaseLogin)
			switch {
			case answered != tc.Ours:
				t.Errorf("%q (session %v): %d %s, answered by the gate: %v, want %v", tc.Target, cookie != "", x.status, x.body, answered, tc.Ours)
			case tc.Ours:
				for _, p := range gatepathtest.Readings(tc.Target) {
					if !gatepathtest.InUsersMount(p) {
						t.Errorf("%q: answered by the gate, but an upstream reads %q", tc.Target, p)
					}
				}
			case cookie == "" && x.report != nil:
				t.Errorf("%q without a session reached the upstream as %q", tc.Target, x.report.URI)
			case cookie != "" && (x.report == nil || x.report.URI != want || !slices.Equal(x.report.Header["Remote-User"], []string{"hostile"})):
				t.Errorf("%q with a session: %d %s, want the upstream to receive %q as hostile", tc.Target, x.status, x.body, want)
			}
		}
	}
}

// The upstream never gets the session token, a forged identity, or
// identity trailers, however the client spells them.
func TestUpstreamGetsNoTokenNorForgedIdentity(t *testing.T) {
	g, ssid := startModelGate(t, gatepathtest.ServeMux())
	other := g.login("hostile", "hostile-password") // a second, valid session

	// expect checks that the request reached the upstream as the user (or
	// anonymously, with user ""), and returns what the upstream received.
	expect := func(x exchange, user string) *gatepathtest.Report {
		t.Helper()
		if x.status != 200 || x.report == nil {
			t.Fatalf("%d %s, want the upstream's 200", x.status, x.body)
		}
		h := x.report.Header
		var want []string
		if user != "" {
			want = []string{user}
		}
		if !slices.Equal(h["Remote-User"], want) {
			t.Errorf("Remote-User %q, want %q", h["Remote-User"], want)
		}
		for name, vals := range h {
			if name != "Remote-User" && name != "Remote-Email" && name != "Remote-User-Id" && name != "Remote-Auth-Methods" &&
				strings.HasPrefix(strings.ToLower(strings.ReplaceAll(name, "_", "-")), "remote-") {
				t.Errorf("the upstream received %s: %q", name, vals)
			}
			for _, v := range vals {
				if strings.Contains(v, ssid) || strings.Contains(v, other) {
					t.Errorf("the upstream received a session token in %s: %q", name, v)
				}
			}
		}
		if user == "" && (len(h["Remote-Email"]) != 0 || len(h["Remote-User-Id"]) != 0 || len(h["Remote-Auth-Methods"]) != 0) {
			t.Errorf("anonymous request with identity: %q %q %q", h["Remote-Email"], h["Remote-User-Id"], h["Remote-Auth-Methods"])
		}
		// The sessions here are password logins.
		if user != "" && !slices.Equal(h["Remote-Auth-Methods"], []string{"pwd"}) {
			t.Errorf("Remote-Auth-Methods %q, want pwd", h["Remote-Auth-Methods"])
		}
		if user != "" && !slices.Equal(h["Remote-Email"], []string{"hostile@example.com"}) {
			t.Errorf("Remote-Email %q", h["Remote-Email"])
		}
		return x.report
	}

	t.Run("bearer and cookie", func(t *testing.T) {
		r := expect(g.send("GET /secret/data HTTP/1.1\nAuthorization: Bearer "+ssid+"\nCookie: theme=dark; authgate_session="+ssid, ""), "hostile")
		if len(r.Header["Authorization"]) != 0 || !slices.Equal(r.Header["Cookie"], []string{"theme=dark"}) {
			t.Errorf("the upstream received Authorization %q, Cookie %q", r.Header["Authorization"], r.Header["Cookie"])
		}
	})
	t.Run("every copy of the cookie", func(t *testing.T) {
		r := expect(g.send("GET /secret/data HTTP/1.1"+
			"\nCookie: a=1; authgate_session="+ssid+"; authgate.session="+other+
			"\nCookie: authgate_session="+other+"; b=2; authgate%5Fsession="+ssid+"; AUTHGATE_SESSION="+ssid+"; authgate_session[x]="+ssid+"; authgate session="+other, ""), "hostile")
		if !slices.Equal(r.Header["Cookie"], []string{"a=1", "b=2"}) {
			t.Errorf("the upstream received Cookie %q, want a=1 and b=2", r.Header["Cookie"])
		}
	})
	t.Run("cookie only, with the app's own Authorization", func(t *testing.T) {
		r := expect(g.send("GET /secret/data HTTP/1.1\nAuthorization: Bearer app.jwt.token\nCookie: authgate_session="+ssid, ""), "hostile")
		if !slices.Equal(r.Header["Authorization"], []string{"Bearer app.jwt.token"}) || len(r.Header["Cookie"]) != 0 {
			t.Errorf("the upstream received Authorization %q, Cookie %q", r.Header["Authorization"], r.Header["Cookie"])
		}
	})
	t.Run("bearer only, with Basic and the app's cookies", func(t *testing.T) {
		r := expect(g.send("GET /secret/data HTTP/1.1\nAuthorization: Basic dXNlcjpwYXNz\nAuthorization: bearer "+ssid+"\nCookie: theme=dark", ""), "hostile")
		if !slices.Equal(r.Header["Authorization"], []string{"Basic dXNlcjpwYXNz"}) || !slices.Equal(r.Header["Cookie"], []string{"theme=dark"}) {
			t.Errorf("the upstream received Authorization %q, Cookie %q", r.Header["Authorization"], r.Header["Cookie"])
		}
	})
	t.Run("public path", func(t *testing.T) {
		r := expect(g.send("GET /healthz HTTP/1.1\nAuthorization: Bearer "+ssid+"\nCookie: authgate_session="+other+"; theme=dark\nRemote-User: admin", ""), "")
		if len(r.Header["Authorization"]) != 0 || !slices.Equal(r.Header["Cookie"], []string{"theme=dark"}) || r.Route != "healthz" {
			t.Errorf("the upstream received Authorization %q, Cookie %q on %s", r.Header["Authorization"], r.Header["Cookie"], r.Route)
		}
	})
	// The seed client's session: Basic userhash:ssid (the gate has
	// users_api), and its own cookies holding the same.
	seedBasic := func(token string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(token[:32]+":"+token))
	}
	t.Run("the seed client's Basic and cookies", func(t *testing.T) {
		r := expect(g.send("GET /api/things HTTP/1.1\nAuthorization: "+seedBasic(ssid)+
			"\nCookie: userhash="+ssid[:32]+"; ssid="+ssid+"; theme=dark", ""), "hostile")
		if len(r.Header["Authorization"]) != 0 || !slices.Equal(r.Header["Cookie"], []string{"userhash=" + ssid[:32] + "; theme=dark"}) {
			t.Errorf("the upstream received Authorization %q, Cookie %q", r.Header["Authorization"], r.Header["Cookie"])
		}
	})
	t.Run("Basic spelt otherwise, beside the cookie", func(t *testing.T) {
		odd := "basic  " + base64.RawURLEncoding.EncodeToString([]byte(other[:32]+":"+other))
		r := expect(g.send("GET /secret/data HTTP/1.1\nAuthorization: "+odd+"\nAuthorization: Basic dXNlcjpwYXNz\nCookie: authgate_session="+ssid, ""), "hostile")
		if !slices.Equal(r.Header["Authorization"], []string{"Basic dXNlcjpwYXNz"}) || len(r.Header["Cookie"]) != 0 {
			t.Errorf("the upstream received Authorization %q, Cookie %q", r.Header["Authorization"], r.Header["Cookie"])
		}
	})
	forged := "\nRemote-User: admin\nRemote_User: admin\nREMOTE-USER: admin\nremote_email: admin@example.com\nRemote-User-ID: 999\nRemote_User_Id: 999\nREMOTE_EMAIL: admin@example.com" +
		"\nRemote-Auth-Methods: pwd,otp,hwk\nremote_auth_methods: hwk"
	t.Run("identity spellings", func(t *testing.T) {
		r := expect(g.send("GET /secret/data HTTP/1.1\nCookie: authgate_session="+ssid+forged, ""), "hostile")
		if len(r.Header["Remote-User-Id"]) != 1 || r.Header["Remote-User-Id"][0] == "999" {
			t.Errorf("Remote-User-Id %q", r.Header["Remote-User-Id"])
		}
		expect(g.send("GET /assets/app.css HTTP/1.1"+forged, ""), "")
	})
	t.Run("identity without a session", func(t *testing.T) {
		x := g.send("GET /secret/data HTTP/1.1\nAccept: application/json"+forged, "")
		if x.status != 401 || x.body != pleaseLogin || x.report != nil {
			t.Errorf("%d %s, want 401 %s", x.status, x.body, pleaseLogin)
		}
	})

	// A chunked body ends with trailers, which net/http files in the
	// request's Trailer map, declared or not, and reverse_proxy forwards.
	chunked := "5\r\nhello\r\n6\r\n world\r\n0\r\n" +
		"X-Checksum: abc\r\nRemote-User: admin\r\nRemote_User: admin\r\nremote-email: admin@example.com\r\n" +
		"Remote-User-Id: 999\r\nRemote-Auth-Methods: pwd,otp\r\nCookie: authgate_session=" + other + "\r\n\r\n"
	trailers := func(t *testing.T, r *gatepathtest.Report) {
		t.Helper()
		if r.Body != "hello world" {
			t.Errorf("the upstream received the body %q", r.Body)
		}
		if len(r.Trailer) != 1 || !slices.Equal(r.Trailer["X-Checksum"], []string{"abc"}) {
			t.Errorf("the upstream received the trailers %q, want X-Checksum: abc alone", r.Trailer)
		}
	}
	t.Run("trailers", func(t *testing.T) {
		r := expect(g.send("POST /secret/data HTTP/1.1\nCookie: authgate_session="+ssid+
			"\nTransfer-Encoding: chunked\nTrailer: X-Checksum, Remote-User, Remote-User-Id", chunked), "hostile")
		trailers(t, r)
		if len(r.Header["Remote-User-Id"]) != 1 || r.Header["Remote-User-Id"][0] == "999" {
			t.Errorf("Remote-User-Id %q", r.Header["Remote-User-Id"])
		}
	})
	t.Run("undeclared trailers", func(t *testing.T) {
		r := expect(g.send("POST /secret/data HTTP/1.1\nAuthorization: Bearer "+ssid+
			"\nTransfer-Encoding: chunked\nTrailer: X-Checksum", chunked), "hostile")
		trailers(t, r)
	})
	t.Run("trailers on a public path", func(t *testing.T) {
		r := expect(g.send("POST /assets/upload HTTP/1.1\nTransfer-Encoding: chunked\nTrailer: X-Checksum, Remote-User", chunked), "")
		trailers(t, r)
	})
}
