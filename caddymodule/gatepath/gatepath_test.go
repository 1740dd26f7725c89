package gatepath_test

import (
	"strings"
	"testing"

	"github.com/authgate/authgate/caddymodule/gatepath"
	"github.com/authgate/authgate/caddymodule/gatepath/gatepathtest"
)

func TestCanonical(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      bool
	}{
		{"root", "/", true},
		{"plain", "/assets/app.css", true},
		{"trailing slash", "/docs/", true},
		{"escaped letter", "/%41", true},
		{"escaped space", "/my%20file", true},
		{"escaped utf-8", "/caf%C3%A9", true},
		{"sub-delims", "/a!$&'()*+,=:@[]~-_.b", true},
		{"dots inside a name", "/a..b/.c/d.", true},
		{"empty", "", false},
		{"relative", "assets/x", false},
		{"asterisk", "*", false},
		{"dot", "/a/./b", false},
		{"dot dot", "/a/../b", false},
		{"final dot dot", "/a/..", false},
		{"three dots", "/a/.../b", false},
		{"dots and space", "/a/.%20/b", false},
		{"space alone", "/a/%20/b", false},
		{"double slash", "/a//b", false},
		{"leading double slash", "//a", false},
		{"backslash", `/a\b`, false},
		{"semicolon", "/a;b", false},
		{"raw space", "/a b", false},
		{"raw question mark", "/a?b", false},
		{"raw hash", "/a#b", false},
		{"raw quote", `/a"b`, false},
		{"raw utf-8", "/café", false},
		{"raw control", "/a\x00", false},
		{"escaped slash", "/a%2fb", false},
		{"escaped slash upper", "/a%2Fb", false},
		{"escaped backslash", "/a%5Cb", false},
		{"escaped dot", "/a%2eb", false},
		{"escaped semicolon", "/a%3Bb", false},
		{"escaped percent", "/a%25b", false},
		{"escaped question mark", "/a%3fb", false},
		{"escaped hash", "/a%23b", false},
		{"escaped NUL", "/a%00", false},
		{"escaped DEL", "/a%7f", false},
		{"escaped newline", "/a%0a", false},
		{"short escape", "/a%4", false},
		{"bad escape", "/a%g0", false},
		{"u escape", "/a%u002f", false},
		{"invalid utf-8", "/a%ff", false},
		{"overlong dot", "/a%c0%ae", false},
		{"surrogate", "/a%ed%a0%80", false},
		{"C1 control", "/a%c2%85", false},
		{"fullwidth dot", "/a%ef%bc%8e", false},
		{"fullwidth solidus", "/a%EF%BC%8F", false},
		{"fullwidth letter", "/%EF%BD%88", false},
		{"no-break space", "/a%C2%A0", false},
		{"decomposed", "/cafe%CC%81", false},
		{"yen", "/a%C2%A5", false},
		{"division slash", "/a%E2%88%95", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := gatepath.Canonical(tc.raw); got != tc.want {
				t.Errorf("Canonical(%q) = %v, want %v", tc.raw, got, tc.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		name     string
		patterns []string
		yes, no  []string
	}{
		{"exact", []string{"/healthz"},
			[]string{"/healthz"},
			[]string{"/healthz/", "/healthz2", "/HEALTHZ", "/Healthz", "/health%7a", "/health%7A", "/healthz.", "/x/healthz"}},
		{"prefix", []string{"/assets/*"},
			[]string{"/assets/", "/assets/app.css", "/assets/a/b/c", "/assets/%41pp.css", "/assets/caf%C3%A9"},
			[]string{"/assets", "/Assets/app.css", "/%61ssets/app.css", "/assets/../secret", "/assets/..;/secret", "/assets/%2e%2e/secret"}},
		{"suffix", []string{"*.css"},
			[]string{"/app.css", "/a/b/app.css"},
			[]string{"/app.CSS", "/app.c%73s", "/app.css/x", "/secret;.css", "/secret%00.css"}},
		{"substring", []string{"*/public/*"},
			[]string{"/a/public/b", "/public/x"},
			[]string{"/a/Public/b", "/a/publ%69c/b", "/public"}},
		{"everything in a substring", []string{"**"},
			[]string{"/", "/anything/at/all"},
			[]string{"/a/../b", "//x"}},
		{"glob", []string{"/img/*.png"},
			[]string{"/img/a.png"},
			[]string{"/img/a/b.png", "/img/a.PNG", "/img/%2e%2e.png"}},
		{"class", []string{"/v[12]/status"},
			[]string{"/v1/status", "/v2/status"},
			[]string{"/v3/status", "/V1/status"}},
		{"escaped in the pattern", []string{"/files/a%40b"},
			[]string{"/files/a%40b"},
			[]string{"/files/a@b"}},
		{"escaped in the pattern, lower-case hex", []string{"/files/a%2a"},
			[]string{"/files/a%2A"},
			[]string{"/files/a*", "/files/ab"}},
		{"non-ASCII in the pattern", []string{"/café"},
			[]string{"/caf%C3%A9"},
			[]string{"/caf%c3%a9", "/cafe%CC%81"}},
		{"star alone", []string{"/healthz", "*"},
			[]string{"/", "/secret", "/a/../b", "*", ""},
			nil},
		{"none", nil,
			nil,
			[]string{"/", "/healthz"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := gatepath.Compile(tc.patterns)
			if err != nil {
				t.Fatal(err)
			}
			for _, raw := range tc.yes {
				if !p.Match(raw) {
					t.Errorf("%q does not match %q", tc.patterns, raw)
				}
			}
			for _, raw := range tc.no {
				if p.Match(raw) {
					t.Errorf("%q matches %q", tc.patterns, raw)
				}
			}
		})
	}
}

func TestCompileRefuses(t *testing.T) {
	for _, tc := range []struct{ name, pattern, want string }{
		{"relative", "healthz", "starting with / or *"},
		{"placeholder", "/{http.request.host}/x", "placeholders"},
		{"dot segment", "/assets/../x", "matches no canonical path"},
		{"double slash", "//x", "matches no canonical path"},
		{"escaped slash", "/a%2Fb", "matches no canonical path"},
		{"semicolon", "/a;b", "matches no canonical path"},
		{"fullwidth", "/a．", "matches no canonical path"},
		{"bad escape", "/a%zz", "bad escape"},
		{"bad glob", "/a[", "syntax error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gatepath.Compile([]string{tc.pattern})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.pattern) {
				t.Fatalf("Compile(%q): %v, want an error naming it and saying %q", tc.pattern, err, tc.want)
			}
		})
	}
}

