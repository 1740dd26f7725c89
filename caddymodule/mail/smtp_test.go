package mail

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/caddymodule/mail/mailtest"
	"github.com/authgate/authgate/caddymodule/testenv"
)

var testMessage = Message{
	From:    "Authgate <no-reply@example.com>",
	To:      "Ann <ann@example.org>",
	Subject: "Réinitialisation du mot de passe",
	Body:    "Your code is 123456.\n.\n..leading dots survive dot-stuffing\n",
}

// newMailer returns a mailer for rawURL that trusts srv's certificate.
func newMailer(t *testing.T, rawURL string, srv *mailtest.Server) *SMTPMailer {
	t.Helper()
	m, err := NewSMTPMailer(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	m.TLSConfig = srv.TLSConfig()
	return m
}

// withPassword returns rawURL with its password replaced.
func withPassword(t *testing.T, rawURL, password string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String()
}

// checkDelivered checks that srv received exactly testMessage, with the
// default credentials.
func checkDelivered(t *testing.T, srv *mailtest.Server, wantTLS bool) {
	t.Helper()
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("server received %d messages, want 1", len(msgs))
	}
	r := msgs[0]
	if r.From != "no-reply@example.com" || len(r.To) != 1 || r.To[0] != "ann@example.org" {
		t.Errorf("envelope from %q to %q", r.From, r.To)
	}
	if r.Username != mailtest.DefaultUser || r.Password != mailtest.DefaultPassword {
		t.Errorf("credentials %q/%q arrived, want the URL's, percent-decoded", r.Username, r.Password)
	}
	if r.TLS != wantTLS {
		t.Errorf("TLS = %v, want %v", r.TLS, wantTLS)
	}
	checkCRLF(t, r.Data)
	if subject, err := r.Subject(); err != nil || subject != testMessage.Subject {
		t.Errorf("subject %q, %v", subject, err)
	}
	if body, err := r.Body(); err != nil || body != testMessage.Body {
		t.Errorf("body %q, %v; want %q", body, err, testMessage.Body)
	}
}

func TestSMTPStartTLS(t *testing.T) {
	srv := mailtest.NewServer(t)
	m := newMailer(t, srv.URL(), srv)
	if err := m.Send(context.Background(), testMessage); err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, srv, true)
}

func TestSMTPImplicitTLS(t *testing.T) {
	srv := mailtest.NewServer(t, mailtest.ImplicitTLS())
	if !strings.HasPrefix(srv.URL(), "smtps://") {
		t.Fatalf("URL %q", srv.URL())
	}
	m := newMailer(t, srv.URL(), srv)
	if err := m.Send(context.Background(), testMessage); err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, srv, true)
}

// TestSMTPLoopbackPlaintext: a local relay without TLS is allowed on a
// loopback address, as net/smtp allows PLAIN auth there.
func TestSMTPLoopbackPlaintext(t *testing.T) {
	srv := mailtest.NewServer(t, mailtest.WithoutSTARTTLS())
	m := newMailer(t, srv.URL(), srv)
	if err := m.Send(context.Background(), testMessage); err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, srv, false)
}

func TestSMTPWithoutAuth(t *testing.T) {
	srv := mailtest.NewServer(t, mailtest.Credentials("", ""))
	m := newMailer(t, "smtp://"+srv.Addr(), srv)
	if err := m.Send(context.Background(), testMessage); err != nil {
		t.Fatal(err)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || msgs[0].Username != "" || !msgs[0].TLS {
		t.Errorf("messages %+v, want one, over TLS, without AUTH", msgs)
	}
}

// rawServer is a scripted TCP server for protocol corner cases. It sends
// greeting, then answers each line with respond(line); with an empty
// greeting it says nothing at all, like a stalled server.
type rawServer struct {
	ln    net.Listener
	mu    sync.Mutex
	lines []string
	conns int
}

func newRawServer(t *testing.T, greeting string, respond func(line string) string) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	var wg sync.WaitGroup
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range open {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			open = append(open, conn)
			s.mu.Unlock()
			wg.Go(func() {
				defer conn.Close()
				if greeting == "" {
					_, _ = conn.Read(make([]byte, 1)) // until closed
					return
				}
				_, _ = conn.Write([]byte(greeting + "\r\n"))
				r := bufio.NewReader(conn)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimRight(line, "\r\n")
					s.mu.Lock()
					s.lines = append(s.lines, line)
					s.mu.Unlock()
					if _, err := conn.Write([]byte(respond(line) + "\r\n")); err != nil {
						return
					}
				}
			})
		}
	})
	return s
}

