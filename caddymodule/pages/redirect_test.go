package pages

import "testing"

func TestSafeRedirect(t *testing.T) {
	for _, target := range []string{
		"",
		"https://evil.example/",
		"http://evil.example",
		"//evil.example",
		"//evil.example/path",
		"/\\evil.example",
		"\\\\evil.example",
		"/\\/evil.example",
		"javascript:alert(1)",
		"JavaScript:alert(1)",
		"data:text/html,<script>alert(1)</script>",
		"evil.example",
		"relative/path",
		"/\t/evil.example",
		"/\n/evil.example",
		"/%0d%0aSet-Cookie:x=y" + "\r\n",
		"https:/evil.example",
		"/path\\..\\..\\evil",
		" /leading-space",
		"/" + string(make([]byte, 3000)),
		"\x00/",
	} {
		if got := SafeRedirect(target); got != "/" {
			t.Errorf("SafeRedirect(%q) = %q, want /", target, got)
		}
	}
	for _, target := range []string{"/", "/app", "/app/page?x=1&y=two", "/a/b/c#frag", "/search?q=%2F%2Fevil", "/caf%C3%A9"} {
		if got := SafeRedirect(target); got != target {
			t.Errorf("SafeRedirect(%q) = %q, want it kept", target, got)
		}
	}
}
