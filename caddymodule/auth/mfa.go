package auth

import (
	"context"
	"errors"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/factors"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/throttle"
	"github.com/authgate/authgate/caddymodule/username"
)

// The mfa setting.
const (
	// MFAOff offers and asks for no second factor; enrolled ones are kept,
	// unused.
	MFAOff = "off"
	// MFAOptional lets users add a second factor; one who has one gives it
	// at every login.
	MFAOptional = "optional"
	// MFARequired asks it of everyone: a user without one must enrol (on
	// the pages) before anything else, and cannot log in through the APIs.
	MFARequired = "required"
)

// How a session was authenticated (sessions.Session.AMR), in the words of
// RFC 8176 where it has them.
const (
	AMRPassword = "pwd"
	AMROTP      = "otp"
	// AMRRecovery marks a login whose second factor was a recovery code.
	// RFC 8176 has no value for one; as a single-use code it is an "otp"
	// too, and such a session has both.
	AMRRecovery = "recovery"
)

// Errors of the second factor.
var (
	// ErrSecondFactorRequired: the password was right, but the user has a
	// second factor and none was given. No session started.
	ErrSecondFactorRequired = errors.New("second factor required")
	// ErrInvalidSecondFactor: the code given is wrong, spent or replayed.
	// It counts as a failed attempt, also against the daily code cap.
	ErrInvalidSecondFactor = errors.New("invalid second factor")
	// ErrEnrolmentRequired: under mfa required, a user with no second
	// factor logs in through an API, where none can be enrolled.
	ErrEnrolmentRequired = errors.New("second factor enrolment required")
	// ErrLoginExpired: the ticket of a login's second step names none
	// (unknown, expired, used or tried too often).
	ErrLoginExpired = errors.New("the login's second step has expired")
	// ErrMFAOff: second factors are turned off (mfa off).
	ErrMFAOff = errors.New("second factors are turned off")
	// ErrNoSecondFactor: the user has no second factor (there is nothing
	// to remove, or recovery codes would count for nothing).
	ErrNoSecondFactor = errors.New("no second factor")
)

// maxCodeBytes bounds a code as sent; codes are far shorter.
const maxCodeBytes = 64

// Proof is the second factor a client gives: a code of the authenticator
// app (TOTP), or else a recovery code.
type Proof struct {
	TOTP         string
	RecoveryCode string
}

func (p Proof) given() bool { return p.TOTP != "" || p.RecoveryCode != "" }

// Confirmation is what an account change that touches the second factors
// asks of a signed-in user, so that a session alone (left open, stolen)
// cannot make it: the current password, or a code of the authenticator app.
type Confirmation struct {
	Password string
	TOTP     string
}

// SecondFactorStep is what BeginLogin returns, as its error, for a user
// with a second factor: the password was right and no session started;
// the login goes on with FinishLogin and the ticket. It is
// ErrSecondFactorRequired to errors.Is.
type SecondFactorStep struct {
	// Ticket names the step, for TicketTTL (factors.TicketTTL). It is a
	// secret: whoever holds it is one factor away from the account.
	Ticket string
	User   accounts.User
	// Kinds are the user's second factors ("totp", "passkey", …);
	// recovery codes are always an option besides.
	Kinds []string
}

func (e *SecondFactorStep) Error() string { return ErrSecondFactorRequired.Error() }
func (e *SecondFactorStep) Unwrap() error { return ErrSecondFactorRequired }

// HasSecondFactor tells whether a session's AMR names more than a
// password: such a session proved a second factor.
func HasSecondFactor(amr []string) bool {
	for _, m := range amr {
		if m != AMRPassword {
			return true
		}
	}
	return false
}

// AMRText is a session's AMR as the gate passes it upstream: the values
// joined with commas (HTTP's list syntax, which no value contains), "pwd"
// for a session that names none (made before sessions kept it, by a
// password).
func AMRText(amr []string) string {
	if len(amr) == 0 {
		return AMRPassword
	}
	return strings.Join(amr, ",")
}

// MFA is the mfa setting: MFAOff, MFAOptional or MFARequired.
func (s *Service) MFA() string { return s.mfa }

