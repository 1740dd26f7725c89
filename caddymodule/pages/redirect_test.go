package pages

import "testing"

func TestSafeRedirect(t *testing.T) {
	for _, tc := range []struct {
		name, target string
		kept         bool
	}{
		{"empty", "", false},
		{"absolute https", "https://evil.example/", false},
		{"absolute http", "http://evil.example", false},
		{"scheme-relative", "//evil.example", false},
		{"scheme-relative with a path", "//evil.example/path", false},
		{"slash backslash", "/\\evil.example", false},
		{"two backslashes", "\\\\evil.example", false},
		{"slash backslash slash", "/\\/evil.example", false},
		{"javascript", "javascript:alert(1)", false},
		{"JavaScript", "JavaScript:alert(1)", false},
		{"data", "data:text/html,<script>alert(1)</script>", false},
		{"a host name", "evil.example", false},
		{"a relative path", "relative/path", false},
		{"a tab between the slashes", "/\t/evil.example", false},
		{"a newline between the slashes", "/\n/evil.example", false},
		{"CRLF", "/%0d%0aSet-Cookie:x=y" + "\r\n", false},
		{"https with one slash", "https:/evil.example", false},
		{"backslashes in the path", "/path\\..\\..\\evil", false},
		{"a leading space", " /leading-space", false},
		{"too long", "/" + string(make([]byte, 3000)), false},
		{"NUL first", "\x00/", false},
		{"the root", "/", true},
		{"a path", "/app", true},
		{"a query", "/app/page?x=1&y=two", true},
		{"a fragment", "/a/b/c#frag", true},
		{"encoded slashes in the query", "/search?q=%2F%2Fevil", true},
		{"encoded UTF-8", "/caf%C3%A9", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := "/"
			if tc.kept {
				want = tc.target
			}
			if got := SafeRedirect(tc.target); got != want {
				t.Fatalf("SafeRedirect(%q) = %q, want %q", tc.target, got, want)
			}
		})
	}
}
