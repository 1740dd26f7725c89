package web

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/auth"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/store"
)

// values returns every parameter read, for comparison.
func (p Params) all() map[string]string { return maps.Clone(p.values) }

func TestReadParams(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		query       string
		contentType string
		body        string // "": no body at all
		want        map[string]string
		err         error
	}{
		{name: "JSON", contentType: "application/json", body: `{"username":"ann","password":"pw"}`,
			want: map[string]string{"username": "ann", "password": "pw"}},
		{name: "JSON with a charset", contentType: "application/json; charset=utf-8", body: `{"a":"b"}`,
			want: map[string]string{"a": "b"}},
		{name: "JSON of a +json type", contentType: "application/vnd.api+json", body: ` {"a":"b"} `,
			want: map[string]string{"a": "b"}},
		{name: "JSON scalars as text", contentType: "application/json", body: `{"n":12.50,"big":12345678901234567890,"t":true,"f":false}`,
			want: map[string]string{"n": "12.50", "big": "12345678901234567890", "t": "true", "f": "false"}},
		{name: "JSON null, objects and arrays are absent", contentType: "application/json",
			body: `{"a":null,"b":{"c":"d"},"e":["f"],"g":"h"}`, want: map[string]string{"g": "h"}},
		{name: "JSON null removes the query's value", query: "a=from-query&b=kept", contentType: "application/json",
			body: `{"a":null}`, want: map[string]string{"b": "kept"}},
		{name: "JSON mislabelled as a form", contentType: "application/x-www-form-urlencoded", body: `{"username":"ann"}`,
			want: map[string]string{"username": "ann"}},
		{name: "JSON mislabelled as text", contentType: "text/plain", body: `{"username":"ann"}`,
			want: map[string]string{"username": "ann"}},
		{name: "JSON without a type", body: "\n{\"username\":\"ann\"}\n", want: map[string]string{"username": "ann"}},
		{name: "form", contentType: "application/x-www-form-urlencoded", body: "username=ann&password=p%26w",
			want: map[string]string{"username": "ann", "password": "p&w"}},
		{name: "form without a type", body: "username=ann", want: map[string]string{"username": "ann"}},
		{name: "a form labelled JSON does not parse", contentType: "application/json", body: "username=ann",
			err: ErrBadInput},
		{name: "query only", query: "username=ann&x=1", want: map[string]string{"username": "ann", "x": "1"}},
		{name: "the body wins over the query", query: "username=query&only=q", contentType: "application/json",
			body: `{"username":"body"}`, want: map[string]string{"username": "body", "only": "q"}},
		{name: "duplicate JSON keys are refused (readers differ on which counts)", contentType: "application/json",
			body: `{"username":"first","username":"last"}`, err: ErrBadInput},
		{name: "duplicate JSON keys, one of them escaped", contentType: "application/json",
			body: `{"u":"first","\u0075":"last"}`, err: ErrBadInput},
		{name: "duplicate form keys: the first wins", body: "username=first&username=last",
			want: map[string]string{"username": "first"}},
		{name: "duplicate query keys: the first wins", query: "username=first&username=last",
			want: map[string]string{"username": "first"}},
		{name: "an empty body", contentType: "application/json", body: "  \n", want: map[string]string{}},
		{name: "a JSON array", contentType: "application/json", body: `["a"]`, err: ErrBadInput},
		{name: "two JSON objects", contentType: "application/json", body: `{"a":"1"}{"a":"2"}`, err: ErrBadInput},
		{name: "JSON cut short", contentType: "application/json", body: `{"a":"1"`, err: ErrBadInput},
		{name: "a stray brace after the JSON object", contentType: "application/json", body: `{"a":"1"}}`, err: ErrBadInput},
		{name: "JSON null", contentType: "application/json", body: `null`, err: ErrBadInput},
		{name: "a form that does not parse", body: "a=%zz", err: ErrBadInput},
		{name: "oversized", contentType: "application/json", body: `{"a":"` + strings.Repeat("x", MaxBody) + `"}`, err: ErrBadInput},
		{name: "just within the size", contentType: "application/json", body: `{"a":"` + strings.Repeat("x", MaxBody-8) + `"}`,
			want: map[string]string{"a": strings.Repeat("x", MaxBody-8)}},
		{name: "NUL in a JSON value", contentType: "application/json", body: `{"username":"a\u0000b"}`,
			want: map[string]string{"username": "a\x00b"}, err: auth.ErrBadBytes},
		{name: "NUL in a JSON key", contentType: "application/json", body: `{"user\u0000name":"ann"}`,
			want: map[string]string{"user\x00name": "ann"}, err: auth.ErrBadBytes},
		{name: "invalid UTF-8 in JSON", contentType: "application/json", body: "{\"username\":\"a\xffb\"}",
			want: map[string]string{"username": "a\ufffdb"}, err: auth.ErrBadBytes},
		{name: "half a surrogate pair in JSON", contentType: "application/json", body: `{"username":"a\ud800"}`,
			want: map[string]string{"username": "a\ufffd"}, err: auth.ErrBadBytes},
		{name: "NUL in a form value", body: "username=a%00b", want: map[string]string{"username": "a\x00b"}, err: auth.ErrBadBytes},
		{name: "invalid UTF-8 in a form key", body: "user%FFname=ann", want: map[string]string{"user\xffname": "ann"}, err: auth.ErrBadBytes},
		{name: "NUL in the query, with a clean body", query: "x=%00", contentType: "application/json", body: `{"a":"b"}`,
			want: map[string]string{"x": "\x00", "a": "b"}, err: auth.ErrBadBytes},
		{name: "a whole surrogate pair is fine", contentType: "application/json", body: `{"a":"\ud83d\ude00"}`,
			want: map[string]string{"a": "😀"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var body *strings.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			target := "/x"
			if tc.query != "" {
				target += "?" + tc.query
			}
			var r *http.Request
			if body == nil {
				r = httptest.NewRequest("POST", target, nil)
			} else {
				r = httptest.NewRequest("POST", target, body)
			}
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			p, err := ReadParams(httptest.NewRecorder(), r)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if tc.err == ErrBadInput {
				return
			}
			if got := p.all(); !maps.Equal(got, tc.want) {
				t.Fatalf("params %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParamsGetAndBool(t *testing.T) {
	t.Parallel()
	p := Params{values: map[string]string{"empty": "", "on": "on", "one": "1", "yes": "YES", "true": "true", "no": "no", "zero": "0"}}
	for _, tc := range []struct {
		name    string
		present bool
		flag    bool
	}{
		{"empty", true, false}, {"on", true, true}, {"one", true, true}, {"yes", true, true},
		{"true", true, true}, {"no", true, false}, {"zero", true, false}, {"absent", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, ok := p.Get(tc.name); ok != tc.present {
				t.Errorf("Get(%q) present = %v", tc.name, ok)
			}
			if got := p.Bool(tc.name); got != tc.flag {
				t.Errorf("Bool(%q) = %v", tc.name, got)
			}
		})
	}
}

func TestSameOrigin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		header map[string]string
		want   bool
	}{
		{"no browser headers (a script)", nil, true},
		{"same-origin fetch", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "https://app.example.com"}, true},
		{"typed or bookmarked", map[string]string{"Sec-Fetch-Site": "none"}, true},
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}, false},
		{"same-site fetch (a sibling subdomain)", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://app.example.com"}, false},
		{"cross-site fetch claiming our origin", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://app.example.com"}, false},
		{"our origin", map[string]string{"Origin": "https://app.example.com"}, true},
		{"our origin in capitals", map[string]string{"Origin": "https://APP.example.com"}, true},
		{"another origin", map[string]string{"Origin": "https://evil.example"}, false},
		{"our host on another port", map[string]string{"Origin": "https://app.example.com:8443"}, false},
		{"a suffix of our host", map[string]string{"Origin": "https://app.example.com.evil.example"}, false},
		{"origin null", map[string]string{"Origin": "null"}, false},
		{"an origin that does not parse", map[string]string{"Origin": "https://%zz"}, false},
		{"our referer", map[string]string{"Referer": "https://app.example.com/auth/login?x=1"}, true},
		{"another referer", map[string]string{"Referer": "https://evil.example/app.example.com"}, false},
		{"a relative referer", map[string]string{"Referer": "/auth/login"}, false},
		{"the origin decides over the referer", map[string]string{"Origin": "https://evil.example", "Referer": "https://app.example.com/"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("POST", "https://app.example.com/auth/users/login", nil)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			if got := SameOrigin(r); got != tc.want {
				t.Fatalf("SameOrigin = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		remoteAddr string
		caddyIP    any // Caddy's client_ip variable; nil: none
		forwarded  string
		want       string
	}{
		{"Caddy's verdict", "10.0.0.1:4321", "203.0.113.9", "", "203.0.113.9"},
		{"Caddy's verdict wins over the header", "10.0.0.1:4321", "10.0.0.1", "203.0.113.9", "10.0.0.1"},
		{"no verdict: the peer", "198.51.100.7:4321", nil, "", "198.51.100.7"},
		{"no verdict: the header counts for nothing", "198.51.100.7:4321", nil, "203.0.113.9", "198.51.100.7"},
		{"no verdict: an IPv6 peer", "[2001:db8::1]:443", nil, "", "2001:db8::1"},
		{"an empty verdict: the peer", "198.51.100.7:4321", "", "", "198.51.100.7"},
		{"a verdict of the wrong type: the peer", "198.51.100.7:4321", 42, "", "198.51.100.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remoteAddr
			if tc.forwarded != "" {
				r.Header.Set("X-Forwarded-For", tc.forwarded)
			}
			if tc.caddyIP != nil {
				vars := map[string]any{caddyhttp.ClientIPVarKey: tc.caddyIP}
				r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
			}
			if got := ClientIP(r); got != tc.want {
				t.Fatalf("ClientIP = %q, want %q", got, tc.want)
			}
		})
	}
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestToken(t *testing.T) {
	t.Parallel()
	c := Cookie{Name: "authgate_session"}
	for _, tc := range []struct {
		name          string
		authorization string
		cookie        string
		token         string
		fromHeader    bool
	}{
		{name: "none"},
		{name: "cookie", cookie: "from-cookie", token: "from-cookie"},
		{name: "bearer", authorization: "Bearer from-header", token: "from-header", fromHeader: true},
		{name: "bearer in any case", authorization: "bEARER from-header", token: "from-header", fromHeader: true},
		{name: "bearer with spaces around", authorization: "Bearer   from-header  ", token: "from-header", fromHeader: true},
		{name: "bearer wins over the cookie", authorization: "Bearer from-header", cookie: "from-cookie", token: "from-header", fromHeader: true},
		{name: "an empty bearer falls back to the cookie", authorization: "Bearer ", cookie: "from-cookie", token: "from-cookie"},
		{name: "bearer without a space", authorization: "Bearerfrom-header", cookie: "from-cookie", token: "from-cookie"},
		{name: "basic is no session token", authorization: basic("ann", "pw"), cookie: "from-cookie", token: "from-cookie"},
		{name: "another cookie", cookie: "", token: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/", nil)
			if tc.authorization != "" {
				r.Header.Set("Authorization", tc.authorization)
			}
			r.AddCookie(&http.Cookie{Name: "other", Value: "not-ours"})
			if tc.cookie != "" {
				r.AddCookie(&http.Cookie{Name: c.Name, Value: tc.cookie})
			}
			token, fromHeader := c.Token(r)
			if token != tc.token || fromHeader != tc.fromHeader {
				t.Fatalf("Token = %q, %v; want %q, %v", token, fromHeader, tc.token, tc.fromHeader)
			}
		})
	}
}

func TestBasicCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, authorization string
		has, ok             bool
		user, pass          string
	}{
		{name: "none"},
		{name: "basic", authorization: basic("ann", "pw"), has: true, ok: true, user: "ann", pass: "pw"},
		{name: "basic in any case", authorization: "bAsIc " + base64.StdEncoding.EncodeToString([]byte("ann:pw")), has: true, ok: true, user: "ann", pass: "pw"},
		{name: "a colon in the password", authorization: basic("ann", "p:w"), has: true, ok: true, user: "ann", pass: "p:w"},
		{name: "no colon", authorization: "Basic " + base64.StdEncoding.EncodeToString([]byte("annpw")), has: true},
		{name: "not base64", authorization: "Basic !!!", has: true},
		{name: "empty", authorization: "Basic ", has: true},
		{name: "oversized", authorization: basic("ann", strings.Repeat("p", 8*1024)), has: true},
		{name: "bearer", authorization: "Bearer token"},
		{name: "too short to be basic", authorization: "Basic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/", nil)
			if tc.authorization != "" {
				r.Header.Set("Authorization", tc.authorization)
			}
			if got := HasBasic(r); got != tc.has {
				t.Errorf("HasBasic = %v, want %v", got, tc.has)
			}
			user, pass, ok := BasicCredentials(r)
			if ok != tc.ok || user != tc.user || pass != tc.pass {
				t.Fatalf("BasicCredentials = %q, %q, %v; want %q, %q, %v", user, pass, ok, tc.user, tc.pass, tc.ok)
			}
		})
	}
}