// LoginWith checks the password and, for a user with a second factor, the
// proof, and starts a session that says how it was authenticated (AMR).
// Besides Login's errors: ErrSecondFactorRequired when the user has a
// second factor and no proof was given, ErrInvalidSecondFactor when the
// proof is wrong, and, under mfa required, ErrEnrolmentRequired for a user
// without one (the APIs cannot enrol one). A proof given by a user who
// needs none is not looked at.
//
// The password counts as in Verify; a code counts on a throttle subject
// of its own ("mfa": per user, device and IP, and against the daily code
// cap), which only a right code clears, so that knowing the password does
// not buy any more guesses at the code.
func (s *Service) LoginWith(ctx context.Context, at Attempt, pw string, proof Proof) (accounts.User, string, sessions.Session, error) {
	return s.login(ctx, at, pw, proof, false)
}

// BeginLogin is the login page's first step: LoginWith without a proof,
// where a user with a second factor gets a *SecondFactorStep (its error)
// for the page to ask for it, and a user without one under mfa required is
// logged in, to be sent to enrol one.
func (s *Service) BeginLogin(ctx context.Context, at Attempt, pw string) (accounts.User, string, sessions.Session, error) {
	return s.login(ctx, at, pw, Proof{}, true)
}

func (s *Service) login(ctx context.Context, at Attempt, pw string, proof Proof, pages bool) (accounts.User, string, sessions.Session, error) {
	if len(proof.TOTP) > maxCodeBytes || len(proof.RecoveryCode) > maxCodeBytes {
		return accounts.User{}, "", sessions.Session{}, ErrInvalidInput
	}
	u, err := s.Verify(ctx, at, pw)
	if err != nil {
		return accounts.User{}, "", sessions.Session{}, err
	}
	kinds, err := s.secondFactors(ctx, u)
	if err != nil {
		s.metrics.Login("error")
		return accounts.User{}, "", sessions.Session{}, err
	}
	amr := []string{AMRPassword}
	switch {
	case len(kinds) > 0 && proof.given():
		if amr, err = s.checkProof(ctx, u, at, proof); err != nil {
			s.metrics.Login(resultOf(err))
			return accounts.User{}, "", sessions.Session{}, err
		}
	case len(kinds) > 0 && pages:
		ticket, err := s.tickets.Issue(ctx, u.ID)
		if err != nil {
			s.storeError(err)
			s.metrics.Login("error")
			return accounts.User{}, "", sessions.Session{}, err
		}
		s.metrics.Login("second_factor_required")
		return accounts.User{}, "", sessions.Session{}, &SecondFactorStep{Ticket: ticket, User: u, Kinds: kinds}
	case len(kinds) > 0:
		s.metrics.Login("second_factor_required")
		return accounts.User{}, "", sessions.Session{}, ErrSecondFactorRequired
	case s.mfa == MFARequired && !pages:
		s.metrics.Login("enrolment_required")
		return accounts.User{}, "", sessions.Session{}, ErrEnrolmentRequired
	}
	return s.startLogin(ctx, u, at, amr)
}

// FinishLogin is the login page's second step: the ticket of a
// SecondFactorStep and the proof. A wrong code leaves the step open for
// another (up to factors.MaxTicketTries); a right one ends it and starts
// the session. ErrLoginExpired when the ticket names no step.
func (s *Service) FinishLogin(ctx context.Context, at Attempt, ticket string, proof Proof) (accounts.User, string, sessions.Session, error) {
	if !proof.given() || len(proof.TOTP) > maxCodeBytes || len(proof.RecoveryCode) > maxCodeBytes {
		return accounts.User{}, "", sessions.Session{}, ErrInvalidInput
	}
	u, err := s.pending(ctx, ticket, s.tickets.Spend)
	if err != nil {
		return accounts.User{}, "", sessions.Session{}, err
	}
	amr, err := s.checkProof(ctx, u, at, proof)
	if err != nil {
		s.metrics.Login(resultOf(err))
		return accounts.User{}, "", sessions.Session{}, err
	}
	return s.CompleteLogin(ctx, at, ticket, amr...)
}

// PendingLogin returns the user whose login ticket names, without spending
// a try: for a factor that sets up its own check (a passkey's challenge).
func (s *Service) PendingLogin(ctx context.Context, ticket string) (accounts.User, error) {
	return s.pending(ctx, ticket, s.tickets.Peek)
}

