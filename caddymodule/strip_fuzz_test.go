package caddymodule

import (
	"encoding/base64"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/web"
)

// An upstream cookie reader, as far as it decides which name a cookie is
// filed under: names lists the names it reads in a Cookie line, file the
// name an app of it asks for to get the cookie configured as name.
type cookieReader struct {
	name  string
	names func(line string) []string
	file  func(name string) string
	fold  bool // names compare case-insensitively
}

// cookieReaders are the upstreams the gate's stripping is judged against.
// Others read cookies as one of these does, or as a subset: Rack 2.2
// (split on "; *", names as sent) as the case-insensitive reader, Node's
// cookie module (JavaScript's trim over Latin-1) as Django, PHP 7 (which
// leaves the rest of a name after an unclosed "[" as it is) as PHP 8.0.
var cookieReaders = []cookieReader{
	{name: "net/http", names: goCookieNames, file: same},
	{name: "case-insensitive (ASP.NET, Java's equalsIgnoreCase)", names: plainCookieNames, file: same, fold: true},
	{name: "Django (WSGI Latin-1, str.strip)", names: djangoCookieNames, file: same},
	{name: "PHP", names: phpCookieNames(false), file: phpFile},
	{name: "PHP before 7.4.31, 8.0.24, 8.1.11 (url-decoded names)", names: phpCookieNames(true), file: phpFile},
	{name: "Rack < 2.1 (';' and ',', url-decoded names)", names: rackLegacyCookieNames, file: same},
}

func same(s string) string { return s }

// readsAs tells which reader, if any, files a cookie of line under name.
func readsAs(line, name string) (string, bool) {
	for _, r := range cookieReaders {
		want := r.file(name)
		for _, n := range r.names(line) {
			if n == want || (r.fold && strings.EqualFold(n, want)) {
				return r.name, true
			}
		}
	}
	return "", false
}

func goCookieNames(line string) []string {
	var names []string
	for _, c := range (&http.Request{Header: http.Header{"Cookie": {line}}}).Cookies() {
		names = append(names, c.Name)
	}
	return names
}

func plainCookieNames(line string) []string {
	var names []string
	for part := range strings.SplitSeq(line, ";") {
		n, _, _ := strings.Cut(part, "=")
		names = append(names, textproto.TrimString(n))
	}
	return names
}

// djangoCookieNames is django.http.cookie.parse_cookie over the header as
// WSGI gives it (each byte a Latin-1 character): a chunk's name is before
// its first "=" (none: ""), stripped of what Python's str.isspace calls
// space.
func djangoCookieNames(line string) []string {
	var names []string
	for chunk := range strings.SplitSeq(line, ";") {
		n, _, ok := strings.Cut(chunk, "=")
		if !ok {
			n = ""
		}
		names = append(names, strings.TrimFunc(latin1(n), func(r rune) bool {
			return strings.ContainsRune(" \t\n\v\f\r\x1c\x1d\x1e\x1f\u0085\u00a0", r)
		}))
	}
	return names
}

// latin1 reads each byte as the Latin-1 character of its value.
func latin1(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}

// phpCookieNames is php_default_treat_data for cookies, then
// php_register_variable_ex: tokens between ";" (empty ones skipped), the
// leading C white space skipped, the name before "=", url-decoded by PHP
// before 7.4.31, 8.0.24 and 8.1.11, and cut at a NUL (C strings); a name that is
// empty is no variable.
func phpCookieNames(decode bool) func(string) []string {
	return func(line string) []string {
		var names []string
		for tok := range strings.SplitSeq(line, ";") {
			tok = strings.TrimLeft(tok, " \t\n\v\f\r")
			n, _, _ := strings.Cut(tok, "=")
			if n == "" {
				continue
			}
			if decode {
				n = phpURLDecode(n)
				n, _, _ = strings.Cut(n, "\x00")
			}
			if n = phpVarName(n); n != "" {
				names = append(names, n)
			}
		}
		return names
	}
}

// phpURLDecode is PHP's php_url_decode: "+" is a space, and %XX a byte
// when XX are hex digits.
func phpURLDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '+' {
			b.WriteByte(' ')
			continue
		}
		if s[i] == '%' && i+2 < len(s) && !strings.ContainsAny(s[i+1:i+3], "+-") {
			if x, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(x))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// phpVarName is the name php_register_variable_ex files a variable under:
