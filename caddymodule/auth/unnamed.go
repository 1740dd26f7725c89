package auth

// Sign-ins that name no account and prove one otherwise than by its
// password (a discoverable passkey): the caller checks the proof; the
// service throttles, counts, audits and starts the session as it does for
// a password.

import (
	"context"
	"strings"

	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/throttle"
)

// unnamed is the throttle subject of a sign-in that names no account: the
// client IP's allowance of failed logins, shared with password logins so
// that one kind of guess does not add to the other's.
func unnamed(at Attempt) throttle.Subject {
	return throttle.Subject{Kind: "login", IP: at.IP}
}

// AttemptUnnamed counts a sign-in that names no account before it is
// made, against the client IP's allowance of failed logins: a
// *ThrottledError when the IP has failed too often. LoginVerified takes
// the count back; UnnamedFailed reports a failure.
func (s *Service) AttemptUnnamed(ctx context.Context, at Attempt) error {
	if err := s.checkThrottle(ctx, unnamed(at)); err != nil {
		s.metrics.Login(resultOf(err))
		return err
	}
	return nil
}

// UnnamedFailed reports a failed sign-in counted by AttemptUnnamed: its
// count stands, and it is audited and counted as a failed login for the
// reason given (such as "invalid_passkey").
func (s *Service) UnnamedFailed(at Attempt, reason string) {
	s.metrics.Login(reason)
	s.audit("login_failed", at.Username, at.IP, zap.String("reason", reason))
}

// LoginVerified starts the session of u, whose sign-in counted by
// AttemptUnnamed proved the account, authenticated as amr says; it takes
// back the attempt's count, and counts and audits the login as Login does.
func (s *Service) LoginVerified(ctx context.Context, u accounts.User, at Attempt, amr ...string) (string, sessions.Session, error) {
	token, sess, err := s.StartSession(ctx, u, at, amr...)
	if err != nil {
		s.metrics.Login(resultOf(err))
		return "", sessions.Session{}, err
	}
	s.forget(ctx, unnamed(at))
	s.metrics.Login("success")
	s.audit("login_succeeded", u.Username, at.IP, zap.Int64("user_id", u.ID), zap.String("session", sessions.FormatID(sess.ID)),
		zap.String("amr", strings.Join(sess.AMR, " ")))
	return token, sess, nil
}

// Audit writes an audit event of another package (a second factor's
// enrolment), as the service writes its own: a structured log line and a
// Caddy event "authgate.<event>". Pass no secret.
func (s *Service) Audit(event, username, ip string, fields ...zap.Field) {
	s.audit(event, username, ip, fields...)
}
