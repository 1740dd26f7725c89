// Package mailtest runs a small SMTP server on 127.0.0.1 for tests, so code
// that sends mail is exercised over the real wire protocol: EHLO, STARTTLS
// (or implicit TLS) with a throwaway certificate, AUTH PLAIN, MAIL, RCPT,
// DATA and QUIT. It records every message it accepts.
//
//	srv := mailtest.NewServer(t)
//	m, _ := mail.NewSMTPMailer(srv.URL())
//	m.TLSConfig = srv.TLSConfig()
//	... send ...
//	body, _ := srv.Messages()[0].Body()
package mailtest

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	netmail "net/mail"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Default credentials. The password holds characters that must be
// percent-encoded in a URL, so clients' decoding is exercised too.
const (
	DefaultUser     = "mailer"
	DefaultPassword = "s3cret/p@ss:w0rd"
)

// Received is one message the server accepted.
type Received struct {
	From     string   // MAIL FROM address
	To       []string // RCPT TO addresses
	Data     []byte   // the message after DATA, dot-unstuffed, line endings as sent
	Username string   // the AUTH PLAIN credentials used, if any
	Password string
	TLS      bool // whether the session was encrypted
}

// Message parses r.Data.
func (r Received) Message() (*netmail.Message, error) {
	return netmail.ReadMessage(bytes.NewReader(r.Data))
}

// Subject returns the decoded Subject header.
func (r Received) Subject() (string, error) {
	m, err := r.Message()
	if err != nil {
		return "", err
	}
	return new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
}

// Body returns the decoded text body (quoted-printable undone), with "\n"
// line endings.
func (r Received) Body() (string, error) {
	m, err := r.Message()
	if err != nil {
		return "", err
	}
	body := m.Body
	if strings.EqualFold(m.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return "", err
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n"), nil
}

// Option changes how a Server behaves.
type Option func(*Server)

// ImplicitTLS makes the server speak TLS from the first byte (smtps).
func ImplicitTLS() Option { return func(s *Server) { s.implicitTLS = true } }

// WithoutSTARTTLS makes the server offer no STARTTLS: a plaintext server.
// It then offers AUTH PLAIN in plaintext.
func WithoutSTARTTLS() Option { return func(s *Server) { s.noSTARTTLS = true } }

// Credentials sets the accepted user and password; with user "", the
// server takes mail without AUTH.
func Credentials(user, password string) Option {
	return func(s *Server) { s.user, s.password = user, password }
}

// Server is a running test SMTP server. Its methods are safe for concurrent
// use.
type Server struct {
	implicitTLS, noSTARTTLS bool
	user, password          string

	ln        net.Listener
	tlsConfig *tls.Config // the server's
	roots     *x509.CertPool

	mu       sync.Mutex
	messages []Received
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
}

// NewServer starts a server on 127.0.0.1 with a fresh self-signed
// certificate (for 127.0.0.1, ::1 and localhost), STARTTLS and the default
// credentials, changed by opts. It stops when the test ends.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{user: DefaultUser, password: DefaultPassword, conns: map[net.Conn]struct{}{}}
	for _, o := range opts {
		o(s)
	}
	cert, roots, err := selfSigned()
	if err != nil {
		t.Fatalf("mailtest: %v", err)
	}
	s.roots = roots
	s.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mailtest: %v", err)
	}
	if s.implicitTLS {
		ln = tls.NewListener(ln, s.tlsConfig)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns the URL to reach the server with its credentials:
// smtp://user:password@127.0.0.1:port (smtps:// with ImplicitTLS).
func (s *Server) URL() string {
	u := url.URL{Scheme: "smtp", Host: s.Addr()}
	if s.implicitTLS {
		u.Scheme = "smtps"
	}
	if s.user != "" {
		u.User = url.UserPassword(s.user, s.password)
	}
	return u.String()
}

// TLSConfig returns a client configuration that trusts the server's
// certificate.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.roots, MinVersion: tls.VersionTLS12}
}

// Messages returns the messages accepted so far. A message is recorded
// before the server acknowledges its DATA, so it is here as soon as the
// client's send has returned.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.messages...)
}

// Close stops the server and waits for its sessions to end.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, conn)
				s.mu.Unlock()
				conn.Close()
			}()
			s.serve(conn)
		}()
	}
}

// session is the state of one SMTP session.
type session struct {
	conn       net.Conn
	tp         *textproto.Conn
	tls        bool
	authed     bool
	user, pass string
	from       string
	to         []string
}