// leading spaces skipped; " " and "." become "_"; "name[...]" is an array
// filed under name; a "[" never closed becomes "_", and so do " ", "." and
// "[" after it (PHP 8).
func phpVarName(n string) string {
	n = strings.TrimLeft(n, " ")
	b := []byte(n)
	for i, c := range b {
		switch c {
		case ' ', '.':
			b[i] = '_'
		case '[':
			if strings.IndexByte(n[i+1:], ']') >= 0 {
				return string(b[:i])
			}
			for j := i; j < len(b); j++ {
				if b[j] == ' ' || b[j] == '.' || b[j] == '[' {
					b[j] = '_'
				}
			}
			return string(b)
		}
	}
	return string(b)
}

// phpFile is how a PHP app names the cookie configured as name.
func phpFile(name string) string { return phpVarName(name) }

// rackLegacyCookieNames is Rack::Utils.parse_cookies before Rack 2.1:
// parse_query(header, ';,'): pairs between ";" or "," with the spaces
// after those skipped, names url-decoded (www-form: "+" is a space), or
// kept as they are when that fails.
func rackLegacyCookieNames(line string) []string {
	var names []string
	for _, pair := range strings.FieldsFunc(line, func(r rune) bool { return r == ';' || r == ',' }) {
		n, _, _ := strings.Cut(strings.TrimLeft(pair, " "), "=")
		if d, err := url.QueryUnescape(n); err == nil {
			n = d
		}
		names = append(names, n)
	}
	return names
}

// headerValue tells whether net/http lets s through as a header value.
func headerValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// cookieParts are a Cookie line's pairs as the stripping keeps them: the
// text between semicolons, without the blanks around it.
func cookieParts(line string) []string {
	var parts []string
	for part := range strings.SplitSeq(line, ";") {
		if part = strings.Trim(part, " \t"); part != "" {
			parts = append(parts, part)
		}
	}
	return parts
}

// cookieValues are the values readers find in a Cookie line: net/http's;
// Django's (Latin-1 blanks stripped, then a pair of quotes); and old
// Rack's, which splits pairs at commas too and skips the spaces before a
// name. (Values are not url-decoded: the gate looks for a client's plain
// copy of its token, not one hidden from it.)
func cookieValues(line string) []string {
	var vals []string
	for _, c := range (&http.Request{Header: http.Header{"Cookie": {line}}}).Cookies() {
		vals = append(vals, c.Value)
	}
	for chunk := range strings.SplitSeq(line, ";") {
		if _, v, ok := strings.Cut(chunk, "="); ok {
			v = strings.TrimFunc(latin1(v), func(r rune) bool {
				return strings.ContainsRune(" \t\n\v\f\r\x1c\x1d\x1e\x1f\u0085\u00a0", r)
			})
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			vals = append(vals, v)
		}
	}
	for _, pair := range strings.FieldsFunc(line, func(r rune) bool { return r == ';' || r == ',' }) {
		if _, v, ok := strings.Cut(strings.TrimLeft(pair, " "), "="); ok {
			vals = append(vals, v)
		}
	}
	return vals
}

// generousTokenValue is the widest of those readings, which the gate
// applies to every pair: at commas too, blanks (Latin-1 too) around the
// value and a pair of quotes removed. The gate removes no pair whose
// value is a token by no reading of it.
func generousTokenValue(part string) bool {
	for pair := range strings.SplitSeq(part, ",") {
		if _, v, ok := strings.Cut(pair, "="); ok {
			v = strings.TrimFunc(latin1(v), func(r rune) bool {
				return r == ' ' || '\t' <= r && r <= '\r' || 0x1c <= r && r <= 0x1f || r == 0x85 || r == 0xa0
			})
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if _, ok := sessions.Userhash(v); ok {
				return true
			}
		}
	}
	return false
}

// basicTokens tells whether some upstream finds a session token in an
// Authorization value read as Basic credentials: the scheme in any case and
// blanks after it, and the credentials decoded as Python's b64decode does
// (characters outside the standard alphabet skipped) or as Node's Buffer
// does (both alphabets, the rest skipped), padded or not, the token in any
// field between colons, blanks around it trimmed.
func basicTokens(v string) bool {
	if len(v) < 6 || !strings.EqualFold(v[:5], "basic") || v[5] != ' ' && v[5] != '\t' {
		return false
	}
	for _, alphabet := range []func(rune) rune{
		func(r rune) rune { // Python
			if 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '+' || r == '/' {
				return r
			}
			return -1
		},
		func(r rune) rune { // Node
			switch {
			case r == '-':
				return '+'
			case r == '_':
				return '/'
			case 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '+' || r == '/':
				return r
			}
			return -1
		},
	} {
		enc := strings.Map(alphabet, v[6:])
		if len(enc)%4 == 1 {
			enc = enc[:len(enc)-1] // six bits make no byte
		}
		creds, err := base64.RawStdEncoding.DecodeString(enc)
		if err != nil {
			panic(err) // the alphabet and length are right
		}
		for field := range strings.SplitSeq(string(creds), ":") {
			if _, ok := sessions.Userhash(strings.Trim(field, " \t")); ok {
				return true
			}
		}
	}
	return false
}

