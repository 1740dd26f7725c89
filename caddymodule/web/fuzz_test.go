package web

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/authgate/authgate/caddymodule/auth"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/username"
)

// readParams runs ReadParams on a request with this query, body and
// Content-Type.
func readParams(rawQuery string, body []byte, contentType string) (map[string]string, error) {
	return readBody(rawQuery, bytes.NewReader(body), contentType)
}

func readBody(rawQuery string, body io.Reader, contentType string) (map[string]string, error) {
	r := httptest.NewRequest("POST", "/auth/users/login", body)
	r.URL.RawQuery = rawQuery
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	p, err := ReadParams(httptest.NewRecorder(), r)
	return p.values, err
}

// FuzzReadParams: whatever the body, its label and the query, ReadParams
// never panics, fails only as ErrBadInput or auth.ErrBadBytes, and never
// returns a clean result holding NUL or invalid UTF-8. A body that looks
// like JSON reads the same whatever its Content-Type; the same body padded
// past MaxBody is refused; and what it reads, written again as a form and
// as JSON, reads back the same.
func FuzzReadParams(f *testing.F) {
	for _, seed := range []struct {
		query, body, contentType string
	}{
		{"", `{"username":"alice","password":"pw"}`, "application/json"},
		{"", `{"username":"alice","password":"pw"}`, "application/x-www-form-urlencoded"},
		{"", `{"username":"alice","password":"pw"}`, ""},
		{"", "username=alice&password=pw", "application/x-www-form-urlencoded"},
		{"", "username=alice&password=pw", "application/json"},
		{"", "username=alice&password=pw", "text/plain"},
		{"redirect=%2Fapp", "username=alice&username=bob", "application/x-www-form-urlencoded"},
		{"username=query", `{"username":null,"remember":true,"n":1.50,"o":{"a":1},"l":[1]}`, "application/vnd.api+json; charset=utf-8"},
		{"", `{"a":"\u0000"}`, "application/json"},
		{"", `{"a":"\ud800"}`, "application/json"},
		{"", `{"a":"\ud83d\ude00"}`, "application/json"},
		{"", "{\"a\":\"\xff\"}", "application/json"},
		{"", "{\"\xc3\x28\":\"b\"}", ""},
		{"", "a=%00&b=c", ""},
		{"", "a=%ff", ""},
		{"a=%zz", "", ""},
		{"x=%c3%28", "a=b", ""},
		{"", "a=b;c=d", ""},
		{"", `[{"a":"b"}]`, ""},
		{"", `{"a":"b"} {"c":"d"}`, ""},
		{"", `{"a":"b"`, ""},
		{"", "  \r\n\t ", ""},
		{"", "\xef\xbb\xbf{\"a\":\"b\"}", "application/json"},
		{"", `{"a":"b","a":"c"}`, "application/json"},
		{"", `{"__proto__":"x","constructor":"y"}`, ""},
	} {
		f.Add(seed.query, []byte(seed.body), seed.contentType)
	}
	f.Fuzz(func(t *testing.T, rawQuery string, body []byte, contentType string) {
		got, err := readParams(rawQuery, body, contentType)
		switch {
		case err == nil:
			for k, v := range got {
				if username.BadBytes(k) || username.BadBytes(v) {
					t.Fatalf("clean result holds bad bytes: %q=%q", k, v)
				}
			}
		case errors.Is(err, auth.ErrBadBytes), errors.Is(err, ErrBadInput):
		default:
			t.Fatalf("error %v is neither ErrBadInput nor ErrBadBytes", err)
		}

		if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
			asJSON, jsonErr := readParams(rawQuery, body, "application/json")
			if !errors.Is(jsonErr, err) || !errors.Is(err, jsonErr) || !maps.Equal(asJSON, got) {
				t.Fatalf("labelled %q: %q, %v; labelled JSON: %q, %v", contentType, got, err, asJSON, jsonErr)
			}
		}

		padded := io.MultiReader(bytes.NewReader(overLimit), bytes.NewReader(body))
		if _, err := readBody(rawQuery, padded, contentType); !errors.Is(err, ErrBadInput) {
			t.Fatalf("the body after %d spaces: %v, want ErrBadInput", len(overLimit), err)
		}

		if err != nil {
			return
		}
		form := url.Values{}
		for k, v := range got {
			form.Set(k, v)
		}
		for _, again := range []struct {
			body, contentType string
		}{
			{form.Encode(), "application/x-www-form-urlencoded"},
			{jsonObject(got), "application/json"},
		} {
			read, err := readParams("", []byte(again.body), again.contentType)
			if err != nil || !maps.Equal(read, got) {
				t.Fatalf("%q read as %q; written again as %s %q, read as %q, %v", body, got, again.contentType, again.body, read, err)
			}
		}
	})
}

// overLimit is white space enough to take any body past MaxBody.
var overLimit = bytes.Repeat([]byte(" "), MaxBody+1)

