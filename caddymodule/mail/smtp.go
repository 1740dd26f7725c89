package mail

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout bounds a whole SMTP send when ctx has no deadline.
const DefaultTimeout = 30 * time.Second

// SMTPMailer sends mail through an SMTP submission server, always over TLS
// except to a loopback server. It is safe for concurrent use: every Send
// opens its own connection.
type SMTPMailer struct {
	// TLSConfig is used for STARTTLS and implicit TLS. nil means the system
	// roots; an empty ServerName is set to the URL's host. Tests set RootCAs.
	// Set it before the first Send.
	TLSConfig *tls.Config

	host, port  string
	implicitTLS bool
	user, pass  string // AUTH PLAIN credentials; none when user is ""
	safeURL     string // the URL without the password

	// dial replaces net.Dialer.DialContext in tests, to reach a local server
	// under a non-loopback host name.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewSMTPMailer parses rawURL:
//
//	smtp://user:pass@host[:587]   STARTTLS, required unless host is loopback
//	smtps://user:pass@host[:465]  TLS from the first byte
//
// The user and password are percent-decoded; without a user, no AUTH is
// sent. Errors never include the password.
func NewSMTPMailer(rawURL string) (*SMTPMailer, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse's error holds the URL, maybe a password in it: drop it.
		return nil, errors.New("smtp URL: cannot parse it (reserved characters in the user or password must be percent-encoded)")
	}
	m := &SMTPMailer{host: u.Hostname(), port: u.Port()}
	fail := func(format string, args ...any) (*SMTPMailer, error) {
		return nil, fmt.Errorf("smtp URL %s: %s", Redact(rawURL), fmt.Sprintf(format, args...))
	}
	switch u.Scheme {
	case "smtp":
		m.port = cmp.Or(m.port, "587")
	case "smtps":
		m.implicitTLS = true
		m.port = cmp.Or(m.port, "465")
	default:
		return fail("scheme must be smtp (STARTTLS) or smtps (implicit TLS)")
	}
	switch {
	case u.Opaque != "" || m.host == "":
		return fail("want smtp://user:password@host:port")
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return fail("unexpected path, query or fragment (reserved characters in the user or password must be percent-encoded)")
	}
	if n, err := strconv.Atoi(m.port); err != nil || n < 1 || n > 65535 {
		return fail("invalid port")
	}
	if u.User != nil {
		m.user = u.User.Username()
		pass, ok := u.User.Password()
		if m.user == "" || !ok || pass == "" {
			return fail("want both a user and a password, or neither")
		}
		m.pass = pass
	}
	safe := url.URL{Scheme: u.Scheme, Host: net.JoinHostPort(m.host, m.port)}
	if m.user != "" {
		safe.User = url.UserPassword(m.user, "xxxxx")
	}
	m.safeURL = safe.String()
	return m, nil
}

// String returns the URL with the password replaced by xxxxx, for logs.
func (m *SMTPMailer) String() string { return m.safeURL }

// Send delivers msg in one SMTP session, within ctx's deadline or
// DefaultTimeout. It refuses to go on in plaintext when the server does not
// offer STARTTLS, unless the host is loopback (localhost, 127.0.0.1, ::1,
// the same exception net/smtp's PlainAuth makes).
func (m *SMTPMailer) Send(ctx context.Context, msg Message) error {
	if err := m.send(ctx, msg); err != nil {
		return fmt.Errorf("send mail via %s: %w", m, m.scrub(err))
	}
	return nil
}

func (m *SMTPMailer) send(ctx context.Context, msg Message) error {
	from, to, err := msg.envelope()
	if err != nil {
		return err
	}
	data, err := msg.Bytes(time.Now())
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}

	dial := m.dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", net.JoinHostPort(m.host, m.port))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	// The deadline ends a stalled server; AfterFunc also interrupts a
	// blocked read or write as soon as ctx is cancelled.
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if err := m.session(ctx, &boundedConn{Conn: conn, left: maxReply}, from, to, data); err != nil {
		// Report an ended ctx as such. The connection's deadline may fire a
		// moment before ctx's own timer does.
		cerr := ctx.Err()
		if cerr == nil && !time.Now().Before(deadline) {
			cerr = context.DeadlineExceeded
		}
		if cerr != nil {
			return fmt.Errorf("%w: %w", cerr, err)
		}
		return err
	}
	return nil
}