func (s *Server) serve(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	_, isTLS := conn.(*tls.Conn)
	ss := &session{conn: conn, tp: textproto.NewConn(conn), tls: isTLS}
	ss.reply(220, "mailtest ESMTP ready")
	for {
		line, err := ss.tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			ss.from, ss.to = "", nil
			lines := []string{"mailtest"}
			if !ss.tls && !s.implicitTLS && !s.noSTARTTLS {
				lines = append(lines, "STARTTLS")
			}
			if s.user != "" && (ss.tls || s.noSTARTTLS) {
				lines = append(lines, "AUTH PLAIN")
			}
			ss.reply(250, lines...)
		case "HELO":
			ss.reply(250, "mailtest")
		case "STARTTLS":
			if ss.tls || s.noSTARTTLS {
				ss.reply(503, "5.5.1 STARTTLS not available")
				continue
			}
			ss.reply(220, "2.0.0 Ready to start TLS")
			tc := tls.Server(ss.conn, s.tlsConfig)
			if err := tc.Handshake(); err != nil {
				return
			}
			// RFC 3207: forget everything learned before TLS.
			*ss = session{conn: tc, tp: textproto.NewConn(tc), tls: true}
		case "AUTH":
			s.auth(ss, arg)
		case "MAIL":
			addr, ok := path(arg, "FROM:")
			switch {
			case s.user != "" && !ss.authed:
				ss.reply(530, "5.7.0 Authentication required")
			case !ok:
				ss.reply(501, "5.5.4 Syntax: MAIL FROM:<address>")
			default:
				ss.from, ss.to = addr, nil
				ss.reply(250, "2.1.0 OK")
			}
		case "RCPT":
			addr, ok := path(arg, "TO:")
			switch {
			case ss.from == "":
				ss.reply(503, "5.5.1 MAIL first")
			case !ok:
				ss.reply(501, "5.5.4 Syntax: RCPT TO:<address>")
			default:
				ss.to = append(ss.to, addr)
				ss.reply(250, "2.1.5 OK")
			}
		case "DATA":
			if len(ss.to) == 0 {
				ss.reply(503, "5.5.1 RCPT first")
				continue
			}
			ss.reply(354, "End data with <CR><LF>.<CR><LF>")
			data, err := readData(ss.tp.R)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.messages = append(s.messages, Received{
				From: ss.from, To: ss.to, Data: data,
				Username: ss.user, Password: ss.pass, TLS: ss.tls,
			})
			s.mu.Unlock()
			ss.from, ss.to = "", nil
			ss.reply(250, "2.0.0 OK queued")
		case "RSET":
			ss.from, ss.to = "", nil
			ss.reply(250, "2.0.0 OK")
		case "NOOP":
			ss.reply(250, "2.0.0 OK")
		case "QUIT":
			ss.reply(221, "2.0.0 Bye")
			return
		default:
			ss.reply(502, "5.5.2 Command not recognized")
		}
	}
}

// auth handles AUTH PLAIN, with the initial response on the command line
// (as net/smtp sends it) or after a 334.
func (s *Server) auth(ss *session, arg string) {
	mech, resp, _ := strings.Cut(arg, " ")
	switch {
	case s.user == "" || (!ss.tls && !s.noSTARTTLS):
		ss.reply(530, "5.7.0 Must issue a STARTTLS command first")
		return
	case ss.authed:
		ss.reply(503, "5.5.1 Already authenticated")
		return
	case !strings.EqualFold(mech, "PLAIN"):
		ss.reply(504, "5.5.4 Unrecognized authentication type")
		return
	}
	if resp == "" {
		ss.reply(334, "")
		line, err := ss.tp.ReadLine()
		if err != nil {
			return
		}
		resp = line
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	parts := strings.Split(string(raw), "\x00")
	if err != nil || len(parts) != 3 {
		ss.reply(501, "5.5.2 Cannot decode response")
		return
	}
	if parts[1] != s.user || parts[2] != s.password {
		ss.reply(535, "5.7.8 Authentication credentials invalid")
		return
	}
	ss.authed, ss.user, ss.pass = true, parts[1], parts[2]
	ss.reply(235, "2.7.0 Authentication successful")
}

// reply writes a possibly multi-line reply.
func (ss *session) reply(code int, lines ...string) {
	for i, l := range lines {
		sep := " "
		if i < len(lines)-1 {
			sep = "-"
		}
		_ = ss.tp.PrintfLine("%d%s%s", code, sep, l)
	}
}

// path extracts the address from "FROM:<addr> [params]".
func path(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimSpace(arg[len(prefix):])
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	addr, _, ok := strings.Cut(rest[1:], ">")
	return addr, ok
}

// readData reads a DATA section up to the line ".", keeping the line
// endings as sent (textproto's DotReader would turn CRLF into LF, hiding
// a client that sends bare LF) and undoing dot-stuffing.
func readData(r *bufio.Reader) ([]byte, error) {
	const maxSize = 10 << 20
	var b bytes.Buffer
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if line == ".\r\n" {
			return b.Bytes(), nil
		}
		b.WriteString(strings.TrimPrefix(line, "."))
		if b.Len() > maxSize {
			return nil, errors.New("message too large")
		}
	}
}

// selfSigned returns a fresh ECDSA certificate for the loopback names and a
// pool that trusts it.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mailtest"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("parse certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots, nil
}
