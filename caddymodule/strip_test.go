package caddymodule

import (
	"encoding/base64"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/authgate/authgate/caddymodule/web"
)

func TestStripIdentity(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"canonical", http.Header{"Remote-User": {"admin"}, "Remote-Email": {"a@b"}, "Remote-User-Id": {"1"}, "Accept": {"*/*"}},
			http.Header{"Accept": {"*/*"}}},
		{"underscores", http.Header{"Remote_user": {"admin"}, "Remote_User_Id": {"1"}, "Remote-User_Id": {"1"}, "X-Remote-User": {"kept"}},
			http.Header{"X-Remote-User": {"kept"}}},
		{"case", http.Header{"REMOTE-USER": {"admin"}, "remote_email": {"a@b"}, "Remote-User-ID": {"1"}, "Remote-Users": {"kept"}},
			http.Header{"Remote-Users": {"kept"}}},
		{"auth methods", http.Header{"Remote-Auth-Methods": {"pwd,otp"}, "remote_auth_methods": {"hwk"}, "REMOTE-AUTH_METHODS": {"otp"}, "Remote-Auth-Method": {"kept"}},
			http.Header{"Remote-Auth-Method": {"kept"}}},
		{"nothing", http.Header{"Cookie": {"a=1"}}, http.Header{"Cookie": {"a=1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stripIdentity(tc.in)
			if !reflect.DeepEqual(tc.in, tc.want) {
				t.Fatalf("got %v, want %v", tc.in, tc.want)
			}
		})
	}
}

// stripper is a gate with the session cookie named cookie.
func stripper(cookie string) *Handler {
	return &Handler{cookie: web.Cookie{Name: cookie}, device: web.Cookie{Name: cookie}.Device().Name}
}

// seedBasic is the seed client's Authorization header for its session tok.
func seedBasic(tok string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(tok[:32]+":"+tok))
}

func TestTakeToken(t *testing.T) {
	const tok = "0123456789abcdef0123456789abcdef.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
	const tok2 = "fedcba9876543210fedcba9876543210.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
	for _, tc := range []struct {
		name     string
		in, want http.Header
		token    string
		cookie   string // the cookie's name, if not authgate_session
	}{
		{"cookie", http.Header{"Cookie": {"authgate_session=" + tok}},
			http.Header{}, tok, ""},
		{"quoted cookie", http.Header{"Cookie": {`theme=dark; authgate_session="` + tok + `"`}},
			http.Header{"Cookie": {"theme=dark"}}, tok, ""},
		{"bearer before cookie, both removed", http.Header{"Authorization": {"Bearer " + tok}, "Cookie": {"authgate_session=" + tok2 + "; theme=dark"}},
			http.Header{"Cookie": {"theme=dark"}}, tok, ""},
		{"duplicates on two lines", http.Header{"Cookie": {"a=1; authgate_session=" + tok + "; b=2", "authgate_session=" + tok2 + ";c=3"}},
			http.Header{"Cookie": {"a=1; b=2", "c=3"}}, tok, ""},
		{"names PHP or a case-insensitive app reads as the same", http.Header{"Cookie": {
			"authgate.session=x; authgate session=x; %20authgate%5Fsession=x; AUTHGATE_SESSION=x; authgate_session[]=x; authgate_session[a][b]=x; authgate[session=x; a=1"}},
			http.Header{"Cookie": {"a=1"}}, "", ""},
		{"look-alike names stay", http.Header{"Cookie": {"authgate_sessions=x; xauthgate_session=x; authgate_session_x=x; authgate-session=x"}},
			http.Header{"Cookie": {"authgate_sessions=x; xauthgate_session=x; authgate_session_x=x; authgate-session=x"}}, "", ""},
		{"the app's own bearer stays", http.Header{"Authorization": {"Bearer app.jwt.token"}, "Cookie": {"authgate_session=" + tok}},
			http.Header{"Authorization": {"Bearer app.jwt.token"}}, tok, ""},
		{"basic stays", http.Header{"Authorization": {"Basic dXNlcjpwYXNz", "bearer  " + tok}},
			http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, tok, ""},
		{"every session bearer goes", http.Header{"Authorization": {"Bearer " + tok2, "BEARER " + tok}},
			http.Header{}, tok2, ""},
		{"nothing", http.Header{"Cookie": {"a=1;b=2"}},
			http.Header{"Cookie": {"a=1;b=2"}}, "", ""},
		{"names old PHP url-decodes", http.Header{"Cookie": {"authgate+session=x; authgate_session%00x=x; authgate_session%5Bx%5D=x; a+b=1"}},
			http.Header{"Cookie": {"a+b=1"}}, "", ""},
		{"a pair after a comma, for old Rack", http.Header{"Cookie": {"a=1, authgate_session=" + tok + "; b=2, c=3"}},
			http.Header{"Cookie": {"b=2, c=3"}}, "", ""},
		{"Latin-1 spaces Django trims", http.Header{"Cookie": {"\xa0authgate_session=x; authgate_session\x85=x; \u00a0authgate_session=x"}},
			http.Header{"Cookie": {"\u00a0authgate_session=x"}}, "", ""},
		{"only what PHP or a case-insensitive app reads goes", http.Header{"Cookie": {"AUTHGATE.SESSION=x; authgate_session_DEVICE=x; [authgate_session=x"}},
			http.Header{"Cookie": {"AUTHGATE.SESSION=x; [authgate_session=x"}}, "", ""},
		{"an empty value counts, as for net/http", http.Header{"Cookie": {"a=1; authgate_session=", "authgate_session=" + tok}},
			http.Header{"Cookie": {"a=1"}}, "", ""},
		{"a value net/http refuses does not count", http.Header{"Cookie": {`authgate_session=bad\value; authgate_session=` + tok}},
			http.Header{}, tok, ""},
		{"blanks around the other pairs go, the pairs stay", http.Header{"Cookie": {" a=1\u00a0 ;\tauthgate_session=" + tok + ";\tb = 2 "}},
			http.Header{"Cookie": {"a=1\u00a0; b = 2"}}, tok, ""},
		{"PHP files all of a.b.c after an unclosed bracket", http.Header{"Cookie": {"a[b.c=x; a_b_c=x; a.b.c=" + tok + "; a.b_c[]=x; ab.c=1"}},
			http.Header{"Cookie": {"ab.c=1"}}, tok, "a.b.c"},
		{"a cookie name with a dot", http.Header{"Cookie": {"my.session=" + tok + "; my_session=x; My.Session=x; a=1"}},
			http.Header{"Cookie": {"a=1"}}, tok, "my.session"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := stripper("authgate_session")
			if tc.cookie != "" {
				h = stripper(tc.cookie)
			}
			r := &http.Request{Header: tc.in}
			if got := h.takeToken(r); got != tc.token {
				t.Errorf("token %q, want %q", got, tc.token)
			}
			if !reflect.DeepEqual(r.Header, tc.want) {
				t.Errorf("left %q, want %q", r.Header, tc.want)
			}
		})
	}
}

