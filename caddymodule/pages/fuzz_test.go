package pages

import (
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// site is where the login page runs in FuzzSafeRedirect.
var site = &url.URL{Scheme: "https", Host: "app.example.com", Path: "/auth/login"}

// FuzzSafeRedirect: SafeRedirect returns "/" or its input unchanged, and
// what it returns stays on this site for every reader of it: net/url, a
// browser following the Location header that http.Redirect makes of it,
// and a browser reading it as written (the hidden form field).
func FuzzSafeRedirect(f *testing.F) {
	for _, seed := range []string{
		"/", "/app?x=1#y", "//evil.example", "/\\evil.example", "\\/evil.example", "/\t/evil.example",
		"/\r\n/evil.example", " //evil.example", "\x00//evil.example", "/%2F/evil.example", "/%5Cevil.example",
		"/.//evil.example", "/a/..//evil.example", "/a#/../..//evil.example", "/a?x=//evil.example",
		"https:evil.example", "https:/evil.example", "https:/\\evil.example", "HTTPS://evil.example",
		"javascript:alert(1)", "/\u3000/evil.example", "/\uff0fevil.example", "/\u2215evil.example",
		"/caf\xc3\xa9", "/\xff", "/\x7f", "/@evil.example", "/:@evil.example", "/;//evil.example",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, target string) {
		got := SafeRedirect(target)
		if got != "/" && got != target {
			t.Fatalf("SafeRedirect(%q) = %q, neither / nor the target", target, got)
		}
		if again := SafeRedirect(got); again != got {
			t.Fatalf("SafeRedirect(%q) = %q, but SafeRedirect(%q) = %q", target, got, got, again)
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("SafeRedirect(%q) = %q, which net/url does not parse: %v", target, got, err)
		}
		if to := site.ResolveReference(u); to.Scheme != site.Scheme || to.Host != site.Host {
			t.Fatalf("SafeRedirect(%q) = %q, which net/url resolves to %s", target, got, to)
		}
		if !browserSameOrigin(got) {
			t.Fatalf("SafeRedirect(%q) = %q, which a browser resolves to another origin", target, got)
		}
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, site.String(), nil)
		http.Redirect(w, r, got, http.StatusSeeOther)
		if loc := w.Header().Get("Location"); !browserSameOrigin(loc) {
			t.Fatalf("SafeRedirect(%q) = %q, and a browser follows its Location %q to another origin", target, got, loc)
		}
		checkCarried(t, got)
	})
}

var (
	hiddenField = regexp.MustCompile(`name="redirect" value="([^"]*)"`)
	links       = regexp.MustCompile(`href="([^"]*)"`)
)

// checkCarried checks that the login page carries target intact to the
// next step: in its form's hidden field, and in its links' queries.
func checkCarried(t *testing.T, target string) {
	t.Helper()
	var page strings.Builder
	if err := templates["login"].ExecuteTemplate(&page, "layout", view{Prefix: "/auth", Redirect: target, RegistrationOpen: true}); err != nil {
		t.Fatal(err)
	}
	fields := hiddenField.FindAllStringSubmatch(page.String(), -1)
	if len(fields) != 1 || html.UnescapeString(fields[0][1]) != target {
		t.Fatalf("the form carries %q as %q", target, fields)
	}
	n := 0
	for _, m := range links.FindAllStringSubmatch(page.String(), -1) {
		u, err := url.Parse(html.UnescapeString(m[1]))
		if err != nil || !u.Query().Has("redirect") {
			continue
		}
		if n++; u.Query().Get("redirect") != target {
			t.Fatalf("a link carries %q as %q", target, m[1])
		}
	}
	if n != 2 {
		t.Fatalf("%d links carry %q, want 2", n, target)
	}
}

// browserSameOrigin tells whether a browser on site resolves ref to site's
// origin, by the steps of the WHATWG URL parser that decide the origin of a
// reference against a special (http or https) base:
//
//   - leading and trailing C0 controls and spaces are stripped, and every
//     tab and newline is removed wherever it is;
//   - a scheme (a letter, then letters, digits, "+", "-" or ".", then ":")
//     makes it absolute, except for the base's own scheme followed by
//     fewer than two slashes, which stays relative (taken here as another
//     origin all the same: SafeRedirect has no reason to let it through);
//   - two leading slashes, "/" and "\" alike for special schemes, start an
//     authority: another host.
//
// Anything else is a path (or query, or fragment) on the base's host.
func browserSameOrigin(ref string) bool {
	ref = strings.TrimFunc(ref, func(r rune) bool { return r <= 0x20 })
	ref = strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(ref)
	if i := strings.IndexByte(ref, ':'); i > 0 && isAlpha(ref[0]) && strings.IndexFunc(ref[:i], notSchemeChar) < 0 {
		return false
	}
	slash := func(i int) bool { return i < len(ref) && (ref[i] == '/' || ref[i] == '\\') }
	return !(slash(0) && slash(1))
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func notSchemeChar(r rune) bool {
	return !(r < 0x80 && (isAlpha(byte(r)) || '0' <= r && r <= '9' || r == '+' || r == '-' || r == '.'))
}
