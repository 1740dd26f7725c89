package caddymodule

import (
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"regexp"
	"strings"
	"testing"

	"github.com/authgate/authgate/caddymodule/mail/mailtest"
)

var otpInMail = regexp.MustCompile(`(?m)^\s+(\d{6})\s*$`)

// mailBody returns the decoded text of a mail.
func mailBody(t *testing.T, message string) string {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(message))
	if err != nil {
		t.Fatalf("mail does not parse: %v\n%s", err, message)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func mailedOTP(t *testing.T, message string) string {
	t.Helper()
	m := otpInMail.FindStringSubmatch(mailBody(t, message))
	if m == nil {
		t.Fatalf("no OTP in mail:\n%s", message)
	}
	return m[1]
}

// The whole recovery: request, mail, wrong code, right code, and what a
// password change ends.
func TestUsersPasswordReset(t *testing.T) {
	e := newEnv(t, options{global: "mail_from authgate@example.org"})
	e.register("henry", "old-password", "henry@example.com")
	e.register("nomail", "nomail-password", "")
	oldSession := e.client()
	e.login(oldSession, "henry", "old-password")

	r := e.do(nil, "GET", "/auth/users/requestotp?username=nomail", nil)
	e.expect(r, 200, false, "ERROR_NO_EMAIL_SET")
	r = e.do(nil, "POST", "/auth/users/requestotp", map[string]any{"username": "nobody"})
	e.expect(r, 403, false, "ERROR_INVALID_USERNAME")

	// An earlier OTP is replaced by a later one.
	first := e.do(nil, "GET", "/auth/users/requestotp?username=henry", nil)
	e.expect(first, 200, true, "")
	firstOTP := mailedOTP(t, e.lastMail())
	r = e.do(nil, "POST", "/auth/users/requestotp", map[string]any{"username": "henry"})
	e.expect(r, 200, true, "")
	userhash, reqid := r.str("userhash"), r.str("reqid")
	if userhash != first.str("userhash") || reqid == first.str("reqid") || reqid == "" {
		t.Fatalf("requestotp %s after %s", r.body, first.body)
	}
	mailText := e.lastMail()
	for _, want := range []string{"To: <henry@example.com>", "From: <authgate@example.org>", "Subject: "} {
		if !strings.Contains(mailText, want) {
			t.Fatalf("mail lacks %q:\n%s", want, mailText)
		}
	}
	otp := mailedOTP(t, mailText)

	modify := func(code, reqid, password string) reply {
		return e.do(nil, "POST", "/auth/users/modifypassword",
			map[string]any{"userhash": userhash, "OTP": code, "reqid": reqid, "password": password})
	}
	if otp != firstOTP {
		e.expect(modify(firstOTP, first.str("reqid"), "new-password"), 401, false, "ERROR_INVALID_OTP")
	}
	wrong := fmt.Sprintf("%06d", (atoi(otp)+1)%1000000)
	e.expect(modify(wrong, reqid, "new-password"), 401, false, "ERROR_INVALID_OTP")
	// A weak password is refused without spending the code.
	e.expect(modify(otp, reqid, "weak"), 422, false, "PASSWORD_TOO_WEAK")
	r = e.do(nil, "POST", "/auth/users/modifypassword",
		map[string]any{"userhash": strings.Repeat("f", 32), "otp": otp, "reqid": reqid, "password": "new-password"})
	e.expect(r, 403, false, "ERROR_INVALID_USERNAME")
	r = e.do(nil, "POST", "/auth/users/modifypassword", map[string]any{"userhash": userhash, "reqid": reqid, "password": "x"})
	e.expect(r, 400, false, "INVALID_INPUT")

	// The lower-case "otp" is accepted too.
	r = e.do(nil, "POST", "/auth/users/modifypassword",
		map[string]any{"userhash": userhash, "otp": otp, "reqid": reqid, "password": "new-password"})
	e.expect(r, 200, true, "PASSWORD_RESET_OK")

	e.expect(modify(otp, reqid, "newer-password"), 401, false, "ERROR_INVALID_OTP")
	r = e.do(oldSession, "GET", "/auth/users/info", nil)
	e.expect(r, 401, false, "PLEASE_LOGIN")
	r = e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "henry", "password": "old-password"})
	e.expect(r, 401, false, "INVALID_PASSWORD")
	e.login(e.client(), "henry", "new-password")
	if strings.Contains(e.redisDump(), "}:otp") {
		t.Fatal("OTP left in redis after the reset")
	}
}

func TestUsersOTPGuessLimit(t *testing.T) {
	e := newEnv(t, options{})
	e.register("ivy", "ivy-password", "ivy@example.com")
	r := e.do(nil, "POST", "/auth/users/requestotp", map[string]any{"username": "ivy"})
	e.expect(r, 200, true, "")
	otp := mailedOTP(t, e.lastMail())
	for i := 1; i <= 5; i++ {
		wrong := fmt.Sprintf("%06d", (atoi(otp)+i)%1000000)
		r := e.do(nil, "POST", "/auth/users/modifypassword", map[string]any{
			"userhash": r.str("userhash"), "OTP": wrong, "reqid": r.str("reqid"), "password": "new-password"})
		e.expect(r, 401, false, "ERROR_INVALID_OTP")
	}
	// The sixth guess is refused even though it is right.
	r2 := e.do(nil, "POST", "/auth/users/modifypassword", map[string]any{
		"userhash": r.str("userhash"), "OTP": otp, "reqid": r.str("reqid"), "password": "new-password"})
	e.expect(r2, 401, false, "ERROR_INVALID_OTP")
	e.login(e.client(), "ivy", "ivy-password")
}

// The OTP mail goes out over the SMTP wire protocol too. The mail package's
// own tests cover STARTTLS; here the server is on loopback, where plain SMTP
// is allowed, so Caddy's mailer needs no test certificate.
func TestUsersResetOverSMTP(t *testing.T) {
	srv := mailtest.NewServer(t, mailtest.WithoutSTARTTLS())
	e := newEnv(t, options{smtp: srv.URL()})
	e.register("jack", "jack-password", "jack@example.com")
	r := e.do(nil, "POST", "/auth/users/requestotp", map[string]any{"username": "jack"})
	e.expect(r, 200, true, "")
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d mails over SMTP", len(msgs))
	}
	body, err := msgs[0].Body()
	if err != nil {
		t.Fatal(err)
	}
	m := otpInMail.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no OTP in %q", body)
	}
	otp := m[1]
	r = e.do(nil, "POST", "/auth/users/modifypassword", map[string]any{
		"userhash": r.str("userhash"), "OTP": otp, "reqid": r.str("reqid"), "password": "jack-new-password"})
	e.expect(r, 200, true, "PASSWORD_RESET_OK")
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
