package web

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The end-to-end tests run over plain HTTP behind Caddy; these cover TLS
// and requests that never went through a Caddy server.
func TestSecure(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tls     bool
		trusted any // the server's verdict on the peer; nil: no verdict at all
		proto   []string
		want    bool
	}{
		{"tls", true, false, nil, true},
		{"tls, proxy says http", true, true, []string{"http"}, true},
		{"trusted proxy, https", false, true, []string{"https"}, true},
		{"trusted proxy, two lines of https", false, true, []string{"https", "https"}, true},
		{"trusted proxy, https then http", false, true, []string{"https", "http"}, false},
		{"trusted proxy, empty", false, true, []string{""}, false},
		{"trusted proxy, none", false, true, nil, false},
		{"untrusted peer, https", false, false, []string{"https"}, false},
		{"no verdict, https", false, nil, []string{"https"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if tc.trusted != nil {
				vars := map[string]any{caddyhttp.TrustedProxyVarKey: tc.trusted}
				r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
			}
			for _, v := range tc.proto {
				r.Header.Add("X-Forwarded-Proto", v)
			}
			if got := Secure(r); got != tc.want {
				t.Fatalf("Secure = %v, want %v", got, tc.want)
			}
			for name, set := range map[string]func(http.ResponseWriter){
				"Set":   func(w http.ResponseWriter) { Cookie{Name: "s"}.Set(w, r, "token", time.Now().Add(time.Hour)) },
				"Clear": func(w http.ResponseWriter) { Cookie{Name: "s"}.Clear(w, r) },
			} {
				w := httptest.NewRecorder()
				set(w)
				if cookies := w.Result().Cookies(); len(cookies) != 1 || cookies[0].Secure != tc.want {
					t.Fatalf("%s: cookies %v, want Secure=%v", name, cookies, tc.want)
				}
			}
		})
	}
}
func TestHalfSurrogate(t *testing.T) {
	for _, tt := range []struct {
		name, json string
		half       bool
	}{
		{"no escapes", `{"a":"b"}`, false},
		{"plain escapes", `{"a":"\n\t\"\u00e9"}`, false},
		{"a whole pair", `{"a":"\ud83d\ude00"}`, false},
		{"a whole pair in capitals", `{"a":"\uD83D\uDE00"}`, false},
		{"high half alone", `{"a":"\ud83d"}`, true},
		{"high half before a letter", `{"a":"\ud83dx"}`, true},
		{"high half before another escape", `{"a":"\ud83d\n"}`, true},
		{"two high halves", `{"a":"\ud83d\ud83d"}`, true},
		{"low half alone", `{"a":"\ude00"}`, true},
		{"low half before high half", `{"a":"\ude00\ud83d"}`, true},
		{"escaped backslash, then text", `{"a":"\\ud800"}`, false},
		{"escaped backslash, then an escape", `{"a":"\\\ud800"}`, true},
		{"in a member name", `{"\udfff":"b"}`, true},
		{"cut short", `\ud83d\ude0`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := halfSurrogate([]byte(tt.json)); got != tt.half {
				t.Fatalf("halfSurrogate(%s) = %v", tt.json, got)
			}
		})
	}
}
