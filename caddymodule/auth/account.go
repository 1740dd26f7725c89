package auth

// The account page's operations: a signed-in user sees and ends their own
// sessions and changes their email address (the password change is
// ChangePassword's). Each acts on the session's own user only.

import (
	"context"
	"errors"
	"strings"

	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/sessions"
)

// Reauthenticate checks the current password of the session's user, for a
// change that a stolen session alone must not be able to make. It is a
// login attempt in every respect (at names the client; its username is the
// session's): a wrong password is throttled, counted in the login metric
// and audited as a failed login, so a session cannot be used to guess the
// password either.
func (s *Service) Reauthenticate(ctx context.Context, at Attempt, sess sessions.Session, current string) (accounts.User, error) {
	at.Username = sess.Username
	u, err := s.Verify(ctx, at, current)
	if err != nil {
		return accounts.User{}, err
	}
	if u.ID != sess.UserID {
		// The name has passed to another account since the session began
		// (an operator renamed them): that account's password is no proof.
		return accounts.User{}, ErrInvalidPassword
	}
	return u, nil
}

// EndSession ends the session of sess's user whose ID (as ListSessions
// gives it) is id: sessions.ErrNotFound when the user has none such, also
// when id names another user's session. Every instance refuses the session
// once it returns.
func (s *Service) EndSession(ctx context.Context, sess sessions.Session, id, ip string) error {
	if err := s.sessions.End(ctx, sess.Userhash, id); err != nil {
		if !errors.Is(err, sessions.ErrNotFound) {
			s.storeError(err)
		}
		return err
	}
	s.audit("sessions_revoked", sess.Username, ip, zap.Int64("user_id", sess.UserID), zap.Int("sessions", 1),
		zap.String("session", sessions.FormatID(id)), zap.String("by", "user"))
	return nil
}

// EndOtherSessions ends every session of sess's user but sess itself, and
// returns how many ended.
func (s *Service) EndOtherSessions(ctx context.Context, sess sessions.Session, ip string) (int, error) {
	n, err := s.sessions.RevokeUser(ctx, sess.Userhash, sess.ID)
	if err != nil {
		s.storeError(err)
		return 0, err
	}
	s.audit("sessions_revoked", sess.Username, ip, zap.Int64("user_id", sess.UserID), zap.Int("sessions", n),
		zap.String("kept", sessions.FormatID(sess.ID)), zap.String("by", "user"))
	return n, nil
}

// ChangeEmail sets the address of an account whose identity is established
// (see Reauthenticate; "" removes the address) and puts it into the user's
// live sessions, so that the upstream gets the new Remote-Email at once.
// A code or reset link mailed to the old address dies with the change: it
// was sent for the account as it was.
func (s *Service) ChangeEmail(ctx context.Context, u accounts.User, email, ip string) error {
	if badBytes(email) {
		return ErrBadBytes
	}
	email = strings.TrimSpace(email)
	if !validEmail(email) {
		return ErrInvalidInput
	}
	if err := s.accounts.SetEmail(ctx, u.ID, email); err != nil {
		s.storeError(err)
		return err
	}
	s.audit("email_changed", u.Username, ip, zap.Int64("user_id", u.ID))
	if err := s.codes.DropOTP(ctx, u.Userhash); err != nil {
		s.logger.Warn("dropping OTP after email change", zap.Int64("user_id", u.ID), zap.Error(err))
	}
	if err := s.sessions.SetEmail(ctx, u.Userhash, email); err != nil {
		// The address changed, but the sessions pass the old one upstream
		// until they end: say so loudly.
		s.logger.Error("updating sessions after email change", zap.Int64("user_id", u.ID), zap.Error(err))
		s.storeError(err)
		return err
	}
	return nil
}
