// Package gatepath judges a request path the way the upstream will receive
// it. reverse_proxy forwards r.URL.EscapedPath() byte for byte, and upstreams
// disagree about what those bytes mean: one decodes %2F into a separator,
// another turns \ into /, drops ;parameters, resolves dot segments, folds
// case or maps fullwidth forms. A path that is public to the gate must be
// public to all of them, so the gate only ever calls a path public when it
// is canonical (every reading of it is the same) and its pattern matches it
// both decoded and as sent.
package gatepath

import (
	"fmt"
	"net/url"
	"path"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Canonical reports whether raw, an escaped path as reverse_proxy forwards
// it (r.URL.EscapedPath()), reads the same to every upstream: it starts with
// "/"; has no dot segment, no segment made only of dots and spaces, and no
// empty segment but a final one (a trailing slash); has no backslash, ";",
// space, control byte or other byte a client would have had to escape; no
// escape that is not two hex digits; no escaped "/", "\", ".", ";", "%",
// "?", "#" or control byte; and decodes to valid UTF-8 that NFKC leaves
// alone and that holds no C1 control and no character Windows' best-fit
// mapping turns into a slash or backslash.
func Canonical(raw string) bool {
	_, ok := canonical(raw, false, true)
	return ok
}

// Structural reports whether raw is canonical in its structure (as
// Canonical, but for the text it holds: escaped control bytes and any
// non-ASCII text are allowed). It is the test for
// the paths the gate answers itself and never forwards: there, only how the
// path splits into segments matters, and a REST path may carry a username
// typed in any form (the accounts package compares names canonically).
func Structural(raw string) bool {
	_, ok := canonical(raw, false, false)
	return ok
}

// rawOK marks the bytes a canonical path may hold unescaped: RFC 3986's
// pchar and "/", without ";" (a parameter to Tomcat and Jetty). "%" starts
// an escape and is checked apart. Everything else is escaped by Go before
// it is forwarded, so it never occurs in r.URL.EscapedPath().
var rawOK = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@/[]") {
		t[c] = true
	}
	return t
}()

// escapeOK marks the bytes a canonical path may hold escaped: any but the
// path's syntax, "%" (a second decoding) and control bytes.
var escapeOK = func() (t [256]bool) {
	for c := 0x20; c < 0x100; c++ {
		t[c] = c != 0x7f && !strings.ContainsRune(`/\.;%?#`, rune(c))
	}
	return t
}()

// structureByte reports the bytes that, escaped, could change how a path
// splits into segments for some upstream.
func structureByte(b byte) bool {
	return strings.IndexByte(`/\.;%?#`, b) >= 0
}

// canonical checks raw and, when decode is set or the check needs it,
// returns its decoded form. Only a path with escapes is decoded, and only a
// path with escaped non-ASCII bytes needs it for the check of its text
// (skipped unless text is set): the common path costs no allocation.
func canonical(raw string, decode, text bool) (string, bool) {
	if raw == "" || raw[0] != '/' {
		return "", false
	}
	escapes, nonASCII := false, false
	blank := true // the segment so far holds only dots and escaped spaces
	for i := 1; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '/':
			if blank { // "//", "/./", "/../", "/.../", "/.%20/"
				return "", false
			}
			blank = true
		case c == '%':
			if i+2 >= len(raw) {
				return "", false
			}
			b, ok := unhex(raw[i+1], raw[i+2])
			if !ok || !escapeOK[b] && (text || structureByte(b)) {
				return "", false
			}
			escapes = true
			nonASCII = nonASCII || b >= utf8.RuneSelf
			blank = blank && b == ' '
			i += 2
		case rawOK[c]:
			blank = blank && c == '.'
		default:
			return "", false
		}
	}
	// A final segment may be empty (a trailing slash), but not dots alone.
	if blank && raw[len(raw)-1] != '/' {
		return "", false
	}
	nonASCII = nonASCII && text
	if !escapes || !(decode || nonASCII) {
		return raw, true
	}
	decoded, err := url.PathUnescape(raw)
	if err != nil {
		return "", false
	}
	if nonASCII && !plainText(decoded) {
		return "", false
	}
	return decoded, true
}

// plainText reports whether s is valid UTF-8 that means the same to an
// application that normalises it (NFKC maps fullwidth "．" and "／" to "." and
// "/") and to one that converts it to a Windows code page.
func plainText(s string) bool {
	if !utf8.ValidString(s) { // overlong forms of "." and "/" among others
		return false
	}
	for _, r := range s {
		if r >= 0x80 && r <= 0x9f || bestFit(r) {
			return false
		}
	}
	return norm.NFKC.IsNormalString(s)
}

// bestFit reports the characters that NFKC leaves alone but that Windows'
// best-fit conversion to a code page maps to a path separator: the yen and
// won signs are "\" in the Japanese and Korean code pages, and the slash
// look-alikes become "/" or "\".
func bestFit(r rune) bool {
	switch r {
	case '\u00a5', '\u20a9', '\u2215', '\u2216', '\u2044', '\u29f5', '\u29f8', '\u29f9':
		return true
	}
	return false
}

