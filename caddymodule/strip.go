package caddymodule

import (
	"bytes"
	"io"
	"net/http"
	"strings"

	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/web"
)

// What the upstream must never get from a client: identity headers it
// would trust, and the session token, which is the gate's and not the
// app's. Each function here runs on every request: one pass over what it
// looks at, and no allocation unless there is something to remove from a
// line that also holds something to keep.

// stripIdentity removes every header whose name an upstream could read as
// an identity header.
func stripIdentity(h http.Header) {
	for k := range h {
		if isIdentity(k) {
			delete(h, k)
		}
	}
}

func isIdentity(name string) bool {
	for _, id := range IdentityHeaders {
		if sameHeaderName(name, id) {
			return true
		}
	}
	return false
}

// sameHeaderName compares names as CGI does: case-insensitively, with "_"
// and "-" alike.
func sameHeaderName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if headerFold(a[i]) != headerFold(b[i]) {
			return false
		}
	}
	return true
}

func headerFold(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_':
		return '-'
	}
	return c
}

// badTrailer reports a client trailer the upstream must not get: an
// identity header, or credentials (RFC 9110 keeps those out of trailers;
// the gate never reads them there, so they could only smuggle a token).
func badTrailer(name string) bool {
	return isIdentity(name) || sameHeaderName(name, "Cookie") || sameHeaderName(name, "Authorization")
}

func stripTrailers(t http.Header) {
	for k := range t {
		if badTrailer(k) {
			delete(t, k)
		}
	}
}

// guardTrailers drops a client's bad trailers. net/http fills r.Trailer
// only when the body has been read to its end, and then with every trailer
// the client sent, declared in a Trailer header or not; reverse_proxy
// copies them at that moment and writes them after the body. So the
// declared names are dropped now, and the body is wrapped to drop them
// again as it ends, before reverse_proxy looks. Only a body of unknown
// length (chunked) or one over HTTP/2 or 3 can have trailers.
func guardTrailers(r *http.Request) {
	stripTrailers(r.Trailer)
	if r.Body != nil && r.Body != http.NoBody && (r.ContentLength < 0 || r.ProtoMajor > 1) {
		r.Body = &trailerGuard{ReadCloser: r.Body, r: r}
	}
}

type trailerGuard struct {
	io.ReadCloser
	r *http.Request
}

func (b *trailerGuard) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		stripTrailers(b.r.Trailer)
	}
	return n, err
}

// takeToken removes the session token from the request wherever it is,
// and returns the one to authenticate with: the first Authorization header
// that holds a session (a Bearer session token, or with users_api set the
// seed client's Basic userhash:ssid, see web.SessionBasic), else the
// session cookie. Whichever is used, the upstream gets none of them: every
// Authorization header whose Bearer value is shaped like a session token
// goes, and every Basic one that holds such a token (basicHoldsToken), and
// every copy of the session cookie, on every Cookie line, under every name
// an upstream could file as the same, and every cookie whose value is a
// session token, whatever its name (a client's own copy, such as the seed
// client's "ssid"). Other cookies and other Authorization headers (the
// app's own) stay as they were.
func (h *Handler) takeToken(r *http.Request) string {
	var header, cookie string
	found := false // a cookie net/http reads as the session cookie, maybe empty
	if vals := r.Header["Authorization"]; len(vals) > 0 {
		kept := vals[:0]
		for _, v := range vals {
			if t, ok := sessionBearer(v); ok {
				if header == "" {
					header = t
				}
				continue
			}
			if basicHoldsToken(v) {
				if header == "" && h.UsersAPI != "" {
					header, _ = web.SessionBasic(v)
				}
				continue
			}
			kept = append(kept, v)
		}
		setOrDelete(r.Header, "Authorization", kept)
	}
	if lines := r.Header["Cookie"]; len(lines) > 0 {
		kept := lines[:0]
		for _, line := range lines {
			rest, value, ok := stripCookie(line, h.cookie.Name, h.device)
			if !found && ok {
				cookie, found = value, true
			}
			if rest != "" {
				kept = append(kept, rest)
			}
		}
		setOrDelete(r.Header, "Cookie", kept)
	}
	if header != "" {
		return header
	}
	return cookie
}

func setOrDelete(h http.Header, name string, vals []string) {
	if len(vals) == 0 {
		delete(h, name)
		return
	}
	h[name] = vals
}

// sessionBearer returns the token of an "Authorization: Bearer" value
// shaped like a session token.
func sessionBearer(v string) (string, bool) {
	if len(v) <= 7 || !strings.EqualFold(v[:7], "bearer ") {
		return "", false
	}
	t := strings.TrimSpace(v[7:])
	return t, sessions.Shaped(t)
}

