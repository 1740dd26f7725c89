package demo

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func request(path string) *http.Request {
	r := httptest.NewRequest("GET", path, nil)
	r.Header.Set("Remote-User", "<b>alice</b>")
	r.Header.Set("Remote-Email", "alice@example.com")
	r.Header.Set("Remote-User-Id", "7")
	r.Header.Set("Remote-Auth-Methods", "pwd,otp")
	return r
}

func TestPage(t *testing.T) {
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, request("/some/where?x=<i>"))
	body := w.Body.String()
	for _, want := range []string{
		"Hello, &lt;b&gt;alice&lt;/b&gt;",
		"alice@example.com",
		"<td>7</td>",
		"<td>pwd,otp</td>",
		"/some/where",
		"x=&lt;i&gt;",
		`href="/auth/logout"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<b>alice") {
		t.Error("page does not escape Remote-User")
	}
}

func TestWhoami(t *testing.T) {
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, request("/api/whoami?x=1"))
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var got identity
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := identity{User: "<b>alice</b>", Email: "alice@example.com", UserID: "7", Methods: "pwd,otp", Path: "/api/whoami", Query: "x=1"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