func unhex(a, b byte) (byte, bool) {
	x, ok1 := hexVal(a)
	y, ok2 := hexVal(b)
	return x<<4 | y, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Patterns is a compiled list of public path patterns.
type Patterns struct {
	all  bool
	list []pattern
}

type kind uint8

const (
	exact kind = iota
	prefix
	suffix
	substring
	glob
)

// pattern is one public pattern in two forms: as the escaped path would
// spell it, and decoded.
type pattern struct {
	kind     kind
	raw, dec string // for prefix, suffix and substring: the literal part
}

// Compile reads patterns in the syntax of Caddy's path matcher: exact
// ("/healthz"), prefix ("/assets/*"), suffix ("*.css"), substring
// ("*part*"), any other glob as path.Match reads it, "%" to spell a byte as
// it is escaped in the path ("/a%40b" matches "/a%40b", not "/a@b"), and "*"
// alone for every path. Unlike Caddy's matcher, which lowercases both
// sides, patterns match case-sensitively: a case-sensitive upstream routes
// "/HEALTHZ" to its catch-all, not to "/healthz".
func Compile(patterns []string) (*Patterns, error) {
	p := &Patterns{}
	for _, s := range patterns {
		if s == "*" {
			p.all = true
			continue
		}
		pat, err := compile(s)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		p.list = append(p.list, pat)
	}
	return p, nil
}

func compile(s string) (pattern, error) {
	if !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "*") {
		return pattern{}, fmt.Errorf("must be a path pattern starting with / or *")
	}
	if strings.ContainsAny(s, "{}") {
		return pattern{}, fmt.Errorf("placeholders other than {env.*} are not supported")
	}
	// In escaped space "%*" was Caddy's wildcard that matches escapes as
	// they are; here every wildcard does, on the escaped side.
	rawForm := strings.ReplaceAll(s, "%*", "*")
	var err error
	if rawForm, err = escapeForm(rawForm); err != nil {
		return pattern{}, err
	}
	stars := strings.Count(rawForm, "*")
	k := glob
	switch {
	case !strings.ContainsAny(rawForm, `*?[\`):
		k = exact
	case stars == 2 && strings.HasPrefix(rawForm, "*") && strings.HasSuffix(rawForm, "*"):
		k = substring
	case stars == 1 && strings.HasPrefix(rawForm, "*"):
		k = suffix
	case stars == 1 && strings.HasSuffix(rawForm, "*"):
		k = prefix
	}
	pat := pattern{kind: k}
	switch k {
	case exact:
		pat.raw = rawForm
	case prefix:
		pat.raw = rawForm[:len(rawForm)-1]
	case suffix:
		pat.raw = rawForm[1:]
	case substring:
		pat.raw = rawForm[1 : len(rawForm)-1]
	case glob:
		if _, err := path.Match(rawForm, ""); err != nil {
			return pattern{}, err
		}
		pat.raw = rawForm
	}
	if k != glob && strings.ContainsAny(pat.raw, `*?[\`) {
		// "/a?b/*" and the like: a glob after all.
		pat = pattern{kind: glob, raw: rawForm}
	}
	pat.dec = decodedForm(pat.raw, pat.kind == glob)
	if !canMatch(rawForm) {
		return pattern{}, fmt.Errorf("matches no canonical path, and only canonical paths are public (no dot segments, //, \\, ;, or escaped / \\ . ; %% ? #)")
	}
	return pat, nil
}

// escapeForm spells a pattern as r.URL.EscapedPath() spells a path: bytes a
// client must escape are escaped in upper case, as browsers and Go do, and
// escapes the pattern already has are put in upper case. Glob syntax stays.
func escapeForm(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '%':
			if i+2 >= len(s) {
				return "", fmt.Errorf("bad escape at %q", s[i:])
			}
			if _, ok := unhex(s[i+1], s[i+2]); !ok {
				return "", fmt.Errorf("bad escape at %q", s[i:])
			}
			b.WriteByte('%')
			b.WriteString(strings.ToUpper(s[i+1 : i+3]))
			i += 2
		case rawOK[c] || strings.IndexByte(`*?[]\`, c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String(), nil
}

// decodedForm decodes the escapes of an escaped-form pattern; in a glob, a
// decoded byte that is glob syntax is quoted, so that it stays literal.
func decodedForm(s string, isGlob bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			c, _ = unhex(s[i+1], s[i+2])
			i += 2
			if isGlob && strings.IndexByte(`*?[]\`, c) >= 0 {
				b.WriteByte('\\')
			}
		} else if isGlob && c == '\\' && i+1 < len(s) {
			b.WriteByte(c)
			i++
			c = s[i]
		}
		b.WriteByte(c)
	}
	return b.String()
}

// canMatch reports whether some canonical path could match the escaped-form
// pattern s: its wildcards stand for a plain letter.
func canMatch(s string) bool {
	var b strings.Builder
	if strings.HasPrefix(s, "*") {
		b.WriteString("/")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?':
			b.WriteByte('x')
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '[': // a class stands for one plain letter too
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return false
			}
			i += end
			b.WriteByte('x')
		default:
			b.WriteByte(c)
		}
	}
	return Canonical(b.String())
}

// Match reports whether raw, the escaped path the upstream will receive
// (r.URL.EscapedPath()), is public: canonical, and matched by one pattern
// both as it is sent (an upstream that does not decode sees that) and
// decoded (an upstream that does sees this). It costs no allocation unless
// the path holds escapes.
func (p *Patterns) Match(raw string) bool {
	if p == nil {
		return false
	}
	if p.all {
		return true
	}
	if len(p.list) == 0 {
		return false
	}
	dec, ok := canonical(raw, true, true)
	if !ok {
		return false
	}
	for i := range p.list {
		pat := &p.list[i]
		if pat.match(pat.raw, raw) && (dec == raw && pat.raw == pat.dec || pat.match(pat.dec, dec)) {
			return true
		}
	}
	return false
}

// All reports whether every path is public ("*").
func (p *Patterns) All() bool { return p.all }

func (pat *pattern) match(lit, s string) bool {
	switch pat.kind {
	case exact:
		return s == lit
	case prefix:
		return strings.HasPrefix(s, lit)
	case suffix:
		return strings.HasSuffix(s, lit)
	case substring:
		return strings.Contains(s, lit)
	}
	ok, _ := path.Match(lit, s)
	return ok
}
