package mail

import (
	"bytes"
	"io"
	"mime"
	"mime/quotedprintable"
	netmail "net/mail"
	"regexp"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.FixedZone("CET", 3600))

// checkCRLF fails unless every line of b ends in CRLF.
func checkCRLF(t *testing.T, b []byte) {
	t.Helper()
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		t.Error("message does not end with CRLF")
	}
	if n, m := bytes.Count(b, []byte("\n")), bytes.Count(b, []byte("\r\n")); n != m || bytes.Count(b, []byte("\r")) != m {
		t.Errorf("bare CR or LF: %d LF, %d CR, %d CRLF", n, bytes.Count(b, []byte("\r")), m)
	}
}

// decodeBody returns the quoted-printable body of msg with LF line endings.
func decodeBody(t *testing.T, msg *netmail.Message) string {
	t.Helper()
	b, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

func TestMessageBytes(t *testing.T) {
	body := "Hello Ann,\n\nyour code is 123456.\n" +
		".\n" + // a lone dot must survive (SMTP dot-stuffing is the transport's job)
		"trailing space \n" +
		"é ü ✓ = signs =3D\n" +
		strings.Repeat("long line ", 20) + "\n"
	m := Message{From: "Authgate <no-reply@example.com>", To: "ann@example.org", Subject: "Your code", Body: body}
	b, err := m.Bytes(testNow)
	if err != nil {
		t.Fatal(err)
	}
	checkCRLF(t, b)
	for _, line := range strings.Split(string(b), "\r\n") {
		if len(line) > 78 {
			t.Errorf("line over 78 characters: %q", line)
		}
	}
	wantHead := "From: \"Authgate\" <no-reply@example.com>\r\n" +
		"To: <ann@example.org>\r\n" +
		"Subject: Your code\r\n" +
		"Date: Sat, 14 Mar 2026 15:09:26 +0100\r\n"
	if !bytes.HasPrefix(b, []byte(wantHead)) {
		t.Errorf("message starts\n%s\nwant\n%s", b[:len(wantHead)], wantHead)
	}

	msg, err := netmail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"MIME-Version":              "1.0",
		"Content-Type":              "text/plain; charset=utf-8",
		"Content-Transfer-Encoding": "quoted-printable",
	} {
		if got := msg.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	id := msg.Header.Get("Message-ID")
	if !regexp.MustCompile(`^<[A-Z2-7]{26}@example\.com>$`).MatchString(id) {
		t.Errorf("Message-ID %q, want <random@example.com>", id)
	}
	if date, err := msg.Header.Date(); err != nil || !date.Equal(testNow) {
		t.Errorf("Date = %v, %v; want %v", date, err, testNow)
	}
	if got := decodeBody(t, msg); got != body {
		t.Errorf("body round trip:\n%q\nwant\n%q", got, body)
	}

	b2, err := m.Bytes(testNow)
	if err != nil {
		t.Fatal(err)
	}
	msg2, _ := netmail.ReadMessage(bytes.NewReader(b2))
	if msg2.Header.Get("Message-ID") == id {
		t.Error("two messages share a Message-ID")
	}
}

func TestMessageBodyLineEndings(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"LF", "a\nb"}, {"CRLF", "a\r\nb\r\n"}, {"CR", "a\rb\r"}, {"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Message{From: "a@example.com", To: "b@example.com", Body: tc.body}.Bytes(testNow)
			if err != nil {
				t.Fatal(err)
			}
			checkCRLF(t, b)
		})
	}
}

func TestMessageSubject(t *testing.T) {
	long := strings.Repeat("Подтвердите адрес электронной почты ", 8)
	tests := []struct {
		name, subject string
		encoded       bool
	}{
		{"ASCII", "Reset your password", false},
		{"empty", "", false},
		{"non-ASCII", "Réinitialisez votre mot de passe ✓", true},
		{"control character", "bell\a", true},
		{"long non-ASCII, folded", long, true},
		{"long ASCII, folded", strings.Repeat("word ", 100) + "end", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Message{From: "a@example.com", To: "b@example.com", Subject: tt.subject}.Bytes(testNow)
			if err != nil {
				t.Fatal(err)
			}
			checkCRLF(t, b)
			head, _, _ := strings.Cut(string(b), "\r\n\r\n")
			for _, line := range strings.Split(head, "\r\n") {
				if len(line) > 78 {
					t.Errorf("header line over 78 characters: %q", line)
				}
			}
			if strings.Contains(head, "=?utf-8?q?") != tt.encoded {
				t.Errorf("header %q: encoded = %v, want %v", head, !tt.encoded, tt.encoded)
			}
			msg, err := netmail.ReadMessage(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			got, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
			if err != nil || got != tt.subject {
				t.Errorf("Subject decodes to %q, %v; want %q", got, err, tt.subject)
			}
		})
	}
}