func TestSessionBasic(t *testing.T) {
	t.Parallel()
	const userhash = "0123456789abcdef0123456789abcdef"
	const tok = userhash + ".abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
	pair := base64.StdEncoding.EncodeToString([]byte(userhash + ":" + tok))
	for _, tc := range []struct {
		name, authorization string
		ok                  bool
	}{
		{"the seed client's pair", "Basic " + pair, true},
		{"the scheme in any case", "bASIC " + pair, true},
		{"another userhash", basic(strings.Repeat("f", 32), tok), false},
		{"the userhash in upper case", basic(strings.ToUpper(userhash), tok), false},
		{"no userhash", basic("", tok), false},
		{"the token alone", "Basic " + base64.StdEncoding.EncodeToString([]byte(tok)), false},
		{"a token of another shape", basic(userhash, tok[:75]+"!"), false},
		{"a longer token", basic(userhash, tok+"x"), false},
		{"unpadded base64", "Basic " + base64.RawStdEncoding.EncodeToString([]byte(userhash+":"+tok)), false},
		{"url-safe base64", "Basic " + strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString([]byte(userhash+":"+tok+"?"))), false},
		{"two blanks after the scheme", "Basic  " + pair[:len(pair)-1], false},
		{"padding inside", "Basic " + pair[:100] + "==" + pair[102:], false},
		{"Bearer", "Bearer " + tok, false},
		{"ordinary credentials", basic("ann", "pw"), false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := SessionBasic(tc.authorization)
			if ok != tc.ok || ok && got != tok || !ok && got != "" {
				t.Fatalf("SessionBasic(%q) = %q, %v; want ok %v", tc.authorization, got, ok, tc.ok)
			}
		})
	}
}