// CompleteLogin ends the login step that ticket names and starts its
// session, authenticated as amr says ("pwd" and the factor's own value,
// such as "hwk"). It is for a second factor that the caller has checked
// itself (a passkey); codes go through FinishLogin.
func (s *Service) CompleteLogin(ctx context.Context, at Attempt, ticket string, amr ...string) (accounts.User, string, sessions.Session, error) {
	u, err := s.pending(ctx, ticket, s.tickets.Consume)
	if err != nil {
		return accounts.User{}, "", sessions.Session{}, err
	}
	return s.startLogin(ctx, u, at, amr)
}

// pending reads the user of a login ticket through read (Spend, Peek or
// Consume).
func (s *Service) pending(ctx context.Context, ticket string, read func(context.Context, string) (int64, error)) (accounts.User, error) {
	if s.tickets == nil || len(ticket) > maxCodeBytes || badBytes(ticket) {
		return accounts.User{}, ErrLoginExpired
	}
	id, err := read(ctx, ticket)
	if errors.Is(err, factors.ErrInvalidTicket) {
		return accounts.User{}, ErrLoginExpired
	}
	if err != nil {
		s.storeError(err)
		return accounts.User{}, err
	}
	u, err := s.accounts.ByID(ctx, id)
	if errors.Is(err, accounts.ErrNotFound) {
		return accounts.User{}, ErrLoginExpired
	}
	if err != nil {
		s.storeError(err)
		return accounts.User{}, err
	}
	return u, nil
}

// secondFactors returns the kinds of second factor the user must give one
// of at login: none under mfa off.
func (s *Service) secondFactors(ctx context.Context, u accounts.User) ([]string, error) {
	if s.mfa == MFAOff {
		return nil, nil
	}
	kinds, err := s.factors.Kinds(ctx, u.ID)
	if err != nil {
		s.storeError(err)
	}
	return kinds, err
}

// PasswordEnough tells whether the password alone may start a session of
// the user through an API (an autologin after a password change or a
// registration): not when they have a second factor, which the session
// would skip, nor under mfa required, where LoginWith would refuse them.
func (s *Service) PasswordEnough(ctx context.Context, u accounts.User) (bool, error) {
	if s.mfa == MFARequired {
		return false, nil
	}
	kinds, err := s.secondFactors(ctx, u)
	return len(kinds) == 0, err
}

// codeSubject is the throttle subject of a guess at the user's codes.
func (s *Service) codeSubject(u accounts.User, at Attempt) throttle.Subject {
	canonical, _ := username.Canonical(u.Username)
	subject := s.subject("mfa", throttleName(u.Username, canonical), at)
	subject.Code = true
	return subject
}

// checkProof checks a code of the user, counted (see LoginWith), and
// returns the AMR of a login with it.
func (s *Service) checkProof(ctx context.Context, u accounts.User, at Attempt, proof Proof) ([]string, error) {
	factor, code := factors.KindTOTP, proof.TOTP
	if code == "" {
		factor, code = factors.KindRecovery, proof.RecoveryCode
	}
	if badBytes(code) {
		return nil, ErrBadBytes
	}
	subject := s.codeSubject(u, at)
	if err := s.checkThrottle(ctx, subject); err != nil {
		s.metrics.MFA(factor, resultOf(err))
		return nil, err
	}
	var ok bool
	var err error
	if factor == factors.KindTOTP {
		ok, err = s.factors.CheckTOTP(ctx, u.ID, code, s.now())
	} else {
		ok, err = s.factors.UseRecoveryCode(ctx, u.ID, code)
	}
	if err != nil {
		s.storeError(err)
		s.metrics.MFA(factor, "error")
		return nil, err
	}
	if !ok {
		s.metrics.MFA(factor, "invalid")
		s.audit("mfa_failed", u.Username, at.IP, zap.Int64("user_id", u.ID), zap.String("factor", factor))
		return nil, ErrInvalidSecondFactor
	}
	s.forget(ctx, subject)
	s.metrics.MFA(factor, "success")
	if factor == factors.KindRecovery {
		left, err := s.factors.RecoveryLeft(ctx, u.ID)
		if err == nil {
			s.logger.Info("recovery code used", zap.Int64("user_id", u.ID), zap.Int("left", left))
		}
		return []string{AMRPassword, AMROTP, AMRRecovery}, nil
	}
	return []string{AMRPassword, AMROTP}, nil
}

// TOTPEnrolment returns the user's authenticator-app secret and whether it
// is confirmed. One not confirmed yet (new, or made within the last
// factors.PendingLifetime) waits for ConfirmTOTP.
func (s *Service) TOTPEnrolment(ctx context.Context, u accounts.User) ([]byte, bool, error) {
	if s.mfa == MFAOff {
		return nil, false, ErrMFAOff
	}
	secret, confirmed, err := s.factors.PendingTOTP(ctx, u.ID)
	if err != nil {
		s.storeError(err)
	}
	return secret, confirmed, err
}

