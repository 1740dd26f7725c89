// Package web holds the HTTP plumbing that every front door shares: the
// session cookie, where a request's session token comes from, the client IP
// as Caddy sees it, and bounded parsing of request parameters.
package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/auth"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/store"
	"github.com/authgate/authgate/caddymodule/username"
)

// MaxBody is the largest request body any endpoint reads.
const MaxBody = 64 << 10

// ErrBadInput is returned for a body that is too large or does not parse.
var ErrBadInput = errors.New("malformed or oversized request body")

// Cookie describes the session cookie.
type Cookie struct {
	Name   string
	Domain string
}

// Set sends the session cookie. It is Secure whenever the client reached
// the site over HTTPS (Secure), so that a login over HTTPS is never replayed
// over plain HTTP.
func (c Cookie) Set(w http.ResponseWriter, r *http.Request, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: c.Name, Value: token, Domain: c.Domain, Path: "/",
		Expires: expires, MaxAge: int(math.Ceil(time.Until(expires).Seconds())),
		HttpOnly: true, Secure: Secure(r), SameSite: http.SameSiteLaxMode,
	})
}

// Clear tells the browser to drop the session cookie.
func (c Cookie) Clear(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: c.Name, Value: "", Domain: c.Domain, Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: Secure(r), SameSite: http.SameSiteLaxMode,
	})
}

// Secure tells whether the client reached the site over HTTPS, and so
// whether a cookie authgate sets must be Secure: the request came over TLS,
// or from a proxy that Caddy trusts (the server's trusted_proxies) saying
// X-Forwarded-Proto: https. Every value the header holds must say https:
// a trusted proxy that appends to a client's own header leaves the client's
// word in front of its own. Any other peer's X-Forwarded-Proto is the
// client's say-so and counts for nothing.
func Secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); !trusted {
		return false
	}
	lines := r.Header.Values("X-Forwarded-Proto")
	if len(lines) == 0 {
		return false
	}
	for _, line := range lines {
		for proto := range strings.SplitSeq(line, ",") {
			if !strings.EqualFold(strings.TrimSpace(proto), "https") {
				return false
			}
		}
	}
	return true
}

// Device is the device cookie that goes with the session cookie: named after
// it, with the same scope and flags.
func (c Cookie) Device() Cookie {
	return Cookie{Name: c.Name + "_device", Domain: c.Domain}
}

// DeviceIssuer makes device cookies (auth.Service.NewDevice).
type DeviceIssuer interface {
	NewDevice(u accounts.User) (value string, expires time.Time)
}

// LoggedIn sends the cookie of a session just started for u, and a new
// device cookie for u: one per browser, naming the account last logged in.
func (c Cookie) LoggedIn(w http.ResponseWriter, r *http.Request, devices DeviceIssuer, u accounts.User, token string, sess sessions.Session) {
	c.Set(w, r, token, time.Unix(sess.Expires, 0))
	if value, expires := devices.NewDevice(u); value != "" {
		c.Device().Set(w, r, value, expires)
	}
}

// Attempt describes this request's attempt at username's secret: the
// client IP, the device cookie, if any, and the User-Agent.
func (c Cookie) Attempt(r *http.Request, username string) auth.Attempt {
	at := auth.Attempt{Username: username, IP: ClientIP(r), UserAgent: r.UserAgent()}
	if ck, err := r.Cookie(c.Device().Name); err == nil {
		at.Device = ck.Value
	}
	return at
}

// Token returns the session token a request carries: in an
// "Authorization: Bearer" header, else in the session cookie. fromHeader
// tells which, so that the gate can remove it before going upstream.
func (c Cookie) Token(r *http.Request) (token string, fromHeader bool) {
	if t, ok := BearerToken(r); ok {
		return t, true
	}
	if ck, err := r.Cookie(c.Name); err == nil {
		return ck.Value, false
	}
	return "", false
}

