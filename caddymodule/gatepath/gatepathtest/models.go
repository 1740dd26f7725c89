// Package gatepathtest models upstream servers that read the same path
// bytes differently, to test the gate against them: Go's own
// net/http.ServeMux (a real one), and a lenient server that does everything
// some real server does to a path (Tomcat's ;parameters, IIS's backslashes,
// double decoding, %u escapes, overlong UTF-8, best-fit and fullwidth
// characters, case folding, Windows' trailing dots and spaces, C's NUL).
// Both route /healthz and /assets/ as public, /secret/ and the rest as
// private. Hostile lists request-targets that have fooled gates.
package gatepathtest

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"strconv"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// PublicPatterns are the gate's public patterns that match the models'
// public routes.
var PublicPatterns = []string{"/healthz", "/assets/*"}

// Route is where a model sends a request.
type Route struct {
	Name   string `json:"route"`
	Public bool   `json:"public"`
}

// Model is one upstream's way of routing a request-target, the bytes
// after the method on the request line.
type Model struct {
	Name    string
	Resolve func(target string) Route
}

// Models returns every model.
func Models() []Model { return []Model{ServeMux(), Lenient()} }

// ServeMux is Go's net/http.ServeMux with the routes /healthz and /assets/
// (public), /secret/ and / (private). A request it answers with a redirect
// (it does for paths it would clean) is routed nowhere: "301".
func ServeMux() Model {
	mux := http.NewServeMux()
	for pattern, route := range map[string]Route{
		"/healthz": {"healthz", true},
		"/assets/": {"assets", true},
		"/secret/": {"secret", false},
		"/":        {"root", false},
	} {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Route", route.Name)
			w.Header().Set("X-Public", strconv.FormatBool(route.Public))
		})
	}
	return Model{Name: "servemux", Resolve: func(target string) Route {
		// Parsed by the same code as a Go upstream's.
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: upstream\r\n\r\n")))
		if err != nil {
			return Route{Name: "400"}
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if name := rec.Header().Get("X-Route"); name != "" {
			return Route{Name: name, Public: rec.Header().Get("X-Public") == "true"}
		}
		return Route{Name: strconv.Itoa(rec.Code)}
	}}
}

// Lenient is a server that takes every liberty some real server takes with
// a path, in the order that opens the most doors.
func Lenient() Model {
	return Model{Name: "lenient", Resolve: func(target string) Route {
		p := LenientPath(target)
		switch {
		case p == "/healthz":
			return Route{"healthz", true}
		case p == "/assets" || strings.HasPrefix(p, "/assets/"): // cleaned: no trailing slash
			return Route{"assets", true}
		case p == "/secret" || strings.HasPrefix(p, "/secret/"):
			return Route{"secret", false}
		}
		return Route{"root", false}
	}}
}

// LenientPath is the path the lenient server serves for target.
func LenientPath(target string) string {
	p, _, _ := strings.Cut(target, "?")
	// Decoded twice (a proxy and then the app), with IIS's %uXXXX too.
	p = percentDecode(percentDecode(p))
	// Old IIS read overlong UTF-8: %c0%ae is a dot.
	p = overlong(p)
	// NFKC (fullwidth ．／＼ become . / \) and Windows' best fit (¥ ₩ are
	// the backslash of Japanese and Korean code pages).
	p = bestFit.Replace(norm.NFKC.String(p))
	// A decoded ? or # ends the path to a server that parses it again.
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	// C strings end at NUL.
	if i := strings.IndexByte(p, 0); i >= 0 {
		p = p[:i]
	}
	p = strings.ReplaceAll(p, `\`, "/")
	segs := strings.Split(p, "/")
	for i, s := range segs {
		// Tomcat and Jetty drop ;parameters from every segment.
		s, _, _ = strings.Cut(s, ";")
		// Windows drops a segment's trailing dots and spaces.
		if s != "." && s != ".." {
			s = strings.TrimRight(s, ". ")
		}
		segs[i] = s
	}
	p = path.Clean("/" + strings.Join(segs, "/"))
	return strings.ToLower(p)
}

var bestFit = strings.NewReplacer("¥", `\`, "₩", `\`, "∕", "/", "⁄", "/", "∖", `\`, "⧵", `\`, "⧸", "/", "⧹", `\`)

// percentDecode decodes %XX and %uXXXX, leaving malformed escapes as they
// are, as lenient servers do.
func percentDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 < len(s) {
				if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
					b.WriteByte(byte(v))
					i += 2
					continue
				}
			}
			if i+5 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') {
				if v, err := strconv.ParseUint(s[i+2:i+6], 16, 16); err == nil {
					b.WriteRune(rune(v))
					i += 5
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// overlong decodes 2- and 3-byte overlong UTF-8 forms of ASCII.
func overlong(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case (c == 0xc0 || c == 0xc1) && i+1 < len(s) && s[i+1]&0xc0 == 0x80:
			b.WriteByte((c&0x1f)<<6 | s[i+1]&0x3f)
			i++
			continue
		case c == 0xe0 && i+2 < len(s) && s[i+1]&0xe0 == 0x80 && s[i+2]&0xc0 == 0x80:
			b.WriteByte((s[i+1]&0x3f)<<6 | s[i+2]&0x3f)
			i += 2
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Report is what Handler tells about the request it received.
type Report struct {
	Model   string      `json:"model"`
	Route   string      `json:"route"`
	Public  bool        `json:"public"`
	URI     string      `json:"uri"` // the request-target as received
	Header  http.Header `json:"header"`
	Trailer http.Header `json:"trailer"`
	Body    string      `json:"body"`
}

// ModelHeader names the model in every answer Handler gives, so that a
// test can tell the upstream's answers from the gate's.
const ModelHeader = "X-Upstream-Model"

// Handler is m as an upstream: it reads the whole body (and so the
// trailers), routes the request-target as received, and answers 200 with a
// Report in JSON.
func Handler(m Model) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		route := m.Resolve(r.RequestURI)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(ModelHeader, m.Name)
		_ = json.NewEncoder(w).Encode(Report{
			Model: m.Name, Route: route.Name, Public: route.Public,
			URI: r.RequestURI, Header: r.Header, Trailer: r.Trailer, Body: string(body),
		})
	})
}