// Every hostile path is judged as the list says, and every one judged
// public is public to every model.
func TestHostile(t *testing.T) {
	p, err := gatepath.Compile(gatepathtest.PublicPatterns)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(gatepathtest.Hostile); n < 40 {
		t.Fatalf("only %d hostile paths", n)
	}
	for _, tc := range gatepathtest.Hostile {
		t.Run(tc.Target, func(t *testing.T) {
			u, ok := gatepathtest.Forwarded(tc.Target)
			if got := ok && p.Match(u.EscapedPath()); got != tc.Public {
				t.Fatalf("%q: public %v, want %v", tc.Target, got, tc.Public)
			}
			if !tc.Public {
				return
			}
			for _, m := range gatepathtest.Models() {
				if route := m.Resolve(tc.Target); !route.Public {
					t.Errorf("%s routes %q to %s", m.Name, tc.Target, route.Name)
				}
			}
		})
	}
}

// The common path, canonical and without escapes, is judged without an
// allocation.
func TestMatchAllocations(t *testing.T) {
	p, err := gatepath.Compile([]string{"/healthz", "/assets/*", "*.ico"})
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{"/assets/app.css", "/app/page", "/healthz", "/a/../b"} {
		if n := testing.AllocsPerRun(100, func() { p.Match(raw) }); n != 0 {
			t.Errorf("Match(%q): %.0f allocations", raw, n)
		}
	}
}

// Structural differs from Canonical only in the text of non-ASCII
// characters, which matters to an upstream but not to the gate's own
// endpoints.
func TestStructural(t *testing.T) {
	for _, tc := range []struct {
		name, raw             string
		structural, canonical bool
	}{
		{"plain", "/api/user/account/ada", true, true},
		{"fullwidth name", "/api/user/account/%EF%BC%A1%EF%BC%A4%EF%BC%A1", true, false},
		{"best-fit yen", "/api/user/account/%C2%A5", true, false},
		{"invalid utf-8", "/api/user/account/%FF", true, false},
		{"escaped NUL", "/api/user/account/a%00b", true, false},
		{"escaped slash", "/api/user/account/..%2Fx", false, false},
		{"dot dot", "/api/user/../x", false, false},
		{"semicolon", "/auth/users/login;x", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := gatepath.Structural(tc.raw); got != tc.structural {
				t.Errorf("Structural(%q) = %v, want %v", tc.raw, got, tc.structural)
			}
			if got := gatepath.Canonical(tc.raw); got != tc.canonical {
				t.Errorf("Canonical(%q) = %v, want %v", tc.raw, got, tc.canonical)
			}
		})
	}
}

// The mount's own paths are the mount's to every upstream: the list says
// the gate may answer only what no upstream reads as a path of the app's.
func TestUsersMountCases(t *testing.T) {
	for _, tc := range gatepathtest.UsersMountCases {
		if !tc.Ours {
			continue
		}
		t.Run(tc.Target, func(t *testing.T) {
			readings := gatepathtest.Readings(tc.Target)
			if len(readings) == 0 {
				t.Fatal("Go refuses it")
			}
			for _, p := range readings {
				if !gatepathtest.InUsersMount(p) {
					t.Errorf("an upstream reads %q, outside the mount", p)
				}
			}
		})
	}
}