// The seed client's session, which it keeps in cookies of its own and
// sends as Basic userhash:ssid, never reaches the upstream; the gate takes
// the Basic form only with users_api set.
func TestTakeTokenSeedClient(t *testing.T) {
	const tok = "0123456789abcdef0123456789abcdef.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
	const tok2 = "fedcba9876543210fedcba9876543210.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
	b64 := base64.StdEncoding.EncodeToString
	for _, tc := range []struct {
		name     string
		in, want http.Header
		token    string
		usersAPI bool // users_api is set
	}{
		// The seed client's Basic userhash:ssid.
		{"the seed client's Basic, with users_api", http.Header{"Authorization": {seedBasic(tok)}, "Cookie": {"theme=dark"}},
			http.Header{"Cookie": {"theme=dark"}}, tok, true},
		{"the seed client's Basic before the cookie", http.Header{"Authorization": {seedBasic(tok)}, "Cookie": {"authgate_session=" + tok2}},
			http.Header{}, tok, true},
		{"a session Bearer before the Basic", http.Header{"Authorization": {"Bearer " + tok2, seedBasic(tok)}},
			http.Header{}, tok2, true},
		{"without users_api the Basic goes but does not count", http.Header{"Authorization": {seedBasic(tok)}, "Cookie": {"authgate_session=" + tok2}},
			http.Header{}, tok2, false},
		{"Basic of another userhash goes but does not count", http.Header{"Authorization": {"Basic " + b64([]byte(tok2[:32]+":"+tok))}},
			http.Header{}, "", true},
		{"Basic spelt as other readers read it goes", http.Header{"Authorization": {
			"basic " + base64.RawStdEncoding.EncodeToString([]byte(tok[:32]+":"+tok)),
			"BASIC\t\t" + base64.URLEncoding.EncodeToString([]byte("x?>:"+tok)),
			"Basic " + b64([]byte(tok+":password")),
			"Basic " + b64([]byte("user: "+tok+"\t:more")),
			"Basic " + strings.Join(strings.SplitAfter(b64([]byte("u:"+tok)), "A"), "!"),
			"Basic dXNlcjpwYXNz"}},
			http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, "", true},
		{"the app's Basic stays", http.Header{"Authorization": {"Basic " + b64([]byte(tok[:32]+":"+tok[:75])), "Basic " + b64([]byte("u:"+tok+"x"))}},
			http.Header{"Authorization": {"Basic " + b64([]byte(tok[:32]+":"+tok[:75])), "Basic " + b64([]byte("u:"+tok+"x"))}}, "", true},

		// A session token as the value of another cookie.
		{"the seed client's own cookies", http.Header{"Cookie": {"userhash=" + tok[:32] + "; ssid=" + tok + "; theme=dark"}},
			http.Header{"Cookie": {"userhash=" + tok[:32] + "; theme=dark"}}, "", false},
		{"a token value in any spelling", http.Header{"Cookie": {`a="` + tok + `"; b=` + tok2 + "\xa0; c=1, d=" + tok, "e=" + tok}},
			http.Header{}, "", false},
		{"values that only look alike stay", http.Header{"Cookie": {"a=" + tok + "x; b=s%3A" + tok + "; c=" + tok[:75] + "; " + tok + "=1"}},
			http.Header{"Cookie": {"a=" + tok + "x; b=s%3A" + tok + "; c=" + tok[:75] + "; " + tok + "=1"}}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := stripper("authgate_session")
			if tc.usersAPI {
				h.UsersAPI = "/api"
			}
			r := &http.Request{Header: tc.in}
			if got := h.takeToken(r); got != tc.token {
				t.Errorf("token %q, want %q", got, tc.token)
			}
			if !reflect.DeepEqual(r.Header, tc.want) {
				t.Errorf("left %q, want %q", r.Header, tc.want)
			}
		})
	}
}