// basicHoldsToken tells whether an Authorization value is Basic credentials
// that hold a session token, as the seed client sends its session
// (userhash:ssid), read as leniently as some upstream might read them: the
// scheme in any case, any blanks after it, base64 in either alphabet
// (or, as Python does, with the characters of neither skipped), padded or
// not, and the token in any ":"-separated field, blanks around it trimmed.
// It costs no allocation unless the credentials are long.
func basicHoldsToken(v string) bool {
	if len(v) < 6 || !strings.EqualFold(v[:5], "basic") || v[5] != ' ' && v[5] != '\t' {
		return false
	}
	enc := v[6:]
	if len(enc)*3/4 < sessions.TokenLen {
		return false // too short to hold one
	}
	var stack [512]byte
	buf := stack[:]
	if n := len(enc)*3/4 + 3; n > len(buf) {
		buf = make([]byte, n)
	}
	if holdsToken(buf[:lenientBase64(buf, enc, true)]) {
		return true
	}
	// Standard base64 with "-" and "_" skipped, as Python's b64decode
	// reads them, says something else only if there are some.
	return strings.ContainsAny(enc, "-_") && holdsToken(buf[:lenientBase64(buf, enc, false)])
}

// lenientBase64 decodes s into dst, which must hold len(s)*3/4+3 bytes,
// skipping every character outside the alphabet ("=" and blanks among
// them): with urlToo, "-" and "_" are "+" and "/", else they are skipped.
func lenientBase64(dst []byte, s string, urlToo bool) int {
	var acc uint32
	bits, n := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		var x byte
		switch {
		case 'A' <= c && c <= 'Z':
			x = c - 'A'
		case 'a' <= c && c <= 'z':
			x = c - 'a' + 26
		case '0' <= c && c <= '9':
			x = c - '0' + 52
		case c == '+' || urlToo && c == '-':
			x = 62
		case c == '/' || urlToo && c == '_':
			x = 63
		default:
			continue
		}
		acc = acc<<6 | uint32(x)
		if bits += 6; bits >= 8 {
			bits -= 8
			dst[n] = byte(acc >> bits)
			n++
		}
	}
	return n
}

// holdsToken tells whether a field of the credentials, between colons and
// with the blanks around it trimmed, is shaped like a session token.
func holdsToken(creds []byte) bool {
	for len(creds) > 0 {
		field := creds
		if i := bytes.IndexByte(creds, ':'); i >= 0 {
			field, creds = creds[:i], creds[i+1:]
		} else {
			creds = nil
		}
		if sessions.Shaped(bytes.Trim(field, " \t")) {
			return true
		}
	}
	return false
}

// stripCookie removes the session cookie and the device cookie (in other
// hands an allowance of password guesses) from one Cookie line: every pair
// that some upstream files under either name (see readAs), and every pair
// whose value is a session token (see tokenValue). It returns the rest of
// the line ("" if nothing is left), the other pairs byte for byte, and the
// value of the first cookie net/http reads as name (the one r.Cookie, and
// so the pages and the users API, would read), if any.
func stripCookie(line, name, device string) (rest, value string, found bool) {
	removed, kept := 0, 0
	for s, more := line, true; more; {
		var part string
		part, s, more = strings.Cut(s, ";")
		part = strings.Trim(part, " \t")
		switch {
		case part == "":
		case readAs(part, name) || readAs(part, device):
			if !found {
				value, found = goCookieValue(part, name)
			}
			removed++
		case tokenValue(part):
			removed++
		default:
			kept++
		}
	}
	if removed == 0 {
		return line, "", false
	}
	if kept == 0 {
		return "", value, found
	}
	var b strings.Builder
	for s, more := line, true; more; {
		var part string
		part, s, more = strings.Cut(s, ";")
		part = strings.Trim(part, " \t")
		if part == "" || readAs(part, name) || readAs(part, device) || tokenValue(part) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(part)
	}
	return b.String(), value, found
}

// tokenValue tells whether the cookie pair part (or, for old Rack, one of
// its comma-separated pairs) has a session token for its whole value, the
// blanks around it (Latin-1 ones too, for Django) and a pair of quotes
// removed, whatever its name: a client's own copy of its token, such as the
// seed client's cookie "ssid", is no more the app's than the session
// cookie. (A client set on showing the app its token can always put it in
// a body; this keeps an ordinary client's copy from reaching the app.)
func tokenValue(part string) bool {
	if len(part) <= sessions.TokenLen {
		return false // no room for name=token
	}
	for s, more := part, true; more; {
		var pair string
		pair, s, more = strings.Cut(s, ",")
		_, v, ok := strings.Cut(pair, "=")
		if !ok || len(v) < sessions.TokenLen {
			continue
		}
		v = trimPythonSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if sessions.Shaped(v) {
			return true
		}
	}
	return false
}

