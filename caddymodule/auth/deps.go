package auth

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/factors"
	"github.com/authgate/authgate/caddymodule/mail"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/throttle"
)

// What the service needs of the stores and helpers around it, declared here
// with only the methods it calls, so that its rules can be tested with small
// in-memory fakes and no servers. The production implementations are
// accounts.Store, sessions.Store, onetime.Store, throttle.Limiter,
// device.Signer, password.Hasher, the mailers of package mail,
// factors.Registry, factors.Tickets and metrics.Metrics.

// Accounts stores the accounts (PostgreSQL). Lookups return
// accounts.ErrNotFound when no account matches; Create returns
// accounts.ErrExists when the canonical name is taken.
type Accounts interface {
	ByName(ctx context.Context, canonical, typed string) (accounts.User, error)
	ByID(ctx context.Context, id int64) (accounts.User, error)
	ByUserhash(ctx context.Context, userhash string) (accounts.User, error)
	Create(ctx context.Context, canonical, email, passwordHash string) (accounts.User, error)
	SetPassword(ctx context.Context, id int64, passwordHash string) error
	// SetEmail replaces the address ("" removes it).
	SetEmail(ctx context.Context, id int64, email string) error
}

// Sessions stores the login sessions (Redis). Lookup returns
// sessions.ErrNotFound for a token that names no live session, End for an
// ID that names none of the user's.
type Sessions interface {
	Create(ctx context.Context, sess sessions.Session) (string, sessions.Session, error)
	Lookup(ctx context.Context, token string) (sessions.Session, error)
	Delete(ctx context.Context, token string) error
	RevokeUser(ctx context.Context, userhash, keepID string) (int, error)
	List(ctx context.Context, userhash string) ([]sessions.Session, error)
	End(ctx context.Context, userhash, id string) error
	SetEmail(ctx context.Context, userhash, email string) error
}

// Codes issues and checks the one-time secrets of password recovery (OTPs
// and reset tokens). A wrong, expired or spent secret is onetime.ErrInvalid.
type Codes interface {
	// TTL is the lifetime of the secrets it issues.
	TTL() time.Duration
	IssueOTP(ctx context.Context, userhash string) (reqid, code string, err error)
	CheckOTP(ctx context.Context, userhash, reqid, code string) error
	DropOTP(ctx context.Context, userhash string) error
	// Decoy stands in for the userhash and request id of a name that gets
	// no code.
	Decoy(name string) (userhash, reqid string, err error)
	IssueResetToken(ctx context.Context, userID int64) (string, error)
	ResetTokenUser(ctx context.Context, token string) (userID int64, issued time.Time, err error)
	ConsumeResetToken(ctx context.Context, token string) (int64, error)
}

// Throttle counts attempts at secrets before they are made (see
// throttle.Limiter).
type Throttle interface {
	// Attempt counts one attempt and returns how long the subject must
	// wait when it is one too many (0: go ahead).
	Attempt(ctx context.Context, s throttle.Subject) (time.Duration, error)
	// Forget takes back the count of a successful attempt.
	Forget(ctx context.Context, s throttle.Subject) error
	// TakeBack takes back the count of an attempt never judged (a store
	// down): one count from every counter it went to.
	TakeBack(ctx context.Context, s throttle.Subject) error
	// UserKey is the keyed hash that stands for a username.
	UserKey(username string) string
}

// Devices signs and checks device cookies (see device.Signer).
type Devices interface {
	Issue(userKey string) (value string, expires time.Time)
	Verify(value, userKey string) (id string, ok bool)
}

// Hasher hashes and verifies passwords (see password.Hasher).
type Hasher interface {
	Hash(ctx context.Context, password string) (string, error)
	Verify(ctx context.Context, password, encoded string) (ok, rehash bool, err error)
	// Burn costs what verifying a password costs, for unknown users.
	Burn(ctx context.Context) error
}

// Mailer sends mail (see package mail).
type Mailer interface {
	Send(ctx context.Context, m mail.Message) error
}

