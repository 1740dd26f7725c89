package mail

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// scriptedConn is a server that says script, whatever it is told, and then
// endless forever (or nothing more, when endless is empty). It never
// blocks, so a Send over it can only end or loop; past a hard cap it fails
// the reads, so that a Send with unbounded reads ends too, and is caught.
type scriptedConn struct {
	script  []byte
	endless []byte
	pos     int
	read    int // since the client last wrote
	most    int // the most read between two writes
	total   int
	written bytes.Buffer
}

const scriptedCap = 16 << 20

func (c *scriptedConn) Read(p []byte) (int, error) {
	if c.total >= scriptedCap {
		return 0, errors.New("scriptedConn: the client reads without end")
	}
	var n int
	switch {
	case len(c.script) > 0:
		n = copy(p, c.script)
		c.script = c.script[n:]
	case len(c.endless) > 0:
		for n < len(p) {
			m := copy(p[n:], c.endless[c.pos:])
			n += m
			c.pos = (c.pos + m) % len(c.endless)
		}
	default:
		return 0, io.EOF
	}
	c.read += n
	c.total += n
	c.most = max(c.most, c.read)
	return n, nil
}

func (c *scriptedConn) Write(p []byte) (int, error) {
	c.read = 0
	return c.written.Write(p)
}

func (c *scriptedConn) Close() error                     { return nil }
func (c *scriptedConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv6loopback} }
func (c *scriptedConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv6loopback} }
func (c *scriptedConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptedConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzSMTPReplies: whatever a server answers (multi-line replies, bad
// codes, overlong lines, endless replies, TLS where there is none), Send
// never panics and never hangs: it reads at most maxReply after each of its
// own writes (plus what a buffered reader takes at once); it succeeds only
// once it has sent the whole message; and its error never holds the
// password.
func FuzzSMTPReplies(f *testing.F) {
	const ok = "220 localhost ESMTP\r\n250-localhost\r\n250 AUTH PLAIN\r\n235 2.7.0 ok\r\n250 ok\r\n250 ok\r\n354 go on\r\n250 queued\r\n221 bye\r\n"
	for _, seed := range [][2]string{
		{ok, ""},
		{strings.ReplaceAll(ok, "\r\n", "\n"), ""},
		{"220-localhost\r\n220-ESMTP\r\n220 ready\r\n250-localhost\r\n250-PIPELINING\r\n250-SIZE 10\r\n250-8BITMIME\r\n250 AUTH LOGIN PLAIN CRAM-MD5\r\n235 ok\r\n", ""},
		{"220 localhost\r\n250-localhost\r\n250 STARTTLS\r\n220 go ahead\r\n", "\x16\x03\x03\x00\x05hello"},
		{"220 localhost\r\n250-localhost\r\n250 AUTH PLAIN\r\n334 \r\n334 bm90IGJhc2U2NA\r\n535 no\r\n", ""},
		{"220 localhost\r\n250-localhost\r\n250 AUTH PLAIN\r\n535 5.7.8 AUTH PLAIN AG1haWxlcgBzM2NyZXQ= s3cret\r\n", ""},
		{"220 localhost\r\n250-localhost\r\n250 AUTH\r\n235 ok\r\n", ""},
		{"2x0 localhost\r\n", ""},
		{"-12 localhost\r\n", ""},
		{"+20 localhost\r\n", ""},
		{"099 localhost\r\n", ""},
		{"220localhost\r\n", ""},
		{"22\r\n", ""},
		{"220-localhost\r\n221 wrong code\r\n", "x\r\n"},
		{"220-localhost\r\n", "220-again\r\n"},
		{"220 ", "a"},
		{"", "\n"},
		{ok[:strings.Index(ok, "354")] + "354 go on\r\n", "250-"},
		{"220 localhost\r\n250 localhost\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, script, endless string) {
		m, err := NewSMTPMailer("smtp://mailer:s3cret@localhost:25")
		if err != nil {
			t.Fatal(err)
		}
		conn := &scriptedConn{script: []byte(script), endless: []byte(endless)}
		m.dial = func(context.Context, string, string) (net.Conn, error) { return conn, nil }
		err = m.Send(context.Background(), testMessage)
		// bufio.Reader reads up to its buffer's size at once.
		if conn.most > maxReply+4096 {
			t.Fatalf("read %d bytes after one write (script %q, then %q forever)", conn.most, script, endless)
		}
		if err == nil && !bytes.Contains(conn.written.Bytes(), []byte("\r\n.\r\n")) {
			t.Fatalf("Send succeeded without sending the message: wrote %q", conn.written.String())
		}
		if err != nil {
			for _, secret := range []string{"s3cret", base64.StdEncoding.EncodeToString([]byte("\x00mailer\x00s3cret"))} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q shows the password", err)
				}
			}
		}
	})
}

// The scripted server drives a whole Send, and a reply without end ends it.
func TestSMTPScriptedReplies(t *testing.T) {
	const greeting = "220 localhost ESMTP\r\n"
	const ehlo = "250-localhost\r\n250 AUTH PLAIN\r\n"
	for _, tc := range []struct {
		name, script, endless string
		err                   error // with !ok: the error, or nil for any
		ok                    bool
	}{
		{name: "a whole conversation", script: greeting + ehlo + "235 ok\r\n250 ok\r\n250 ok\r\n354 go on\r\n250 queued\r\n221 bye\r\n", ok: true},
		{name: "no QUIT", script: greeting + ehlo + "235 ok\r\n250 ok\r\n250 ok\r\n354 go on\r\n250 queued\r\n", ok: true},
		{name: "a greeting line without end", script: "220 ", endless: "a", err: errReplyTooLong},
		{name: "a greeting of endless lines", script: "220-", endless: "220-x\r\n", err: errReplyTooLong},
		{name: "endless lines after EHLO (then HELO fails)", script: greeting + "250-", endless: "x\r\n"},
		{name: "endless blank lines after DATA", script: greeting + ehlo + "235 ok\r\n250 ok\r\n250 ok\r\n354 go on\r\n250-", endless: "\n", err: errReplyTooLong},
		{name: "the server hangs up", script: greeting + ehlo, err: io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewSMTPMailer("smtp://mailer:s3cret@localhost:25")
			if err != nil {
				t.Fatal(err)
			}
			conn := &scriptedConn{script: []byte(tc.script), endless: []byte(tc.endless)}
			m.dial = func(context.Context, string, string) (net.Conn, error) { return conn, nil }
			err = m.Send(context.Background(), testMessage)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("Send: %v", err)
			case !tc.ok && (err == nil || tc.err != nil && !errors.Is(err, tc.err)):
				t.Fatalf("Send = %v, want %v", err, tc.err)
			}
			if conn.most > maxReply+4096 {
				t.Fatalf("read %d bytes after one write", conn.most)
			}
			if tc.ok && !bytes.Contains(conn.written.Bytes(), []byte("\r\n.\r\n")) {
				t.Fatalf("the message was not sent: %q", conn.written.String())
			}
		})
	}
}