// FuzzParamsAlike: two parameters read the same from a form as from JSON,
// bad bytes and all: the same error, and the same values.
func FuzzParamsAlike(f *testing.F) {
	for _, seed := range [][4]string{
		{"username", "alice", "password", "correct horse"},
		{"username", "al\x00ice", "password", "pw"},
		{"username", "alice", "password", "\xff\xfe"},
		{"user\xc3", "x", "", ""},
		{"a", "b", "a", "c"},
		{"", "", "", ""},
		{"a", "\xed\xb0\x80", "b", "\U0001F600"},
		{"a", "\"\\/\b\f\n\r\t\x01\x7f", "b", "é"},
		{"a", "\xed\xa0\x80", "b", "\xef\xbf\xbd"},
		{"{", "}", "[", "]"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		if k1 == k2 {
			// Parsers differ on which of two members of one name counts
			// (Go's decoder takes the last, JavaScript too, a form reader
			// here the first), so that a JSON body naming one twice means
			// different things to different readers: it is refused (as
			// bad bytes, if it holds any).
			twice := fmt.Sprintf("{%s,%s}", strings.Trim(jsonObject(map[string]string{k1: v1}), "{}"), strings.Trim(jsonObject(map[string]string{k2: v2}), "{}"))
			want := ErrBadInput
			if username.BadBytes(k1) || username.BadBytes(v1) || username.BadBytes(v2) {
				want = auth.ErrBadBytes
			}
			if _, err := readParams("", []byte(twice), "application/json"); !errors.Is(err, want) {
				t.Fatalf("%s: %v, want %v", twice, err, want)
			}
		}
		names, values := []string{k1, k2}, []string{v1, v2}
		if k1 == k2 {
			names, values = names[:1], values[:1]
		}
		var form strings.Builder
		obj := map[string]string{}
		for i, k := range names {
			if i > 0 {
				form.WriteByte('&')
			}
			form.WriteString(url.QueryEscape(k) + "=" + url.QueryEscape(values[i]))
			obj[k] = values[i]
		}
		fromForm, formErr := readParams("", []byte(form.String()), "application/x-www-form-urlencoded")
		fromJSON, jsonErr := readParams("", []byte(jsonObject(obj)), "application/json")
		if !errors.Is(formErr, jsonErr) || !errors.Is(jsonErr, formErr) {
			t.Fatalf("%q: form: %v; JSON %s: %v", obj, formErr, jsonObject(obj), jsonErr)
		}
		if formErr == nil && (!maps.Equal(fromForm, obj) || !maps.Equal(fromJSON, obj)) {
			t.Fatalf("%q: form read %q, JSON read %q", obj, fromForm, fromJSON)
		}
	})
}

// jsonObject writes a JSON object of strings byte for byte, as a client
// might: what is not UTF-8 stays as it is (encoding/json would replace it),
// control characters and the quote and backslash are escaped.
func jsonObject(obj map[string]string) string {
	var b strings.Builder
	str := func(s string) {
		b.WriteByte('"')
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < 0x20:
				fmt.Fprintf(&b, `\u%04x`, c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
	}
	b.WriteByte('{')
	for i, k := range slices.Sorted(maps.Keys(obj)) {
		if i > 0 {
			b.WriteByte(',')
		}
		str(k)
		b.WriteByte(':')
		str(obj[k])
	}
	b.WriteByte('}')
	return b.String()
}

// FuzzAuthorization: whatever the Authorization header, reading it never
// panics; Bearer and Basic are told by their scheme alone, in any case; a
// Bearer token has no blanks around it; Basic credentials come only from a
// Basic header of at most 8 KiB, as the user and password base64 holds; and
// the session token is the Bearer one, else the cookie's; and SessionBasic
// accepts exactly the Basic credentials net/http reads as userhash and a
// session token of that userhash.
func FuzzAuthorization(f *testing.F) {
	for _, seed := range []string{
		"Bearer 0123456789abcdef0123456789abcdef.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",
		"bearer  tok ", "BEARER\ttok", "Bearer", "Bearer ", "Bearertok",
		"Basic dXNlcjpwYXNz", "basic dXNlcjpwYXNz", "BASIC dXNlcjpw:YXNz", "Basic dXNlcg==", "Basic OnBhc3M=",
		"Basic AHVzZXIAOnAAYXNz", "Basic !!!", "Basic", "Basic ", "Digest username=\"x\"", "",
		"Basic " + strings.Repeat("QUFB", 3000),
		"Basic MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY6MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYuYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXpBQkNERUZHSElKS0xNTk9QUQ==",
		"Basic MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY6MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYuYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXpBQkNERUZHSElKS0xNTk9QUQ",
	} {
		f.Add(seed, "s=cookie")
	}
	f.Fuzz(func(t *testing.T, authorization, cookie string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", authorization)
		r.Header.Set("Cookie", cookie)

		bearer, isBearer := BearerToken(r)
		if isBearer != (len(authorization) > 7 && strings.EqualFold(authorization[:7], "bearer ")) {
			t.Fatalf("%q: Bearer %v", authorization, isBearer)
		}
		if isBearer && bearer != strings.TrimSpace(authorization[7:]) {
			t.Fatalf("%q: Bearer token %q", authorization, bearer)
		}

		user, pass, ok := BasicCredentials(r)
		hasBasic := HasBasic(r)
		if hasBasic != (len(authorization) >= 6 && strings.EqualFold(authorization[:6], "basic ")) {
			t.Fatalf("%q: HasBasic %v", authorization, hasBasic)
		}
		session, isSession := SessionBasic(r.Header.Get("Authorization"))
		h, shaped := sessions.Userhash(pass)
		if want := ok && shaped && h == user; isSession != want || isSession && session != pass {
			t.Fatalf("%q: SessionBasic %q, %v; net/http reads %q, %q", authorization, session, isSession, user, pass)
		}
		if ok {
			decoded, err := base64.StdEncoding.DecodeString(authorization[6:])
			if !hasBasic || len(authorization) > 8<<10 || err != nil || string(decoded) != user+":"+pass || strings.Contains(user, ":") {
				t.Fatalf("%q: Basic %q, %q", authorization, user, pass)
			}
		}

		token, fromHeader := Cookie{Name: "s"}.Token(r)
		want := bearer
		if !isBearer {
			if ck, err := r.Cookie("s"); err == nil {
				want = ck.Value
			}
		}
		if fromHeader != isBearer || token != want {
			t.Fatalf("%q, Cookie %q: token %q (header %v), want %q", authorization, cookie, token, fromHeader, want)
		}
	})
}
