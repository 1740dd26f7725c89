// Package mail renders plain-text mails and sends them: as files into a
// directory (DirMailer, for development) or through an SMTP submission
// server over TLS (SMTPMailer).
//
// Message.Bytes is the only place that writes headers, and it refuses any
// value that could end a header line, so addresses and subjects that come
// from users cannot inject headers or recipients.
package mail

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"mime"
	"mime/quotedprintable"
	netmail "net/mail"
	"strings"
	"time"
	"unicode/utf8"
)

// Mailer sends a Message. Implementations are safe for concurrent use.
type Mailer interface {
	Send(ctx context.Context, m Message) error
}

// Message is a plain-text mail to one recipient. From and To are single
// addresses, with or without a display name ("Ann <ann@example.com>").
type Message struct {
	From, To, Subject, Body string
}

// Header lines should stay within 78 characters and must stay within 998
// (RFC 5322 section 2.1.1).
const (
	softLineLimit = 78
	hardLineLimit = 998
)

// Bytes renders m as an RFC 5322 message with CRLF line endings: From, To,
// Subject (RFC 2047-encoded when not ASCII), Date (now), a random
// Message-ID at From's domain, and a UTF-8 text/plain body in
// quoted-printable, so any text survives 7-bit transports and long lines.
//
// It refuses CR or LF in any header value, invalid UTF-8, and addresses that
// do not parse as exactly one ASCII address: internationalised addresses
// would need SMTPUTF8, which the rest of the path does not promise.
func (m Message) Bytes(now time.Time) ([]byte, error) {
	from, to, err := m.addresses()
	if err != nil {
		return nil, err
	}
	if err := checkValue("Subject", m.Subject); err != nil {
		return nil, err
	}
	if !utf8.ValidString(m.Body) {
		return nil, fmt.Errorf("mail body: not valid UTF-8")
	}
	domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]

	var b bytes.Buffer
	for _, h := range []struct{ name, value string }{
		{"From", from.String()},
		{"To", to.String()},
		{"Subject", mime.QEncoding.Encode("utf-8", m.Subject)},
		{"Date", now.Format(time.RFC1123Z)},
		{"Message-ID", "<" + rand.Text() + "@" + domain + ">"},
		{"MIME-Version", "1.0"},
		{"Content-Type", "text/plain; charset=utf-8"},
		{"Content-Transfer-Encoding", "quoted-printable"},
	} {
		line, err := fold(h.name, h.value)
		if err != nil {
			return nil, err
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")

	// In text mode the writer turns every line break (LF, CRLF or lone CR)
	// into CRLF and escapes the rest.
	qp := quotedprintable.NewWriter(&b)
	body := m.Body
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	if _, err := qp.Write([]byte(body)); err != nil {
		return nil, fmt.Errorf("mail body: %w", err)
	}
	if err := qp.Close(); err != nil {
		return nil, fmt.Errorf("mail body: %w", err)
	}
	return b.Bytes(), nil
}

// addresses parses and checks From and To.
func (m Message) addresses() (from, to *netmail.Address, err error) {
	if from, err = parseAddress("From", m.From); err != nil {
		return nil, nil, err
	}
	if to, err = parseAddress("To", m.To); err != nil {
		return nil, nil, err
	}
	return from, to, nil
}

// envelope returns the SMTP envelope addresses (MAIL FROM, RCPT TO) of m.
func (m Message) envelope() (from, to string, err error) {
	f, t, err := m.addresses()
	if err != nil {
		return "", "", err
	}
	return addrSpec(f), addrSpec(t), nil
}

// addrSpec returns a's bare address in wire form: the local part quoted
// when it must be, without angle brackets or display name.
func addrSpec(a *netmail.Address) string {
	s := (&netmail.Address{Address: a.Address}).String()
	return strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
}

func parseAddress(field, value string) (*netmail.Address, error) {
	if err := checkValue(field, value); err != nil {
		return nil, err
	}
	a, err := netmail.ParseAddress(value)
	if err != nil {
		return nil, fmt.Errorf("mail %s: %w", field, err)
	}
	for i := 0; i < len(a.Address); i++ {
		if a.Address[i] >= utf8.RuneSelf {
			return nil, fmt.Errorf("mail %s: internationalised addresses are not supported", field)
		}
	}
	return a, nil
}

// checkValue refuses what could end a header line or is not text.
func checkValue(field, value string) error {
	if strings.ContainsAny(value, "\r\n") {
		return fmt.Errorf("mail %s: contains a line break", field)
	}
	if !utf8.ValidString(value) {
		return fmt.Errorf("mail %s: not valid UTF-8", field)
	}
	return nil
}

// fold renders the header "name: value", folded before spaces in value so
// its lines stay within the soft limit where possible (RFC 5322 section
// 2.2.3: unfolding removes only the CRLFs, so the value is unchanged). A line
// still over the hard limit is an error.
func fold(name, value string) (string, error) {
	line := name + ": " + value
	start := len(name) // the colon: folding may start right after it
	var b strings.Builder
	for len(line) > softLineLimit {
		i := foldPoint(line, start)
		if i < 0 || i > hardLineLimit {
			break
		}
		b.WriteString(line[:i])
		b.WriteString("\r\n")
		line = line[i:] // the continuation begins with the space
		start = 0
	}
	if len(line) > hardLineLimit {
		return "", fmt.Errorf("mail %s: longer than %d characters without a space to fold at", name, hardLineLimit)
	}
	b.WriteString(line)
	return b.String(), nil
}

// foldPoint returns the index of the space in line to fold before: the last
// one within the soft limit, else the first one after it, or -1. It must
// come after start, follow a non-space and precede one, since a line of
// white space only is not allowed.
func foldPoint(line string, start int) int {
	last := strings.LastIndexFunc(line, func(r rune) bool { return r != ' ' })
	ok := func(i int) bool { return line[i] == ' ' && line[i-1] != ' ' && i < last }
	for i := min(softLineLimit, len(line)-1); i > start; i-- {
		if ok(i) {
			return i
		}
	}
	for i := softLineLimit + 1; i < len(line); i++ {
		if ok(i) {
			return i
		}
	}
	return -1
}