func (s *rawServer) Addr() string { return s.ln.Addr().String() }

func (s *rawServer) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

func (s *rawServer) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// plaintextRespond answers like a server without STARTTLS that offers AUTH
// PLAIN and takes any mail.
func plaintextRespond(line string) string {
	switch verb, _, _ := strings.Cut(line, " "); strings.ToUpper(verb) {
	case "EHLO":
		return "250-plain.example.net\r\n250 AUTH PLAIN"
	case "AUTH":
		return "235 2.7.0 OK"
	case "DATA":
		return "354 go on"
	case "QUIT":
		return "221 bye"
	}
	return "250 OK"
}

// dialTo makes m reach addr whatever its host name says.
func dialTo(m *SMTPMailer, addr string) {
	m.dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
}

// TestSMTPRefusesPlaintextRemote: a remote server that does not offer
// STARTTLS gets neither the credentials nor the mail.
func TestSMTPRefusesPlaintextRemote(t *testing.T) {
	srv := newRawServer(t, "220 plain.example.net ESMTP", plaintextRespond)
	m, err := NewSMTPMailer("smtp://mailer:s3cret@mail.example.com:587")
	if err != nil {
		t.Fatal(err)
	}
	dialTo(m, srv.Addr())
	err = m.Send(context.Background(), testMessage)
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("Send() = %v, want a refusal naming STARTTLS", err)
	}
	if srv.Conns() != 1 {
		t.Fatalf("%d connections, want 1: the test did not exercise the server", srv.Conns())
	}
	for _, line := range srv.Lines() {
		if verb, _, _ := strings.Cut(line, " "); verb != "EHLO" && verb != "QUIT" {
			t.Errorf("client sent %q over plaintext", line)
		}
	}

	// The control: the same server, reached as loopback, gets the mail.
	m, err = NewSMTPMailer("smtp://mailer:s3cret@127.0.0.1:587")
	if err != nil {
		t.Fatal(err)
	}
	dialTo(m, srv.Addr())
	if err := m.Send(context.Background(), testMessage); err != nil {
		t.Fatalf("loopback control: %v", err)
	}
}

// TestSMTPVerifiesCertificate: STARTTLS is useless unless the certificate
// is checked, against trusted roots and the URL's host name.
func TestSMTPVerifiesCertificate(t *testing.T) {
	srv := mailtest.NewServer(t)

	m, err := NewSMTPMailer(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	// TLSConfig nil: system roots, which do not know the test CA.
	if err := m.Send(context.Background(), testMessage); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Send(untrusted certificate) = %v, want a certificate error", err)
	}

	// Trusted CA, but the certificate is not for mail.example.com.
	m = newMailer(t, "smtp://"+url.UserPassword(mailtest.DefaultUser, mailtest.DefaultPassword).String()+"@mail.example.com:587", srv)
	dialTo(m, srv.Addr())
	if err := m.Send(context.Background(), testMessage); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Send(certificate for another name) = %v, want a certificate error", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("server received %d messages over unverified TLS", n)
	}
}

// checkNoSecret fails if err shows password in any form that could reach a
// log: plain, percent-encoded, or in the AUTH PLAIN blob.
func checkNoSecret(t *testing.T, err error, user, password string) {
	t.Helper()
	text := err.Error()
	for _, s := range []string{
		password,
		url.QueryEscape(password),
		url.PathEscape(password),
		url.UserPassword(user, password).String(),
		base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password)),
	} {
		if strings.Contains(text, s) {
			t.Errorf("error %q contains the password (as %q)", text, s)
		}
	}
}

func TestSMTPWrongPassword(t *testing.T) {
	srv := mailtest.NewServer(t)
	const wrong = "wrong/p@ss:word"
	m := newMailer(t, withPassword(t, srv.URL(), wrong), srv)
	err := m.Send(context.Background(), testMessage)
	if err == nil || !strings.Contains(err.Error(), "535") {
		t.Fatalf("Send() = %v, want the server's 535", err)
	}
	checkNoSecret(t, err, mailtest.DefaultUser, wrong)
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("server received %d messages", n)
	}
}