// What is not a session costs nothing; a session costs its token.
func TestSessionBasicAllocations(t *testing.T) {
	const userhash = "0123456789abcdef0123456789abcdef"
	const tok = userhash + ".abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
	pair := base64.StdEncoding.EncodeToString([]byte(userhash + ":" + tok))
	for v, want := range map[string]float64{basic("ann", "pw"): 0, basic(strings.Repeat("f", 32), tok): 1, "Basic " + pair: 1} {
		if n := testing.AllocsPerRun(100, func() { SessionBasic(v) }); n != want {
			t.Errorf("SessionBasic(%q): %.0f allocations, want %.0f", v, n, want)
		}
	}
}

func TestJSONBody(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body, contentType string
		json                    bool
	}{
		{"an object", `{"username":"ann"}`, "", true},
		{"an object labelled as a form", ` {"username":"ann"}`, "application/x-www-form-urlencoded", true},
		{"an array after blanks", "\r\n\t [1]", "text/plain", true},
		{"a form", "username=ann&password=pw", "application/x-www-form-urlencoded", false},
		{"a form labelled as JSON", "username=ann", "application/json", true},
		{"a form labelled as problem JSON", "username=ann", "application/problem+json; charset=utf-8", true},
		{"malformed JSON", `{"username":`, "", true},
		{"empty", "", "application/x-www-form-urlencoded", false},
		{"blank", "   ", "", false},
		{"oversized", strings.Repeat(" ", MaxBody+10) + "{}", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("POST", "/auth/login", strings.NewReader(tc.body))
			if tc.body == "" {
				r = httptest.NewRequest("POST", "/auth/login", nil)
			}
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			if got := JSONBody(r); got != tc.json {
				t.Errorf("JSONBody = %v, want %v", got, tc.json)
			}
			// The body is all there for whoever reads it next.
			rest, err := io.ReadAll(r.Body)
			if err != nil || string(rest) != tc.body {
				t.Fatalf("after JSONBody the body reads %d bytes (%v), want %d", len(rest), err, len(tc.body))
			}
		})
	}
}

