package mailtest

import (
	"net/smtp"
	"strings"
	"testing"
)

// TestServerDemandsTLSBeforeAuth: the server must not take credentials in
// plaintext while it offers STARTTLS, or client tests could pass while
// leaking them.
func TestServerDemandsTLSBeforeAuth(t *testing.T) {
	s := NewServer(t)
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered")
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered before TLS")
	}
	// net/smtp allows PLAIN in plaintext to 127.0.0.1; the server must not.
	err = c.Auth(smtp.PlainAuth("", DefaultUser, DefaultPassword, "127.0.0.1"))
	if err == nil || !strings.HasPrefix(err.Error(), "530") {
		t.Errorf("AUTH before STARTTLS = %v, want 530", err)
	}
	if err := c.Mail("a@example.com"); err == nil {
		t.Error("MAIL accepted without AUTH")
	}
}

func TestServerRecordsMessage(t *testing.T) {
	s := NewServer(t, WithoutSTARTTLS())
	auth := smtp.PlainAuth("", DefaultUser, DefaultPassword, "127.0.0.1")
	msg := "Subject: =?utf-8?q?caf=C3=A9?=\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n" +
		"\r\n" +
		".dot and soft=\r\n break=3D\r\n"
	if err := smtp.SendMail(s.Addr(), auth, "a@example.com", []string{"b@example.org", "c@example.org"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	msgs := s.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	r := msgs[0]
	if r.From != "a@example.com" || strings.Join(r.To, ",") != "b@example.org,c@example.org" || r.TLS || r.Username != DefaultUser {
		t.Errorf("recorded %+v", r)
	}
	if string(r.Data) != msg {
		t.Errorf("data %q, want %q (dot-unstuffed, CRLF kept)", r.Data, msg)
	}
	if subject, err := r.Subject(); err != nil || subject != "café" {
		t.Errorf("Subject() = %q, %v", subject, err)
	}
	if body, err := r.Body(); err != nil || body != ".dot and soft break=\n" {
		t.Errorf("Body() = %q, %v", body, err)
	}
}

func TestServerWrongPassword(t *testing.T) {
	s := NewServer(t, WithoutSTARTTLS())
	auth := smtp.PlainAuth("", DefaultUser, "wrong", "127.0.0.1")
	err := smtp.SendMail(s.Addr(), auth, "a@example.com", []string{"b@example.org"}, []byte("\r\nx\r\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "535") {
		t.Errorf("SendMail() = %v, want 535", err)
	}
	if n := len(s.Messages()); n != 0 {
		t.Errorf("%d messages recorded", n)
	}
}