// The common requests cost no allocation to strip.
func TestTakeTokenAllocations(t *testing.T) {
	const tok = "0123456789abcdef0123456789abcdef.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
	h := stripper("authgate_session")
	for _, tc := range []struct {
		name string
		hdr  http.Header
	}{
		{"cookie", http.Header{"Cookie": {"authgate_session=" + tok}}},
		{"cookie and device cookie", http.Header{"Cookie": {"authgate_session=" + tok + "; authgate_session_device=x"}}},
		{"bearer", http.Header{"Authorization": {"Bearer " + tok}}},
		{"others", http.Header{"Cookie": {"a=1; b=2"}, "Authorization": {"Basic eDp5"}, "Remote-User": {"x"}}},
		{"others with escapes, brackets and commas", http.Header{"Cookie": {"a%20b=1; c+d=2; e[f]=3; g=4, h=5"}}},
		{"the seed client's Basic, not used", http.Header{"Authorization": {seedBasic(tok)}, "Cookie": {"authgate_session=" + tok}}},
		{"long Basic credentials", http.Header{"Authorization": {"Basic " + strings.Repeat("QUFB", 100)}}},
		{"the app's cookie values", http.Header{"Cookie": {"sid=" + strings.Repeat("a", 80) + "; jwt=" + strings.Repeat("b.", 60)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := testing.AllocsPerRun(100, func() {
				r := &http.Request{Header: http.Header{}}
				for k, v := range tc.hdr {
					r.Header[k] = v[:len(v):len(v)]
				}
				stripIdentity(r.Header)
				h.takeToken(r)
			})
			// The map and its copy of the values are the test's own.
			if base := testing.AllocsPerRun(100, func() {
				r := &http.Request{Header: http.Header{}}
				for k, v := range tc.hdr {
					r.Header[k] = v[:len(v):len(v)]
				}
			}); n > base {
				t.Fatalf("%.0f allocations", n-base)
			}
		})
	}
}

// Trailers named like identity headers or credentials are dropped, both
// the declared ones and those net/http adds when the body ends.
func TestGuardTrailers(t *testing.T) {
	r := &http.Request{
		Header:        http.Header{},
		Trailer:       http.Header{"Remote-User": nil, "X-Checksum": nil},
		Body:          io.NopCloser(strings.NewReader("hello")),
		ContentLength: -1,
		ProtoMajor:    1,
	}
	guardTrailers(r)
	if !reflect.DeepEqual(r.Trailer, http.Header{"X-Checksum": nil}) {
		t.Fatalf("declared: %v", r.Trailer)
	}
	// What net/http does as the chunked body ends.
	r.Trailer["X-Checksum"] = []string{"abc"}
	r.Trailer["Remote_user"] = []string{"admin"}
	r.Trailer["Remote-Auth-Methods"] = []string{"pwd,otp"}
	r.Trailer["Authorization"] = []string{"Bearer x"}
	r.Trailer["Cookie"] = []string{"authgate_session=x"}
	body, err := io.ReadAll(r.Body)
	if err != nil || string(body) != "hello" {
		t.Fatalf("body %q, %v", body, err)
	}
	if !reflect.DeepEqual(r.Trailer, http.Header{"X-Checksum": {"abc"}}) {
		t.Fatalf("at the end of the body: %v", r.Trailer)
	}

	// A body of known length over HTTP/1 has no trailers: not wrapped.
	plain := io.NopCloser(strings.NewReader("x"))
	r = &http.Request{Body: plain, ContentLength: 1, ProtoMajor: 1}
	if guardTrailers(r); r.Body != plain {
		t.Fatal("a body with a length was wrapped")
	}
}