func TestAcceptsHTML(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, accept string
		html         bool
	}{
		{"a browser's navigation", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", true},
		{"fetch", "*/*", false},
		{"axios", "application/json, text/plain, */*", false},
		{"none", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("POST", "/auth/login", nil)
			if tc.accept != "" {
				r.Header.Set("Accept", tc.accept)
			}
			if got := AcceptsHTML(r); got != tc.html {
				t.Errorf("AcceptsHTML(%q) = %v, want %v", tc.accept, got, tc.html)
			}
		})
	}
}

func TestAttempt(t *testing.T) {
	t.Parallel()
	c := Cookie{Name: "s"}
	for _, tc := range []struct {
		name, device string
	}{
		{"without a device cookie", ""},
		{"with a device cookie", "v1.signed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("POST", "/", nil)
			r.RemoteAddr = "198.51.100.7:1234"
			r.AddCookie(&http.Cookie{Name: "s", Value: "session-token"})
			if tc.device != "" {
				r.AddCookie(&http.Cookie{Name: "s_device", Value: tc.device})
			}
			want := auth.Attempt{Username: "ann", IP: "198.51.100.7", Device: tc.device}
			if got := c.Attempt(r, "ann"); got != want {
				t.Fatalf("Attempt = %+v, want %+v", got, want)
			}
		})
	}
}