// session speaks SMTP on conn: TLS, AUTH PLAIN, one mail, QUIT.
func (m *SMTPMailer) session(ctx context.Context, conn net.Conn, from, to string, data []byte) error {
	if m.implicitTLS {
		tc := tls.Client(conn, m.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		conn = tc // smtp.NewClient then knows the session is encrypted
	}
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	defer c.Close()

	if !m.implicitTLS {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(m.tlsConfig()); err != nil {
				return fmt.Errorf("starttls: %w", err)
			}
		} else if !isLoopback(m.host) {
			return errors.New("server does not offer STARTTLS; refusing to send credentials and mail in plaintext")
		}
	}
	if m.user != "" {
		// PlainAuth refuses, too, to send the password unencrypted to
		// anything but a loopback host.
		if err := c.Auth(smtp.PlainAuth("", m.user, m.pass, m.host)); err != nil {
			return fmt.Errorf("auth as %q: %w", m.user, err)
		}
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("rcpt to: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil { // reads the server's acceptance
		return fmt.Errorf("data: %w", err)
	}
	// The server has accepted the mail; a failed QUIT changes nothing.
	_ = c.Quit()
	return nil
}

// maxReply bounds what a server may send between two writes of ours: a
// reply (net/textproto reads a line, and the lines of a reply, without
// limit; RFC 5321 allows 512 bytes a line, and an EHLO answer is a few
// dozen lines), or a flight of the TLS handshake (a certificate chain).
const maxReply = 64 << 10

// errReplyTooLong ends a session whose server sends more than maxReply in
// one go: a broken or hostile server cannot hold memory for as long as the
// deadline lasts.
var errReplyTooLong = fmt.Errorf("the server sent more than %d KiB without waiting for us", maxReply>>10)

// boundedConn lets the server send at most maxReply bytes after each write
// of ours. SMTP without pipelining, as net/smtp speaks it, is strictly turn
// by turn.
type boundedConn struct {
	net.Conn
	left int
}

func (c *boundedConn) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errReplyTooLong
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= n
	return n, err
}

func (c *boundedConn) Write(p []byte) (int, error) {
	c.left = maxReply
	return c.Conn.Write(p)
}

func (m *SMTPMailer) tlsConfig() *tls.Config {
	cfg := &tls.Config{}
	if m.TLSConfig != nil {
		cfg = m.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = m.host
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return cfg
}

// isLoopback matches net/smtp's own exception for plaintext PLAIN auth.
func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// scrub keeps the password out of err. Server replies are quoted in errors,
// and a broken or hostile server could echo the credentials back.
func (m *SMTPMailer) scrub(err error) error {
	if m.pass == "" {
		return err
	}
	text := err.Error()
	clean := text
	for _, secret := range []string{
		m.pass,
		url.QueryEscape(m.pass),
		base64.StdEncoding.EncodeToString([]byte("\x00" + m.user + "\x00" + m.pass)), // AUTH PLAIN
	} {
		clean = strings.ReplaceAll(clean, secret, "xxxxx")
	}
	if clean == text {
		return err
	}
	return errors.New(clean)
}

// Redact returns rawURL with its password replaced by xxxxx, for logs and
// configuration errors about postgres, redis or smtp URLs. Query parameters
// that hold secrets (password=, sslpassword=, token=, ...) are redacted too.
// When the URL cannot be split with certainty (it does not parse, is not
// scheme://..., or has an "@" outside its user info, as when a password
// holds an unescaped "/", "?" or "#"), more is replaced, never less.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	switch {
	case err != nil || u.Scheme == "" || u.Opaque != "":
		if rawURL == "" {
			return ""
		}
		return "xxxxx"
	case (u.User == nil && strings.Contains(rawURL, "@")) ||
		strings.Contains(u.Path+u.RawQuery+u.Fragment, "@"):
		return u.Scheme + "://xxxxx"
	}
	if u.RawQuery != "" {
		params := strings.Split(u.RawQuery, "&")
		for i, p := range params {
			k, _, _ := strings.Cut(p, "=")
			if key, err := url.QueryUnescape(k); err != nil || isSecretParam(key) {
				params[i] = k + "=xxxxx"
			}
		}
		u.RawQuery = strings.Join(params, "&")
	}
	return u.Redacted()
}

func isSecretParam(key string) bool {
	key = strings.ToLower(key)
	for _, s := range []string{"pass", "pwd", "secret", "token"} {
		if strings.Contains(key, s) {
			return true
		}
	}
	return false
}