// FuzzTakeToken: whatever the Cookie and Authorization lines, takeToken
// never panics; no reader above finds the session or device cookie in the
// lines it leaves, nor a session token as a value (cookieValues), and
// every other pair survives byte for byte, in order; every session-shaped
// Bearer header goes, and every Basic one in which some upstream finds a
// session token (basicTokens), and every other Authorization header stays;
// and the token it returns is the one the pages and the users API read from
// the same request (web.Cookie.Token; with users_api set, the seed client's
// Basic pair first, as the users API reads it).
func FuzzTakeToken(f *testing.F) {
	const tok = "0123456789abcdef0123456789abcdef.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
	const tok2 = "fedcba9876543210fedcba9876543210.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
	for _, seed := range []struct {
		cookie1, cookie2, auth1, auth2 string
		name                           uint8
	}{
		{"authgate_session=" + tok, "", "", "", 0},
		{`theme=dark; authgate_session="` + tok + `"`, "", "", "", 0},
		{"a=1; authgate_session=" + tok + "; b=2", "authgate_session=" + tok2 + ";c=3", "", "", 0},
		{"authgate.session=x; authgate session=x; %20authgate%5Fsession=x; AUTHGATE_SESSION=x", "authgate_session[]=x; authgate_session[a][b]=x; authgate[session=x; a=1", "", "", 0},
		{"authgate_sessions=x; xauthgate_session=x; authgate_session_x=x; authgate-session=x", "", "", "", 0},
		{"authgate+session=x; authgate_session%00x=x; authgate_session%5Bx%5D=x", "a=1, authgate_session=" + tok, "", "", 0},
		{"\xa0authgate_session=x; authgate_session\x85=x; \u00a0authgate_session=x", "a=1\u00a0; b=\xa0", "", "", 0},
		{"authgate_session_device=x; AUTHGATE.SESSION_DEVICE=x; authgate_session=" + tok, "", "", "", 0},
		{"authgate_session=bad\\value; authgate_session=" + tok, "authgate_session= " + tok, "", "", 0},
		{"authgate_session=; authgate_session=" + tok, "", "", "", 0},
		{"authgate_session=\"\"", "authgate_session=" + tok, "", "", 0},
		{"my.session=" + tok + "; my_session=x; My.Session=x; my[session=x; a=1", "", "", "", 1},
		{"a.b.c=x; a[b.c=x; a_b_c=x", "", "", "", 2},
		{"SID=x; sid=x; S%49D=x", "", "", "", 3},
		{"", "", "Bearer " + tok, "", 0},
		{"authgate_session=" + tok2, "", "Bearer app.jwt.token", "", 0},
		{"", "", "Basic dXNlcjpwYXNz", "bearer  " + tok, 0},
		{"", "", "Bearer " + tok2, "BEARER " + tok, 0},
		{"", "", "Bearer\t" + tok, "Bearer " + tok + " ", 0},
		{";;; ; =; =x; x", " ; ", "Bearer", "bearer ", 0},
	} {
		f.Add(seed.cookie1, seed.cookie2, seed.auth1, seed.auth2, seed.name, false)
	}
	// The seed client: Basic userhash:ssid, and its own cookies.
	pair := base64.StdEncoding.EncodeToString([]byte(tok[:32] + ":" + tok))
	for _, seed := range []struct {
		cookie1, cookie2, auth1, auth2 string
		usersAPI                       bool
	}{
		{"userhash=" + tok[:32] + "; ssid=" + tok, "", "Basic " + pair, "", true},
		{"authgate_session=" + tok2, "", "Basic " + pair, "", false},
		{"authgate_session=" + tok2, "", "Basic dXNlcjpwYXNz", "basic " + pair, true},
		{"", "", "Basic " + base64.StdEncoding.EncodeToString([]byte(tok2[:32]+":"+tok)), "Bearer " + tok2, true},
		{"", "", "basic\t" + base64.RawURLEncoding.EncodeToString([]byte("?>?:"+tok)), "Basic !" + pair[:40] + "!" + pair[40:], true},
		{`a="` + tok + `"; b=` + tok2 + "\xa0", "c=1, d=" + tok + "; e=" + tok + "x; " + tok + "=1", "", "", false},
	} {
		f.Add(seed.cookie1, seed.cookie2, seed.auth1, seed.auth2, uint8(0), seed.usersAPI)
	}
	names := []string{"authgate_session", "my.session", "a.b.c", "SID"}
	f.Fuzz(func(t *testing.T, cookie1, cookie2, auth1, auth2 string, nameIdx uint8, usersAPI bool) {
		name := names[int(nameIdx)%len(names)]
		device := web.Cookie{Name: name}.Device().Name
		header := http.Header{}
		for _, hv := range []struct{ key, value string }{
			{"Cookie", cookie1}, {"Cookie", cookie2}, {"Authorization", auth1}, {"Authorization", auth2},
		} {
			// What net/http hands on: a valid value, without the blanks
			// around it.
			if v := textproto.TrimString(hv.value); v != "" && headerValue(v) {
				header.Add(hv.key, v)
			}
		}
		orig := header.Clone()
		h := &Handler{cookie: web.Cookie{Name: name}, device: device}
		if usersAPI {
			h.UsersAPI = "/api"
		}
		r := &http.Request{Header: header}
		got := h.takeToken(r)

		// The cookies.
		var kept []string
		for _, line := range orig["Cookie"] {
			for _, part := range cookieParts(line) {
				_, isSession := readsAs(part, name)
				_, isDevice := readsAs(part, device)
				if !isSession && !isDevice && !generousTokenValue(part) {
					kept = append(kept, part)
				}
			}
		}
		var left []string
		for _, line := range r.Header["Cookie"] {
			for _, ck := range []string{name, device} {
				if reader, ok := readsAs(line, ck); ok {
					t.Fatalf("%s reads %s in the stripped %q (from %q)", reader, ck, line, orig["Cookie"])
				}
			}
			for _, v := range cookieValues(line) {
				if _, ok := sessions.Userhash(v); ok {
					t.Fatalf("a session token is left as the value %q in %q (from %q)", v, line, orig["Cookie"])
				}
			}
			if slices.Contains(orig["Cookie"], line) {
				left = append(left, cookieParts(line)...)
				continue
			}
			parts := cookieParts(line)
			if len(parts) == 0 {
				t.Fatalf("an empty Cookie line is left: %q", r.Header["Cookie"])
			}
			left = append(left, parts...)
		}
		if !slices.Equal(left, kept) {
			t.Fatalf("from %q the gate left %q: pairs %q, want %q", orig["Cookie"], r.Header["Cookie"], left, kept)
		}
		if _, ok := r.Header["Cookie"]; ok && len(r.Header["Cookie"]) == 0 {
			t.Fatal("an empty Cookie header is left")
		}

		// The Authorization headers.
		var wantAuth []string
		bearer := "" // the first session in a header: Bearer, or Basic with users_api
		for _, v := range orig["Authorization"] {
			if tk, ok := sessionBearer(v); ok {
				if bearer == "" {
					bearer = tk
				}
				continue
			}
			if basicTokens(v) {
				if tk, ok := web.SessionBasic(v); ok && usersAPI && bearer == "" {
					bearer = tk
				}
				continue
			}
			wantAuth = append(wantAuth, v)
		}
		if !slices.Equal(r.Header["Authorization"], wantAuth) {
			t.Fatalf("from Authorization %q the gate left %q, want %q", orig["Authorization"], r.Header["Authorization"], wantAuth)
		}
		if _, ok := r.Header["Authorization"]; ok && len(wantAuth) == 0 {
			t.Fatal("an empty Authorization header is left")
		}
		for _, v := range r.Header["Authorization"] {
			if tk, ok := web.BearerToken(&http.Request{Header: http.Header{"Authorization": {v}}}); ok {
				if _, session := sessions.Userhash(tk); session {
					t.Fatalf("a session Bearer is left: %q", v)
				}
			}
		}

		// The token: a session in a header first, else the cookie the
		// other front doors read.
		want := bearer
		if want == "" {
			if ck, err := (&http.Request{Header: orig}).Cookie(name); err == nil {
				want = ck.Value
			}
		}
		if got != want {
			t.Fatalf("takeToken = %q, want %q (Cookie %q, Authorization %q)", got, want, orig["Cookie"], orig["Authorization"])
		}
		// (Authorization is one header: the pages read the first line of
		// several, the gate the first session Bearer of them. With
		// users_api, a session the users API reads in a Basic first line,
		// as the seed client sends it, is the gate's too.)
		front, fromHeader := (web.Cookie{Name: name}).Token(&http.Request{Header: orig})
		if seed, ok := web.SessionBasic(orig.Get("Authorization")); ok && usersAPI {
			if len(orig["Authorization"]) <= 1 && seed != got {
				t.Fatalf("the gate reads %q, the users API %q", got, seed)
			}
		} else if len(orig["Authorization"]) <= 1 && (fromHeader && bearer != "" || !fromHeader) && front != got {
			t.Fatalf("the gate reads %q, the pages %q (Cookie %q)", got, front, orig["Cookie"])
		}
	})
}