// TestSMTPScrubsEchoedCredentials: server replies end up in errors; one
// that echoes the AUTH line must not carry the password into a log.
func TestSMTPScrubsEchoedCredentials(t *testing.T) {
	srv := newRawServer(t, "220 echo ESMTP", func(line string) string {
		if strings.HasPrefix(line, "AUTH") {
			return "535 5.7.8 rejected " + line + " for s3cret"
		}
		return plaintextRespond(line)
	})
	m, err := NewSMTPMailer("smtp://mailer:s3cret@127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	dialTo(m, srv.Addr())
	err = m.Send(context.Background(), testMessage)
	if err == nil || !strings.Contains(err.Error(), "535") {
		t.Fatalf("Send() = %v, want the server's 535", err)
	}
	checkNoSecret(t, err, "mailer", "s3cret")
}

func TestSMTPServerDown(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	m, err := NewSMTPMailer("smtp://mailer:s3cret@" + addr)
	if err != nil {
		t.Fatal(err)
	}
	err = m.Send(context.Background(), testMessage)
	if err == nil || !strings.Contains(err.Error(), "connect") {
		t.Fatalf("Send() = %v, want a connection error", err)
	}
	checkNoSecret(t, err, "mailer", "s3cret")
}

// TestSMTPStalledServer: a server that accepts and says nothing holds a
// Send only until its context ends, by cancellation or by its deadline.
func TestSMTPStalledServer(t *testing.T) {
	srv := newRawServer(t, "", nil)
	m, err := NewSMTPMailer("smtp://mailer:s3cret@" + srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var dialed atomic.Int32 // connections the mailer made
	m.dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, srv.Addr())
		if err == nil {
			dialed.Add(1)
		}
		return c, err
	}

	// Cancelled once the server holds the connection. The context's far
	// deadline is the only other way out, so returning at all is the proof.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	sent := make(chan error, 1)
	go func() { sent <- m.Send(ctx, testMessage) }()
	testenv.WaitFor(t, "the server to accept", func() bool { return srv.Conns() == 1 })
	cancel()
	select {
	case err := <-sent:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Send(cancelled) = %v, want context.Canceled", err)
		}
	case <-time.After(testenv.Patience):
		t.Fatal("Send still blocked after its context was cancelled")
	}

	// A deadline that passes while the server stalls. A machine too busy
	// to connect before it tries again with a longer one: the stall must be
	// what the deadline ends.
	for wait := 100 * time.Millisecond; ; wait *= 2 {
		if wait > testenv.Patience {
			t.Fatal("never connected before the deadline")
		}
		before := dialed.Load()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		err = m.Send(ctx, testMessage)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Send(deadline) = %v, want context.DeadlineExceeded", err)
		}
		if dialed.Load() > before {
			break
		}
	}
	want := int(dialed.Load())
	testenv.WaitFor(t, "the server to accept every connection", func() bool { return srv.Conns() >= want })
}