// Factors keeps the users' second factors (see factors.Registry). A code
// that is wrong, spent or replayed is false with no error.
type Factors interface {
	// Kinds lists the kinds of confirmed second factor the user has
	// ("totp", "passkey", …); none: empty.
	Kinds(ctx context.Context, userID int64) ([]string, error)
	// List returns every second factor of the user, recovery codes too.
	List(ctx context.Context, userID int64) ([]factors.Enrolment, error)
	// RemoveAll removes every second factor and recovery code of the user.
	RemoveAll(ctx context.Context, userID int64) (int, error)

	// PendingTOTP returns the user's TOTP secret, making one to be
	// confirmed when there is none, and whether it is confirmed.
	PendingTOTP(ctx context.Context, userID int64) (secret []byte, confirmed bool, err error)
	ConfirmTOTP(ctx context.Context, userID int64, code string, now time.Time) (bool, error)
	// CheckTOTP accepts a code of a time step later than any accepted
	// before, and spends that step.
	CheckTOTP(ctx context.Context, userID int64, code string, now time.Time) (bool, error)
	RemoveTOTP(ctx context.Context, userID int64) (bool, error)

	RecoveryLeft(ctx context.Context, userID int64) (int, error)
	// NewRecoveryCodes replaces the user's recovery codes and returns the
	// new ones.
	NewRecoveryCodes(ctx context.Context, userID int64) ([]string, error)
	UseRecoveryCode(ctx context.Context, userID int64, code string) (bool, error)
	DropRecoveryCodes(ctx context.Context, userID int64) (int, error)
}

// Tickets keeps the logins waiting for their second factor (see
// factors.Tickets). A ticket that names none is factors.ErrInvalidTicket.
type Tickets interface {
	Issue(ctx context.Context, userID int64) (string, error)
	// Spend counts one try of the ticket and returns its user.
	Spend(ctx context.Context, ticket string) (int64, error)
	// Peek returns the ticket's user without counting a try.
	Peek(ctx context.Context, ticket string) (int64, error)
	// Consume ends the ticket; of concurrent calls, one gets its user.
	Consume(ctx context.Context, ticket string) (int64, error)
}

// Metrics counts what the service does (see metrics.Metrics, whose nil
// value counts nothing).
type Metrics interface {
	Login(result string)
	Throttled(kind string)
	Mail(result string)
	StoreError(store string)
	// MFA counts a second factor's use by factor (totp, recovery, …) and
	// result (success, invalid, throttled, error, enrolled, removed).
	MFA(factor, result string)
}

// Config is what New builds a Service from. Accounts, Sessions, Codes,
// Throttle, Hasher and Mailer are required.
type Config struct {
	Accounts Accounts
	Sessions Sessions
	Codes    Codes
	Throttle Throttle
	// Devices signs and checks device cookies; nil honours none.
	Devices Devices
	Hasher  Hasher
	Mailer  Mailer
	// MailFrom is the sender of the mails.
	MailFrom string
	// Registration tells whether anyone may create an account.
	Registration bool
	// PasswordMinScore is the zxcvbn score new passwords need (0 to 4; 0
	// refuses none); see password.CheckGuessable.
	PasswordMinScore int
	// Factors and Tickets keep the second factors and the logins waiting
	// for one; without Factors, MFA is off.
	Factors Factors
	Tickets Tickets
	// MFA is MFAOff, MFAOptional or MFARequired; "" is MFAOptional.
	MFA string

	// Metrics counts logins, throttled attempts, mails and store errors;
	// nil counts nothing.
	Metrics Metrics
	// Logger gets the audit lines and the errors an operator must see; nil
	// logs nothing.
	Logger *zap.Logger
	// Emit sends an audit event (Caddy's events app); nil sends none.
	Emit func(name string, data map[string]any)
	// Now is the service's clock (the re-authentication window, the TOTP
	// time steps); nil is time.Now.
	Now func() time.Time
}

// New returns a Service over c.
func New(c Config) *Service {
	s := &Service{
		accounts:         c.Accounts,
		sessions:         c.Sessions,
		codes:            c.Codes,
		throttle:         c.Throttle,
		devices:          c.Devices,
		hasher:           c.Hasher,
		mailer:           c.Mailer,
		mailFrom:         c.MailFrom,
		registration:     c.Registration,
		passwordMinScore: c.PasswordMinScore,
		factors:          c.Factors,
		tickets:          c.Tickets,
		mfa:              c.MFA,
		metrics:          c.Metrics,
		logger:           c.Logger,
		emit:             c.Emit,
		now:              c.Now,
		created:          newCreatedTimes(createdMax),
	}
	if s.metrics == nil {
		s.metrics = noMetrics{}
	}
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.mfa == "" {
		s.mfa = MFAOptional
	}
	if s.factors == nil {
		s.mfa = MFAOff
	}
	return s
}

type noMetrics struct{}

func (noMetrics) Login(string)       {}
func (noMetrics) Throttled(string)   {}
func (noMetrics) Mail(string)        {}
func (noMetrics) StoreError(string)  {}
func (noMetrics) MFA(string, string) {}