// BearerToken returns the token of an "Authorization: Bearer" header.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", false
}

// BasicCredentials returns the pair of an "Authorization: Basic" header,
// bounded in size like any other input.
func BasicCredentials(r *http.Request) (user, pass string, ok bool) {
	h := r.Header.Get("Authorization")
	if len(h) > 8*1024 {
		return "", "", false
	}
	return r.BasicAuth()
}

// HasBasic tells whether the request carries Basic credentials at all.
func HasBasic(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	return len(h) >= 6 && strings.EqualFold(h[:6], "basic ")
}

// ClientIP is the client address as Caddy determined it, which honours the
// server's trusted_proxies.
func ClientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = strings.Trim(host[:i], "[]")
	}
	return host
}

// Params are a request's parameters, from a JSON object or a form.
type Params struct {
	values map[string]string
}

// Get returns a parameter; ok is false when it is absent or not a scalar.
func (p Params) Get(name string) (string, bool) {
	v, ok := p.values[name]
	return v, ok
}

// String returns a parameter or "".
func (p Params) String(name string) string { return p.values[name] }

// Bool reads a flag the way both JSON and forms spell it.
func (p Params) Bool(name string) bool {
	switch strings.ToLower(p.values[name]) {
	case "true", "1", "on", "yes":
		return true
	}
	return false
}

// ReadParams reads the query string and, for requests with a body, the body:
// a body that parses as a JSON object is JSON whatever its Content-Type says
// (the dialects' clients mislabel it), anything else is read as a form.
// Body values win over query values.
//
// A parameter holding NUL or bytes that are not UTF-8 (also as a JSON escape
// of half a surrogate pair, which Go's decoder would silently replace) makes
// it return auth.ErrBadBytes, with the parameters read, so that a login can
// still be counted as a failure.
func ReadParams(w http.ResponseWriter, r *http.Request) (Params, error) {
	p := Params{values: map[string]string{}}
	query := r.URL.Query()
	bad := BadValues(query)
	for k, v := range query {
		if len(v) > 0 {
			p.values[k] = v[0]
		}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return p, badBytes(bad)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		return p, ErrBadInput
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return p, badBytes(bad)
	}
	if trimmed[0] == '{' || trimmed[0] == '[' || isJSONType(r) {
		jsonBad, err := p.fromJSON(trimmed)
		if err != nil {
			return p, err
		}
		return p, badBytes(bad || jsonBad)
	}
	form, err := url.ParseQuery(string(trimmed))
	if err != nil {
		return p, ErrBadInput
	}
	for k, v := range form {
		if len(v) > 0 {
			p.values[k] = v[0]
		}
	}
	return p, badBytes(bad || BadValues(form))
}

func badBytes(bad bool) error {
	if bad {
		return auth.ErrBadBytes
	}
	return nil
}

// BadValues tells whether any name or value of a form holds NUL or bytes
// that are not UTF-8.
func BadValues(form url.Values) bool {
	for k, vs := range form {
		if username.BadBytes(k) {
			return true
		}
		for _, v := range vs {
			if username.BadBytes(v) {
				return true
			}
		}
	}
	return false
}

// fromJSON reads a JSON object's scalar members; bad tells whether the text
// holds NUL or anything that is not UTF-8. An object that names a member
// twice is refused (unless it has bad bytes, which are refused as such):
// decoders differ on which one counts (Go's and JavaScript's the last, a
// form reader here the first), so a proxy or log before us could read
// other parameters than we do.
func (p Params) fromJSON(body []byte) (bad bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false, ErrBadInput
	}
	bad = !utf8.Valid(body) || halfSurrogate(body)
	seen, twice := map[string]bool{}, false
	for dec.More() {
		tok, err := dec.Token()
		k, ok := tok.(string)
		if err != nil || !ok {
			return false, ErrBadInput
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return false, ErrBadInput
		}
		if s, ok := v.(string); (ok && username.BadBytes(s)) || username.BadBytes(k) {
			bad = true
		}
		if seen[k] { // the first counts, as in a form
			twice = true
			continue
		}
		seen[k] = true
		switch v := v.(type) {
		case string:
			p.values[k] = v
		case json.Number:
			p.values[k] = v.String()
		case bool:
			p.values[k] = strconv.FormatBool(v)
		default: // null, objects and arrays are no parameter of ours: absent
			delete(p.values, k)
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return false, ErrBadInput
	}
	if _, err := dec.Token(); err != io.EOF { // one object, and nothing after it
		return false, ErrBadInput
	}
	if twice && !bad {
		return false, ErrBadInput
	}
	return bad, nil
}