func TestSMTPRefusesBadMessageBeforeConnecting(t *testing.T) {
	srv := newRawServer(t, "220 x", plaintextRespond)
	m, err := NewSMTPMailer("smtp://" + srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	bad := testMessage
	bad.To = "ann@example.org\r\nRCPT TO:<all@example.net>"
	if err := m.Send(context.Background(), bad); err == nil {
		t.Error("Send accepted an injected recipient")
	}
	if srv.Conns() != 0 {
		t.Error("Send connected for a message it must refuse")
	}
}

func TestNewSMTPMailer(t *testing.T) {
	tests := []struct {
		name       string
		url        string
		host, port string
		implicit   bool
		user, pass string
		str        string
	}{
		{"STARTTLS on the default port", "smtp://mailer:s3cret@mail.example.com", "mail.example.com", "587", false, "mailer", "s3cret", "smtp://mailer:xxxxx@mail.example.com:587"},
		{"implicit TLS on the default port", "smtps://mailer:s3cret@mail.example.com", "mail.example.com", "465", true, "mailer", "s3cret", "smtps://mailer:xxxxx@mail.example.com:465"},
		{"no credentials, a port and a slash", "SMTP://mail.example.com:2525/", "mail.example.com", "2525", false, "", "", "smtp://mail.example.com:2525"},
		{"escaped credentials, an IPv6 host", "smtp://m%40example.com:s3%2Fcr%3Aet%40@[::1]:25", "::1", "25", false, "m@example.com", "s3/cr:et@", "smtp://m%40example.com:xxxxx@[::1]:25"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewSMTPMailer(tt.url)
			if err != nil {
				t.Fatalf("NewSMTPMailer(%q): %v", tt.url, err)
			}
			if m.host != tt.host || m.port != tt.port || m.implicitTLS != tt.implicit || m.user != tt.user || m.pass != tt.pass {
				t.Errorf("NewSMTPMailer(%q) = %+v", tt.url, m)
			}
			if m.String() != tt.str {
				t.Errorf("String() = %q, want %q", m.String(), tt.str)
			}
		})
	}

	for _, tc := range []struct{ name, url string }{
		{"empty", ""},
		{"no scheme", "mail.example.com:587"},
		{"another scheme", "http://mailer:s3cret@mail.example.com"},
		{"no host", "smtp://"},
		{"opaque", "smtp:mailer:s3cret@mail.example.com"},
		{"a path", "smtp://mailer:s3cret@mail.example.com/path"},
		{"a query", "smtp://mailer:s3cret@mail.example.com?tls=off"},
		{"a fragment", "smtp://mailer:s3cret@mail.example.com#x"},
		{"a user without a password", "smtp://mailer@mail.example.com"},
		{"an empty password", "smtp://mailer:@mail.example.com"},
		{"a password without a user", "smtp://:s3cret@mail.example.com"},
		{"port 0", "smtp://mailer:s3cret@mail.example.com:0"},
		{"a port too high", "smtp://mailer:s3cret@mail.example.com:70000"},
		{"a port by name", "smtp://mailer:s3cret@mail.example.com:smtp"},
		{"an unescaped slash: does not parse", "smtp://mailer:s3cret/x@mail.example.com"},
		{"parses, the password in the path", "smtp://mailer:12345/s3cret@mail.example.com"},
		{"an unescaped question mark", "smtp://mailer:s3cret?x@mail.example.com"},
		{"an unescaped hash", "smtp://mailer:s3cret#x@mail.example.com"},
		{"a bad escape", "smtp://mailer:s3%zzcret@mail.example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSMTPMailer(tc.url)
			if err == nil {
				t.Fatalf("NewSMTPMailer(%q) accepted", tc.url)
			}
			for _, secret := range []string{"s3cret", "12345"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("NewSMTPMailer(%q) error %q shows the password", tc.url, err)
				}
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", ""},
		{"a postgres password", "postgres://authgate:s3cret@db:5432/authgate?sslmode=disable", "postgres://authgate:xxxxx@db:5432/authgate?sslmode=disable"},
		{"postgres without a password", "postgres://authgate@localhost/authgate?sslmode=disable", "postgres://authgate@localhost/authgate?sslmode=disable"},
		{"a redis password", "redis://:s3cret@localhost:6379/0", "redis://:xxxxx@localhost:6379/0"},
		{"an escaped password", "rediss://default:s3%2Fcret@cache:6380/1", "rediss://default:xxxxx@cache:6380/1"},
		{"redis without a password", "redis://localhost:6379/0", "redis://localhost:6379/0"},
		{"an @ in the password", "smtp://mailer:p@ss@mail.example.com:587", "smtp://mailer:xxxxx@mail.example.com:587"},
		{"a password parameter", "postgres://db/app?user=a&password=s3cret&sslmode=require", "postgres://db/app?user=a&password=xxxxx&sslmode=require"},
		{"parameters naming a password in any case", "postgres://db/app?sslpassword=s3cret&PassWord=s3cret", "postgres://db/app?sslpassword=xxxxx&PassWord=xxxxx"},
		{"a token parameter beside a bad escape", "redis://db/0?token=s3cret&a=%zz", "redis://db/0?token=xxxxx&a=%zz"},
		{"a parameter name that does not decode", "redis://db/0?%zz=s3cret", "redis://db/0?%zz=xxxxx"},
		// Unescaped reserved characters in the password: the rest of the
		// URL is not trusted either.
		{"an unescaped slash in the password", "smtp://mailer:12345/s3cret@mail.example.com", "smtp://xxxxx"},
		{"an unescaped question mark in the password", "smtp://mailer:12345?s3cret@mail.example.com", "smtp://xxxxx"},
		{"an unescaped hash in the password", "smtp://mailer:12345#s3cret@mail.example.com", "smtp://xxxxx"},
		{"does not parse", "smtp://mailer:s3cret?x@mail.example.com", "xxxxx"},
		{"does not parse either", "smtp://mailer:s3/cret@mail.example.com", "xxxxx"},
		{"not scheme://", "mailer:s3cret@mail.example.com", "xxxxx"},
		{"libpq key=value", "host=db password=s3cret", "xxxxx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Redact(tt.in); got != tt.want {
				t.Fatalf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