// ConfirmTOTP confirms the user's pending authenticator app with a first
// code, which makes it count (ErrInvalidSecondFactor for a wrong one,
// counted as any code). It returns the user's new recovery codes when this
// is their first second factor (see FactorEnrolled).
func (s *Service) ConfirmTOTP(ctx context.Context, u accounts.User, at Attempt, code string) ([]string, error) {
	if s.mfa == MFAOff {
		return nil, ErrMFAOff
	}
	if len(code) > maxCodeBytes || badBytes(code) {
		return nil, ErrInvalidInput
	}
	subject := s.codeSubject(u, at)
	if err := s.checkThrottle(ctx, subject); err != nil {
		return nil, err
	}
	ok, err := s.factors.ConfirmTOTP(ctx, u.ID, code, s.now())
	if err != nil {
		s.storeError(err)
		return nil, err
	}
	if !ok {
		s.metrics.MFA(factors.KindTOTP, "invalid")
		s.audit("mfa_failed", u.Username, at.IP, zap.Int64("user_id", u.ID), zap.String("factor", factors.KindTOTP),
			zap.String("stage", "enrolment"))
		return nil, ErrInvalidSecondFactor
	}
	s.forget(ctx, subject)
	return s.FactorEnrolled(ctx, u, at.IP, factors.KindTOTP)
}

// FactorEnrolled records that the user has enrolled a second factor of
// the kind (audit event, metric) and, when they have no recovery codes
// yet (their first factor), makes them: the codes returned are to be shown
// once, and are never readable again. Every kind's enrolment calls it.
func (s *Service) FactorEnrolled(ctx context.Context, u accounts.User, ip, kind string) ([]string, error) {
	s.metrics.MFA(kind, "enrolled")
	s.audit("mfa_enrolled", u.Username, ip, zap.Int64("user_id", u.ID), zap.String("factor", kind))
	left, err := s.factors.RecoveryLeft(ctx, u.ID)
	if err != nil || left > 0 {
		s.storeError(err)
		return nil, err
	}
	return s.newRecoveryCodes(ctx, u, ip)
}

func (s *Service) newRecoveryCodes(ctx context.Context, u accounts.User, ip string) ([]string, error) {
	codes, err := s.factors.NewRecoveryCodes(ctx, u.ID)
	if err != nil {
		s.storeError(err)
		return nil, err
	}
	s.metrics.MFA(factors.KindRecovery, "enrolled")
	s.audit("mfa_enrolled", u.Username, ip, zap.Int64("user_id", u.ID), zap.String("factor", factors.KindRecovery))
	return codes, nil
}

// NewRecoveryCodes replaces the user's recovery codes (the old ones stop
// working) with new ones, shown once. It needs a second factor to recover,
// and the user's confirmation.
func (s *Service) NewRecoveryCodes(ctx context.Context, u accounts.User, at Attempt, c Confirmation) ([]string, error) {
	if s.mfa == MFAOff {
		return nil, ErrMFAOff
	}
	kinds, err := s.secondFactors(ctx, u)
	if err != nil {
		return nil, err
	}
	if len(kinds) == 0 {
		return nil, ErrNoSecondFactor
	}
	if err := s.confirm(ctx, u, at, c); err != nil {
		return nil, err
	}
	return s.newRecoveryCodes(ctx, u, at.IP)
}

// RemoveTOTP removes the user's authenticator app, with the user's
// confirmation (ErrNoSecondFactor when there is none).
func (s *Service) RemoveTOTP(ctx context.Context, u accounts.User, at Attempt, c Confirmation) error {
	if s.factors == nil {
		return ErrMFAOff
	}
	kinds, err := s.factors.Kinds(ctx, u.ID)
	if err != nil {
		s.storeError(err)
		return err
	}
	if !slices.Contains(kinds, factors.KindTOTP) {
		return ErrNoSecondFactor
	}
	if err := s.confirm(ctx, u, at, c); err != nil {
		return err
	}
	if _, err := s.factors.RemoveTOTP(ctx, u.ID); err != nil {
		s.storeError(err)
		return err
	}
	return s.FactorRemoved(ctx, u, at.IP, factors.KindTOTP)
}