type devices string

func (d devices) NewDevice(accounts.User) (string, time.Time) {
	return string(d), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
}

// A login sends the session cookie and, with a device signer, the device
// cookie, both HttpOnly and SameSite=Lax.
func TestLoggedIn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		device  string
		cookies []string
	}{
		{"with a device cookie", "v1.device", []string{"s=token", "s_device=v1.device"}},
		{"without", "", []string{"s=token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := httptest.NewRecorder()
			r := httptest.NewRequest("POST", "/auth/users/login", nil)
			expires := time.Now().Add(time.Hour)
			Cookie{Name: "s"}.LoggedIn(w, r, devices(tc.device), accounts.User{ID: 1}, "token", sessions.Session{Expires: expires.Unix()})
			var got []string
			for _, c := range w.Result().Cookies() {
				if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.MaxAge <= 0 {
					t.Errorf("cookie %s: %+v", c.Name, c)
				}
				got = append(got, c.Name+"="+c.Value)
			}
			if !slices.Equal(got, tc.cookies) {
				t.Fatalf("cookies %q, want %q", got, tc.cookies)
			}
		})
	}
}

// Failure sorts the errors every front door shares into their statuses.
func TestFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		err        error
		status     int
		retryAfter string
	}{
		{"throttled", &auth.ThrottledError{RetryAfter: 90*time.Second + time.Millisecond}, 429, "91"},
		{"throttled, wrapped", fmt.Errorf("login: %w", &auth.ThrottledError{RetryAfter: time.Second}), 429, "1"},
		{"invalid input", auth.ErrInvalidInput, 400, ""},
		{"bad bytes", auth.ErrBadBytes, 400, ""},
		{"too weak", fmt.Errorf("%w: too short", auth.ErrTooWeak), 422, ""},
		{"store down", &store.OutageError{Store: "redis", Err: errors.New("connection refused")}, 503, ""},
		{"anything else", errors.New("disk on fire"), 500, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := httptest.NewRecorder()
			r := httptest.NewRequest("POST", "/auth/users/login", nil)
			if got := Failure(w, r, zap.NewNop(), tc.err); got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
			if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Fatalf("Retry-After %q, want %q", got, tc.retryAfter)
			}
		})
	}
}