// goCookieValue is the value of the pair part if net/http reads it as the
// cookie name: names compare exactly, and a value (maybe empty) is unquoted
// and must hold only the bytes net/http allows, or the pair does not count.
func goCookieValue(part, name string) (string, bool) {
	n, v, _ := strings.Cut(part, "=")
	if strings.Trim(n, " \t") != name {
		return "", false
	}
	if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f || c == '"' || c == ';' || c == '\\' {
			return "", false
		}
	}
	return v, true
}

// readAs tells whether some upstream files the cookie pair part (from
// between two semicolons) under the name its apps use for the cookie want.
// FuzzTakeToken holds the readers, each written out as its upstream parses:
//
//   - net/http and the frameworks that compare names case-insensitively,
//     with blanks around the name trimmed;
//   - Django, which reads the header as Latin-1 and trims what Python calls
//     space (also the bytes 0x85 and 0xA0) around the name;
//   - PHP, which skips white space before the name, files " " and "." as
//     "_", and "want[x]" as an array under want (a "[" never closed is a
//     "_", and so are " ", "." and "[" after it); before the 2022 fix
//     (7.4.31, 8.0.24, 8.1.11) it also url-decoded the name first ("+" is a
//     space), and a NUL ended it;
//   - Rack before 2.1, which also splits pairs at commas and url-decodes
//     their names.
func readAs(part, want string) bool {
	n, _, hasValue := strings.Cut(part, "=")
	return strings.EqualFold(strings.Trim(n, " \t"), want) ||
		(hasValue && trimPythonSpace(n) == want) ||
		phpReads(n, want, false) || phpReads(n, want, true) ||
		rackReads(part, want)
}

// trimPythonSpace trims the bytes whose Latin-1 characters Python's
// str.strip removes.
func trimPythonSpace(s string) string {
	space := func(c byte) bool {
		return c == ' ' || '\t' <= c && c <= '\r' || 0x1c <= c && c <= 0x1f || c == 0x85 || c == 0xa0
	}
	for len(s) > 0 && space(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && space(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// phpReads tells whether PHP files a cookie named n under the name a PHP
// app uses for want, url-decoding the name first when decode is set.
func phpReads(n, want string, decode bool) bool {
	n = strings.TrimLeft(n, " \t\n\v\f\r")
	// at returns the byte at i as PHP reads it, and where the next starts.
	at := func(i int) (byte, int) {
		if decode {
			if c, next, ok := urlDecodedByte(n, i); ok {
				return c, next
			}
		}
		return n[i], i + 1
	}
	// closed tells whether a "]" follows from i on, before a NUL ends the
	// name.
	closed := func(i int) bool {
		for i < len(n) {
			c, next := at(i)
			if c == ']' || c == 0 {
				return c == ']'
			}
			i = next
		}
		return false
	}
	i, j := 0, 0
	for i < len(n) { // leading spaces, decoded ones too
		c, next := at(i)
		if c != ' ' {
			break
		}
		i = next
	}
	opened := false // a "[" that is never closed came before
	for i < len(n) {
		c, next := at(i)
		switch {
		case c == 0:
			return j == len(want)
		case c == ' ' || c == '.':
			c = '_'
		case c == '[' && j == 0:
			return false // no name: no variable
		case c == '[' && !opened && closed(next):
			return j == len(want) // an array filed under the name so far
		case c == '[':
			c, opened = '_', true
		}
		if j >= len(want) || c != phpName(want[j]) {
			return false
		}
		i, j = next, j+1
	}
	return j == len(want)
}

// rackReads tells whether old Rack files a pair of part (split at commas
// too, the spaces after a separator skipped) under want: its name
// url-decoded, or as it is when that fails.
func rackReads(part, want string) bool {
	for s, more := part, true; more; {
		var pair string
		pair, s, more = strings.Cut(s, ",")
		n, _, _ := strings.Cut(strings.TrimLeft(pair, " "), "=")
		if !validURLEscapes(n) {
			if n == want {
				return true
			}
			continue
		}
		i, j := 0, 0
		for i < len(n) && j < len(want) {
			c, next, _ := urlDecodedByte(n, i)
			if c != want[j] {
				break
			}
			i, j = next, j+1
		}
		if i == len(n) && j == len(want) {
			return true
		}
	}
	return false
}

// urlDecodedByte decodes the byte at s[i] as a form does: "+" is a space,
// %XX the byte XX. ok is false for a byte that is itself.
func urlDecodedByte(s string, i int) (c byte, next int, ok bool) {
	switch {
	case s[i] == '+':
		return ' ', i + 1, true
	case s[i] == '%' && i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]):
		return unhex(s[i+1])<<4 | unhex(s[i+2]), i + 3, true
	}
	return s[i], i + 1, false
}

// validURLEscapes tells whether every "%" in s starts an escape.
func validURLEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) || !isHexDigit(s[i+1]) || !isHexDigit(s[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// phpName maps a byte of a configured cookie name as PHP would.
func phpName(c byte) byte {
	if c == ' ' || c == '.' {
		return '_'
	}
	return c
}
