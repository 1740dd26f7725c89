package useragent

import (
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, ua, want string }{
		{"firefox linux", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox on Linux"},
		{"chrome windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "Chrome on Windows"},
		{"edge is not chrome", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", "Edge on Windows"},
		{"safari iphone", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", "Safari on iOS"},
		{"safari mac", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", "Safari on macOS"},
		{"chrome android", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", "Chrome on Android"},
		{"headless chromium", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36", "Chrome on Linux"},
		{"curl", "curl/8.11.0", "curl"},
		{"program", "Go-http-client/1.1", "Go-http-client"},
		{"program with odd bytes", "Ev\u202eil<b>/1", "Evilb"},
		{"long program name", strings.Repeat("A", 500) + "/1", strings.Repeat("A", MaxLen)},
		{"empty", "", "Unknown device"},
		{"nothing known", "hello", "Unknown device"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := Summary(c.ua)
			if got != c.want {
				t.Errorf("Summary(%.60q) = %q, want %q", c.ua, got, c.want)
			}
			if len(got) > MaxLen+len(" on ChromeOS") {
				t.Errorf("summary of %d bytes", len(got))
			}
		})
	}
}