// FactorRemoved records that the user's second factor of the kind is gone
// (audit event, metric) and, when it was their last, removes their
// recovery codes, which recover nothing any more. Every kind's removal
// calls it.
func (s *Service) FactorRemoved(ctx context.Context, u accounts.User, ip, kind string) error {
	s.metrics.MFA(kind, "removed")
	s.audit("mfa_removed", u.Username, ip, zap.Int64("user_id", u.ID), zap.String("factor", kind))
	kinds, err := s.factors.Kinds(ctx, u.ID)
	if err != nil || len(kinds) > 0 {
		s.storeError(err)
		return err
	}
	n, err := s.factors.DropRecoveryCodes(ctx, u.ID)
	if err != nil {
		s.storeError(err)
		return err
	}
	if n > 0 {
		s.metrics.MFA(factors.KindRecovery, "removed")
		s.audit("mfa_removed", u.Username, ip, zap.Int64("user_id", u.ID), zap.String("factor", factors.KindRecovery))
	}
	return nil
}

// confirm checks a Confirmation of the user: a code (counted as any code)
// or the password (counted as a login).
func (s *Service) confirm(ctx context.Context, u accounts.User, at Attempt, c Confirmation) error {
	at.Username = u.Username
	switch {
	case c.TOTP != "":
		if len(c.TOTP) > maxCodeBytes {
			return ErrInvalidInput
		}
		_, err := s.checkProof(ctx, u, at, Proof{TOTP: c.TOTP})
		return err
	case c.Password != "":
		v, err := s.Verify(ctx, at, c.Password)
		if errors.Is(err, ErrUnknownUser) || (err == nil && v.ID != u.ID) {
			return ErrInvalidPassword
		}
		return err
	}
	return ErrInvalidInput
}

// SecondFactors returns the user's second factors, recovery codes last,
// for the account page and the operator. Never a secret.
func (s *Service) SecondFactors(ctx context.Context, u accounts.User) ([]factors.Enrolment, error) {
	if s.factors == nil {
		return nil, nil
	}
	list, err := s.factors.List(ctx, u.ID)
	if err != nil {
		s.storeError(err)
	}
	return list, err
}

// ResetSecondFactors removes every second factor and recovery code of the
// user and ends all their sessions (an operator's doing, for a user who
// lost their device): the next login is by password alone, and under mfa
// required goes to enrol again. It returns how many factors and sessions
// there were.
func (s *Service) ResetSecondFactors(ctx context.Context, u accounts.User, ip string) (int, int, error) {
	if s.factors == nil {
		return 0, 0, ErrMFAOff
	}
	list, err := s.SecondFactors(ctx, u)
	if err != nil {
		return 0, 0, err
	}
	n, err := s.factors.RemoveAll(ctx, u.ID)
	if err != nil {
		s.storeError(err)
		return n, 0, err
	}
	for _, e := range list {
		s.metrics.MFA(e.Kind, "removed")
	}
	s.audit("mfa_removed", u.Username, ip, zap.Int64("user_id", u.ID), zap.String("factor", "all"), zap.Int("factors", n))
	ended, err := s.RevokeSessions(ctx, u, ip)
	return n, ended, err
}

// StepUp proves a second factor for a session that was started without
// one (under mfa optional, before the user enrolled): a right code ends
// that session and starts another, authenticated by both.
func (s *Service) StepUp(ctx context.Context, u accounts.User, at Attempt, token string, proof Proof) (string, sessions.Session, error) {
	if !proof.given() {
		return "", sessions.Session{}, ErrInvalidInput
	}
	amr, err := s.checkProof(ctx, u, at, proof)
	if err != nil {
		return "", sessions.Session{}, err
	}
	return s.UpgradeSession(ctx, u, at, token, amr...)
}

// UpgradeSession replaces the session of token with a new one of the user
// authenticated as amr says: after a second factor is proven or enrolled,
// the session says so, under a new id.
func (s *Service) UpgradeSession(ctx context.Context, u accounts.User, at Attempt, token string, amr ...string) (string, sessions.Session, error) {
	newToken, sess, err := s.StartSession(ctx, u, at, amr...)
	if err != nil {
		return "", sessions.Session{}, err
	}
	if err := s.sessions.Delete(ctx, token); err != nil {
		s.storeError(err)
		return "", sessions.Session{}, err
	}
	return newToken, sess, nil
}
