package web

import (
	"net/http/httptest"
	"testing"
)

func TestWriteJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		v      any
		body   string
	}{
		{"an envelope", 200, map[string]any{"success": true, "data": map[string]any{"message": "OK"}}, `{"data":{"message":"OK"},"success":true}` + "\n"},
		{"a failure", 429, map[string]any{"success": false, "messages": []string{"Too many attempts"}}, `{"messages":["Too many attempts"],"success":false}` + "\n"},
		{"markup is escaped", 400, map[string]string{"m": "<script>&"}, `{"m":"\u003cscript\u003e\u0026"}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := httptest.NewRecorder()
			WriteJSON(w, tc.status, tc.v)
			if w.Code != tc.status || w.Body.String() != tc.body {
				t.Fatalf("%d %q, want %d %q", w.Code, w.Body, tc.status, tc.body)
			}
			for k, v := range map[string]string{
				"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
			} {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}
