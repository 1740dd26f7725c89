package caddymodule

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/authgate/authgate/caddymodule/sessions"
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
// and returns the one to authenticate with: a session Bearer header first,
// else the session cookie. Whichever is used, the upstream gets neither:
// every Authorization header whose Bearer value is shaped like a session
// token goes, and every copy of the session cookie, on every Cookie line,
// under every name an upstream could file as the same. Other cookies and
// other Authorization headers (the app's own) stay as they were.
func (h *Handler) takeToken(r *http.Request) string {
	var bearer, cookie string
	if vals := r.Header["Authorization"]; len(vals) > 0 {
		kept := vals[:0]
		for _, v := range vals {
			if t, ok := sessionBearer(v); ok {
				if bearer == "" {
					bearer = t
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
			rest, value := stripCookie(line, h.cookie.Name, h.device)
			if cookie == "" {
				cookie = value
			}
			if rest != "" {
				kept = append(kept, rest)
			}
		}
		setOrDelete(r.Header, "Cookie", kept)
	}
	if bearer != "" {
		return bearer
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
	_, ok := sessions.Userhash(t)
	return t, ok
}

// stripCookie removes the session cookie and the device cookie (in other
// hands an allowance of password guesses) from one Cookie line. It returns
// the rest of the line ("" if nothing is left), and the value of the first
// cookie named exactly name (the one Go's r.Cookie would read).
func stripCookie(line, name, device string) (rest, value string) {
	removed, kept := 0, 0
	for s, more := line, true; more; {
		var part string
		part, s, more = strings.Cut(s, ";")
		n, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		n = strings.TrimSpace(n)
		switch {
		case n == "" && v == "":
		case sameCookieName(n, name) || sameCookieName(n, device):
			if value == "" && n == name {
				value = strings.Trim(strings.TrimSpace(v), `"`)
			}
			removed++
		default:
			kept++
		}
	}
	if removed == 0 {
		return line, ""
	}
	if kept == 0 {
		return "", value
	}
	var b strings.Builder
	for s, more := line, true; more; {
		var part string
		part, s, more = strings.Cut(s, ";")
		part = strings.TrimSpace(part)
		if n, _, _ := strings.Cut(part, "="); part == "" || sameCookieName(strings.TrimSpace(n), name) || sameCookieName(strings.TrimSpace(n), device) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(part)
	}
	return b.String(), value
}

// sameCookieName reports whether an upstream could read a cookie named got
// as the one named want. Some frameworks compare names case-insensitively;
// PHP url-decodes a name, skips its leading spaces, turns " " and "." into
// "_", and files "want[x]" as an array under want (a "[" without "]"
// becomes "_").
func sameCookieName(got, want string) bool {
	if strings.EqualFold(got, want) {
		return true
	}
	j := 0
	leading, mapping := true, true
	for i := 0; i < len(got); i++ {
		c := got[i]
		if c == '%' && i+2 < len(got) {
			if x, err := strconv.ParseUint(got[i+1:i+3], 16, 8); err == nil {
				c = byte(x)
				i += 2
			}
		}
		if leading && c == ' ' {
			continue
		}
		leading = false
		if mapping {
			switch c {
			case ' ', '.':
				c = '_'
			case '[':
				if strings.IndexByte(got[i:], ']') >= 0 {
					return j == len(want)
				}
				c, mapping = '_', false
			}
		}
		if j >= len(want) || lowerASCII(c) != lowerASCII(phpName(want[j])) {
			return false
		}
		j++
	}
	return j == len(want)
}

// phpName maps a byte of a configured cookie name as PHP would.
func phpName(c byte) byte {
	if c == ' ' || c == '.' {
		return '_'
	}
	return c
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