// halfSurrogate tells whether a JSON text escapes half of a UTF-16
// surrogate pair (\ud800 alone), which encodes no character.
func halfSurrogate(body []byte) bool {
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		i++ // the escaped character; an escaped backslash is skipped whole
		r, ok := escapedUnit(body, i)
		if !ok {
			continue
		}
		i += 4
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return true
		case r >= 0xd800 && r <= 0xdbff:
			low, ok := escapedUnit(body, i+2)
			if !ok || body[i+1] != '\\' || low < 0xdc00 || low > 0xdfff {
				return true
			}
			i += 6
		}
	}
	return false
}

// escapedUnit reads the UTF-16 unit of a \uXXXX escape whose u is at body[i].
func escapedUnit(body []byte, i int) (rune, bool) {
	if i+4 >= len(body) || body[i] != 'u' {
		return 0, false
	}
	v, err := strconv.ParseUint(string(body[i+1:i+5]), 16, 16)
	return rune(v), err == nil
}

func isJSONType(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/json") || strings.HasSuffix(strings.SplitN(ct, ";", 2)[0], "+json")
}

// SameOrigin tells whether a request that changes something comes from
// this site. A browser's Sec-Fetch-Site (which no page can forge) must be
// same-origin or none (typed or bookmarked); same-site is refused too, since
// a sibling subdomain may be anyone's. Its Origin header (or, without one,
// its Referer) must name the request's own host. Requests with none of these
// come from no browser, and so carry no CSRF risk.
func SameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	from := r.Header.Get("Origin")
	if from == "" {
		from = r.Header.Get("Referer")
		if from == "" {
			return true
		}
	}
	u, err := url.Parse(from)
	if err != nil || u.Host == "" {
		return false // includes "null", sent from sandboxed or privacy-sensitive contexts
	}
	return strings.EqualFold(u.Host, r.Host)
}

// WriteJSON writes v, a value of plain maps, slices, strings, numbers and
// booleans, as a JSON answer with status: never stored by a cache (answers
// carry session tokens and personal data), never sniffed as another type.
// Both API dialects answer through it.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// Failure classifies the errors every front door shares and returns their
// status: 429 (with Retry-After) for too many attempts, 400 for bad input,
// 422 for a weak password, 503 for a store that is down and 500 for anything
// else. It logs the last two, the ones an operator must see; the client
// learns no details.
func Failure(w http.ResponseWriter, r *http.Request, logger *zap.Logger, err error) int {
	var throttled *auth.ThrottledError
	switch {
	case errors.As(err, &throttled):
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(throttled.RetryAfter.Seconds()))))
		return http.StatusTooManyRequests
	case errors.Is(err, auth.ErrInvalidInput):
		return http.StatusBadRequest
	case errors.Is(err, auth.ErrTooWeak):
		return http.StatusUnprocessableEntity
	case errors.Is(err, store.ErrUnavailable):
		logger.Error("store unavailable", zap.String("uri", r.URL.Path), zap.Error(err))
		return http.StatusServiceUnavailable
	default:
		logger.Error("internal error", zap.String("uri", r.URL.Path), zap.Error(err))
		return http.StatusInternalServerError
	}
}