func TestFold(t *testing.T) {
	// foldable tells whether line has, within 78 characters, a space after
	// a non-space: a place to fold at.
	foldable := func(line string) bool {
		for i := 2; i <= 78 && i < len(line); i++ {
			if line[i] == ' ' && line[i-1] != ' ' {
				return true
			}
		}
		return false
	}
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"short", "hello world", true},
		{"exactly 78", strings.Repeat("x", 78-len("Subject: ")), true},
		{"words", strings.Repeat("abc ", 60), true},
		{"many spaces", "a" + strings.Repeat(" ", 200) + "b", true},
		{"trailing spaces", strings.Repeat("x", 70) + " y" + strings.Repeat(" ", 100), true},
		{"one long word then words", strings.Repeat("x", 120) + " a b c", true},
		{"fits after the colon", strings.Repeat("x", 80) + " ab", true},
		{"997 without space", strings.Repeat("x", 997), true}, // " " + 997 = 998
		{"998 without space", strings.Repeat("x", 998), false},
		{"long words, foldable", strings.Repeat(strings.Repeat("y", 900)+" ", 3), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fold("Subject", tt.value)
			if (err == nil) != tt.ok {
				t.Fatalf("fold() error %v, want ok=%v", err, tt.ok)
			}
			if err != nil {
				return
			}
			if unfolded := strings.ReplaceAll(got, "\r\n", ""); unfolded != "Subject: "+tt.value {
				t.Errorf("unfolding changes the value:\n%q", unfolded)
			}
			lines := strings.Split(got, "\r\n")
			for i, line := range lines {
				if strings.TrimSpace(line) == "" {
					t.Errorf("line %d is white space only", i)
				}
				if i > 0 && line[0] != ' ' {
					t.Errorf("continuation line %d does not start with a space", i)
				}
				if len(line) > 998 {
					t.Errorf("line %d over 998 characters", i)
				}
				if len(line) > 78 && foldable(line) && i < len(lines)-1 {
					t.Errorf("line %d over 78 characters though foldable: %q", i, line)
				}
			}
		})
	}
}

func TestMessageRefusesInjection(t *testing.T) {
	ok := Message{From: "Authgate <no-reply@example.com>", To: "ann@example.org", Subject: "Hi", Body: "x"}
	if _, err := ok.Bytes(testNow); err != nil {
		t.Fatalf("control message refused: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Message)
	}{
		{"To with CRLF header", func(m *Message) { m.To = "ann@example.org\r\nBcc: all@example.net" }},
		{"To with LF", func(m *Message) { m.To = "ann@example.org\nBcc: all@example.net" }},
		{"To with CR", func(m *Message) { m.To = "ann@example.org\rBcc: all@example.net" }},
		{"To display name with CRLF", func(m *Message) { m.To = "\"Ann\r\nBcc: x@example.net\" <ann@example.org>" }},
		{"From with CRLF", func(m *Message) { m.From = "no-reply@example.com\r\nReply-To: evil@example.net" }},
		{"Subject with CRLF", func(m *Message) { m.Subject = "Hi\r\nBcc: all@example.net" }},
		{"Subject with LF", func(m *Message) { m.Subject = "Hi\nBcc: all@example.net" }},
		{"Subject with CR", func(m *Message) { m.Subject = "Hi\rBcc: all@example.net" }},
		{"Subject ending the header block", func(m *Message) { m.Subject = "Hi\r\n\r\nfake body" }},
		{"Subject invalid UTF-8", func(m *Message) { m.Subject = "Hi \xff" }},
		{"Body invalid UTF-8", func(m *Message) { m.Body = "\xff" }},
		{"two recipients", func(m *Message) { m.To = "ann@example.org, bob@example.org" }},
		{"To not an address", func(m *Message) { m.To = "ann" }},
		{"To empty", func(m *Message) { m.To = "" }},
		{"From empty", func(m *Message) { m.From = "" }},
		{"From without domain", func(m *Message) { m.From = "no-reply@" }},
		{"To internationalised", func(m *Message) { m.To = "jürgen@example.org" }},
		{"To IDN domain", func(m *Message) { m.To = "ann@bücher.example" }},
		{"group syntax", func(m *Message) { m.To = "friends: ann@example.org, bob@example.org;" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ok
			tt.edit(&m)
			if b, err := m.Bytes(testNow); err == nil {
				t.Errorf("accepted, rendered:\n%s", b)
			}
			if _, _, err := m.envelope(); err == nil && !strings.HasPrefix(tt.name, "Subject") && !strings.HasPrefix(tt.name, "Body") {
				t.Error("envelope accepted")
			}
		})
	}
}

func TestEnvelope(t *testing.T) {
	tests := []struct{ name, from, to, wantFrom, wantTo string }{
		{"display names", "Authgate <no-reply@example.com>", "Ann <ann@example.org>", "no-reply@example.com", "ann@example.org"},
		{"a quoted local part", "no-reply@example.com", `"john doe"@example.org`, "no-reply@example.com", `"john doe"@example.org`},
		{"an address literal", "no-reply@example.com", "ann@[192.0.2.1]", "no-reply@example.com", "ann@[192.0.2.1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, to, err := Message{From: tt.from, To: tt.to}.envelope()
			if err != nil || from != tt.wantFrom || to != tt.wantTo {
				t.Fatalf("envelope(%q, %q) = %q, %q, %v; want %q, %q", tt.from, tt.to, from, to, err, tt.wantFrom, tt.wantTo)
			}
		})
	}
}
