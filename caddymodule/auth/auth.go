// Package auth holds the account operations that every front door shares:
// the users API, the REST dialect, the pages and the CLI all log in,
// register and reset passwords through one Service, so the rules (throttling,
// password policy, session handling, audit) live in one place.
package auth

import (
	"context"
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/mail"
	"github.com/authgate/authgate/caddymodule/onetime"
	"github.com/authgate/authgate/caddymodule/password"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/store"
	"github.com/authgate/authgate/caddymodule/throttle"
	"github.com/authgate/authgate/caddymodule/useragent"
	"github.com/authgate/authgate/caddymodule/username"
)

// Errors of the account operations. Each front door maps them to its own
// dialect; store.ErrUnavailable (a store is down) may come from any of them.
var (
	ErrInvalidInput       = errors.New("invalid input")
	ErrUnknownUser        = errors.New("unknown user")
	ErrInvalidPassword    = errors.New("invalid password")
	ErrExists             = errors.New("user already exists")
	ErrRegistrationClosed = errors.New("registration is closed")
	ErrNoEmail            = errors.New("no email address set")
	ErrInvalidCode        = errors.New("invalid or expired code")
	ErrMailFailed         = errors.New("sending mail failed")
	ErrTooWeak            = password.ErrTooWeak
	// ErrBadBytes is the invalid input of a parameter holding NUL or bytes
	// that are not UTF-8: it never reaches a store.
	ErrBadBytes = fmt.Errorf("%w: NUL or invalid UTF-8", ErrInvalidInput)
)

// ThrottledError says that the subject has failed too often; it may try again
// after RetryAfter.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many attempts, retry after %s", e.RetryAfter.Round(time.Second))
}

// Limits on input sizes, so that no field can be used to exhaust anything.
// Usernames have theirs in package username.
const (
	MaxEmail = 254
	// Passwords are at most 1024 characters (password.CheckStrength); a
	// byte bound of four times that stops oversized input before any work.
	maxPasswordBytes = 4 * 1024
)

// Service performs account operations. Build it with New; it is safe for
// concurrent use.
type Service struct {
	accounts         Accounts
	sessions         Sessions
	codes            Codes
	throttle         Throttle
	devices          Devices // nil: no device cookie is honoured
	hasher           Hasher
	mailer           Mailer
	mailFrom         string
	registration     bool
	passwordMinScore int
	factors          Factors
	tickets          Tickets
	mfa              string
	metrics          Metrics
	logger           *zap.Logger
	emit             func(name string, data map[string]any) // nil: none
	now              func() time.Time
	created          *createdTimes // for AccountInfo
}

// Attempt names who tries an account's secret (a password, a code): the
// username given, the client IP and the device cookie the client sent
// (empty: none). Failures count per username and IP, or, with a device
// cookie signed for that very username, on the device's own allowance.
type Attempt struct {
	Username string
	IP       string
	Device   string
	// UserAgent is the client's User-Agent, kept (summarised) with a
	// session started by this attempt.
	UserAgent string
}

// ReauthWindow is how long after its login a session may change the
// password without giving the current one.
const ReauthWindow = 5 * time.Minute

// Login checks the credentials and starts a new session. A user with a
// second factor gets none: ErrSecondFactorRequired (see LoginWith).
func (s *Service) Login(ctx context.Context, at Attempt, pw string) (accounts.User, string, sessions.Session, error) {
	return s.LoginWith(ctx, at, pw, Proof{})
}

// startLogin starts the session of a login whose every factor is proven,
// and counts and records it.
func (s *Service) startLogin(ctx context.Context, u accounts.User, at Attempt, amr []string) (accounts.User, string, sessions.Session, error) {
	token, sess, err := s.StartSession(ctx, u, at, amr...)
	if err != nil {
		s.metrics.Login(resultOf(err))
		return accounts.User{}, "", sessions.Session{}, err
	}
	s.metrics.Login("success")
	s.audit("login_succeeded", u.Username, at.IP, zap.Int64("user_id", u.ID), zap.String("session", sessions.FormatID(sess.ID)),
		zap.String("amr", AMRText(sess.AMR)))
	return u, token, sess, nil
}

// Verify checks the credentials without starting a session. Unknown users
// cost the same hashing time as wrong passwords, and both count as failures
// of the attempt (see Attempt). Every outcome but success is counted in the
// login metric here; a success is Login's to count.
func (s *Service) Verify(ctx context.Context, at Attempt, pw string) (accounts.User, error) {
	name := at.Username
	if name == "" || len(name) > username.MaxInputBytes || pw == "" || len(pw) > maxPasswordBytes {
		return accounts.User{}, ErrInvalidInput
	}
	if badBytes(name, pw) {
		return accounts.User{}, s.RefuseLogin(ctx, at)
	}
	// A name that could never be registered is simply unknown, and costs as
	// much as any other.
	canonical, nameErr := username.Canonical(name)
	subject := s.subject("login", throttleName(name, canonical), at)
	if err := s.checkThrottle(ctx, subject); err != nil {
		s.metrics.Login(resultOf(err))
		return accounts.User{}, err
	}
	var u accounts.User
	err := error(accounts.ErrNotFound)
	if nameErr == nil {
		u, err = s.accounts.ByName(ctx, canonical, name)
	}
	switch {
	case errors.Is(err, accounts.ErrNotFound):
		if err := s.hasher.Burn(ctx); err != nil {
			s.metrics.Login("error")
			return accounts.User{}, err
		}
		err = s.fail(ctx, subject, ErrUnknownUser)
		s.metrics.Login(resultOf(err))
		return accounts.User{}, err
	case err != nil:
		s.storeError(err)
		s.metrics.Login("error")
		s.takeBack(ctx, subject)
		return accounts.User{}, err
	}
	ok, rehash, err := s.hasher.Verify(ctx, pw, u.PasswordHash)
	if err != nil {
		s.metrics.Login("error")
		return accounts.User{}, fmt.Errorf("verifying password of user %d: %w", u.ID, err)
	}
	if !ok {
		err = s.fail(ctx, subject, ErrInvalidPassword)
		s.metrics.Login(resultOf(err))
		return accounts.User{}, err
	}
	if rehash {
		s.upgradeHash(ctx, u, pw)
	}
	// An account that kept its exact name shares its counter with the one
	// holding its canonical form: its own logins must not clear that.
	if u.Canonical == canonical {
		s.forget(ctx, subject)
	}
	return u, nil
}

// RefuseLogin answers a login whose request carries NUL or bytes that are
// not UTF-8 in any parameter: it counts as a failed login of the attempt
// (the name canonical when it has a canonical form), so that such requests
// probe nothing for free. It returns ErrBadBytes, or why the failure could
// not be counted.
func (s *Service) RefuseLogin(ctx context.Context, at Attempt) error {
	canonical, _ := username.Canonical(at.Username)
	subject := s.subject("login", throttleName(at.Username, canonical), at)
	if err := s.checkThrottle(ctx, subject); err != nil {
		s.metrics.Login(resultOf(err))
		return err
	}
	err := s.fail(ctx, subject, ErrBadBytes)
	s.metrics.Login(resultOf(err))
	return err
}

// throttleName is the name failures count against: the canonical form, so
// that look-alikes share one counter, or the name as sent when it has none,
// so that refused names count too.
func throttleName(name, canonical string) string {
	if canonical != "" {
		return canonical
	}
	return name
}

// UserByName returns the account a name typed by someone names: ErrBadBytes
// for NUL or invalid UTF-8, ErrUnknownUser when there is none (also when
// the name has no canonical form).
func (s *Service) UserByName(ctx context.Context, name string) (accounts.User, error) {
	if username.BadBytes(name) {
		return accounts.User{}, ErrBadBytes
	}
	canonical, err := username.Canonical(name)
	if err != nil {
		return accounts.User{}, ErrUnknownUser
	}
	u, err := s.accounts.ByName(ctx, canonical, name)
	if errors.Is(err, accounts.ErrNotFound) {
		return accounts.User{}, ErrUnknownUser
	}
	if err != nil {
		s.storeError(err)
		return accounts.User{}, err
	}
	return u, nil
}

// StartSession starts a session for an account whose identity is already
// established (after login, registration with autologin, password change).
// An account whose name is refused (made before names were checked as they
// are now) gets none, ErrUnknownUser: its name must not reach the upstream.
// at says where from (its address and User-Agent are kept with the session);
// amr says how the identity was established ("pwd" when empty).
func (s *Service) StartSession(ctx context.Context, u accounts.User, at Attempt, amr ...string) (string, sessions.Session, error) {
	if u.Canonical == "" {
		if _, err := username.Canonical(u.Username); err != nil {
			return "", sessions.Session{}, ErrUnknownUser
		}
	}
	if len(amr) == 0 {
		amr = []string{"pwd"}
	}
	token, sess, err := s.sessions.Create(ctx, sessions.Session{
		UserID: u.ID, Userhash: u.Userhash, Username: u.Username, Email: u.Email,
		IP: at.IP, Device: useragent.Summary(at.UserAgent), AMR: amr,
	})
	if err != nil {
		s.storeError(err)
	}
	return token, sess, err
}

// upgradeHash replaces an imported or outdated hash with one of the current
// cost. A failure leaves the old, still valid hash in place.
func (s *Service) upgradeHash(ctx context.Context, u accounts.User, pw string) {
	h, err := s.hasher.Hash(ctx, pw)
	if err == nil {
		err = s.accounts.SetPassword(ctx, u.ID, h)
	}
	if err != nil {
		s.logger.Warn("re-hashing password", zap.Int64("user_id", u.ID), zap.Error(err))
		return
	}
	s.logger.Info("password re-hashed with current parameters", zap.Int64("user_id", u.ID))
}

// Register creates an account, when registration is open.
func (s *Service) Register(ctx context.Context, username, pw, email, ip string) (accounts.User, error) {
	if !s.registration {
		return accounts.User{}, ErrRegistrationClosed
	}
	return s.CreateUser(ctx, username, pw, email, ip)
}

// CreateUser creates an account whether or not registration is open (for
// administrators). The account is named by the canonical form of name.
func (s *Service) CreateUser(ctx context.Context, name, pw, email, ip string) (accounts.User, error) {
	if badBytes(name, pw, email) {
		return accounts.User{}, ErrBadBytes
	}
	email = strings.TrimSpace(email)
	canonical, err := username.Canonical(name)
	if err != nil || !validEmail(email) || len(pw) > maxPasswordBytes {
		return accounts.User{}, ErrInvalidInput
	}
	if err := s.checkPassword(canonical, email, pw); err != nil {
		return accounts.User{}, err
	}
	// Most duplicates are caught here, before paying for a hash; a
	// concurrent registration of the same name is caught by the insert.
	if _, err := s.accounts.ByName(ctx, canonical, canonical); err == nil {
		return accounts.User{}, ErrExists
	} else if !errors.Is(err, accounts.ErrNotFound) {
		s.storeError(err)
		return accounts.User{}, err
	}
	h, err := s.hasher.Hash(ctx, pw)
	if err != nil {
		return accounts.User{}, err
	}
	return s.insert(ctx, canonical, email, h, ip)
}

// ImportUser creates an account with a password hash from another system
// (bcrypt or argon2id PHC); it is re-hashed at the first login. The account
// is named by the canonical form of name.
func (s *Service) ImportUser(ctx context.Context, name, hash, email string) (accounts.User, error) {
	if badBytes(name, hash, email) {
		return accounts.User{}, ErrBadBytes
	}
	canonical, err := username.Canonical(name)
	if err != nil || !validEmail(email) || !password.IsHash(hash) {
		return accounts.User{}, ErrInvalidInput
	}
	return s.insert(ctx, canonical, email, hash, "")
}

func (s *Service) insert(ctx context.Context, canonical, email, hash, ip string) (accounts.User, error) {
	u, err := s.accounts.Create(ctx, canonical, email, hash)
	if errors.Is(err, accounts.ErrExists) {
		return accounts.User{}, ErrExists
	}
	if err != nil {
		s.storeError(err)
		return accounts.User{}, err
	}
	s.audit("user_registered", u.Username, ip, zap.Int64("user_id", u.ID))
	return u, nil
}

// RequestOTP mails a new OTP to the user and returns the account and the
// request id that must come back with the code.
func (s *Service) RequestOTP(ctx context.Context, name, ip string) (accounts.User, string, error) {
	if name == "" || len(name) > username.MaxInputBytes {
		return accounts.User{}, "", ErrInvalidInput
	}
	if username.BadBytes(name) {
		return accounts.User{}, "", ErrBadBytes
	}
	// Each request sends a mail: count them all, so nobody can mail-bomb.
	canonical, _ := username.Canonical(name)
	subject := throttle.Subject{Kind: "mail", Username: throttleName(name, canonical), IP: ip}
	if err := s.checkThrottle(ctx, subject); err != nil {
		return accounts.User{}, "", err
	}
	u, err := s.UserByName(ctx, name)
	if err != nil {
		return accounts.User{}, "", err
	}
	if u.Email == "" {
		return accounts.User{}, "", ErrNoEmail
	}
	reqid, code, err := s.codes.IssueOTP(ctx, u.Userhash)
	if err != nil {
		s.storeError(err)
		return accounts.User{}, "", err
	}
	body := fmt.Sprintf("Your one-time code to reset the password of %s is:\n\n    %s\n\n"+
		"It is valid for %s. If you did not ask for it, ignore this mail: your password stays as it is.\n",
		u.Username, code, HumanDuration(s.codes.TTL()))
	if err := s.send(ctx, u, "Your password reset code", body); err != nil {
		// Also when the send ended because the client went away: its
		// context is done then, yet a code nobody got must not stay valid.
		// The store's own timeouts bound the call.
		_ = s.codes.DropOTP(context.WithoutCancel(ctx), u.Userhash)
		return accounts.User{}, "", err
	}
	s.audit("otp_requested", u.Username, ip, zap.Int64("user_id", u.ID))
	return u, reqid, nil
}

// ResetWithOTP sets a new password when the OTP is right, and ends every
// session and OTP of the user. A weak password is refused before the OTP is
// tried, so the user does not lose the code to a typo.
func (s *Service) ResetWithOTP(ctx context.Context, userhash, reqid, code, newPassword, ip string) (accounts.User, error) {
	if badBytes(userhash, reqid, code, newPassword) {
		return accounts.User{}, ErrBadBytes
	}
	if len(userhash) > 64 || len(reqid) > 64 || len(code) > 16 || len(newPassword) > maxPasswordBytes {
		return accounts.User{}, ErrInvalidInput
	}
	if !validUserhash(userhash) {
		return accounts.User{}, ErrUnknownUser
	}
	u, err := s.accounts.ByUserhash(ctx, userhash)
	if errors.Is(err, accounts.ErrNotFound) {
		return accounts.User{}, ErrUnknownUser
	}
	if err != nil {
		s.storeError(err)
		return accounts.User{}, err
	}
	if err := s.checkPassword(u.Username, u.Email, newPassword); err != nil {
		return accounts.User{}, err
	}
	subject := throttle.Subject{Kind: "otp", Username: u.Username, IP: ip, Code: true}
	if err := s.checkThrottle(ctx, subject); err != nil {
		return accounts.User{}, err
	}
	if err := s.codes.CheckOTP(ctx, u.Userhash, reqid, code); err != nil {
		if errors.Is(err, onetime.ErrInvalid) {
			s.audit("password_reset_failed", u.Username, ip, zap.Int64("user_id", u.ID))
			return accounts.User{}, s.fail(ctx, subject, ErrInvalidCode)
		}
		s.storeError(err)
		return accounts.User{}, err
	}
	if err := s.setPassword(ctx, u, newPassword, ""); err != nil {
		return accounts.User{}, err
	}
	s.forget(ctx, subject)
	s.audit("password_changed", u.Username, ip, zap.Int64("user_id", u.ID), zap.String("by", "otp"))
	return u, nil
}

// ResetWithToken sets a new password with a mailed reset token (the REST
// dialect's recovery), spends the token, and ends every session of the user.
func (s *Service) ResetWithToken(ctx context.Context, token, newPassword, ip string) (accounts.User, error) {
	if badBytes(token, newPassword) {
		return accounts.User{}, ErrBadBytes
	}
	if len(token) > 128 || len(newPassword) > maxPasswordBytes {
		return accounts.User{}, ErrInvalidInput
	}
	// Tokens cannot be guessed, but failures still count per client IP, so
	// nobody can even try at scale.
	subject := throttle.Subject{Kind: "reset", IP: ip, Code: true}
	if err := s.checkThrottle(ctx, subject); err != nil {
		return accounts.User{}, err
	}
	id, issued, err := s.codes.ResetTokenUser(ctx, token)
	if errors.Is(err, onetime.ErrInvalid) {
		return accounts.User{}, s.fail(ctx, subject, ErrInvalidCode)
	}
	if err != nil {
		s.storeError(err)
		return accounts.User{}, err
	}
	u, err := s.accounts.ByID(ctx, id)
	if errors.Is(err, accounts.ErrNotFound) || (err == nil && u.UpdatedAt.After(issued)) {
		// A token older than the current password belongs to a recovery
		// that another change has already settled.
		return accounts.User{}, s.fail(ctx, subject, ErrInvalidCode)
	}
	if err != nil {
		s.storeError(err)
		return accounts.User{}, err
	}
	if err := s.checkPassword(u.Username, u.Email, newPassword); err != nil {
		return accounts.User{}, err
	}
	if spent, err := s.codes.ConsumeResetToken(ctx, token); err != nil || spent != id {
		if err == nil || errors.Is(err, onetime.ErrInvalid) {
			return accounts.User{}, ErrInvalidCode // spent by a concurrent request
		}
		s.storeError(err)
		return accounts.User{}, err
	}
	if err := s.setPassword(ctx, u, newPassword, ""); err != nil {
		return accounts.User{}, err
	}
	s.forget(ctx, subject)
	s.audit("password_changed", u.Username, ip, zap.Int64("user_id", u.ID), zap.String("by", "reset_token"))
	return u, nil
}

// ChangePassword sets a new password for an account whose identity is
// established (by its session or its current password) and ends every
// session of the user but the one with id keepID (empty: all of them).
func (s *Service) ChangePassword(ctx context.Context, u accounts.User, newPassword, keepID, ip string) error {
	if username.BadBytes(newPassword) {
		return ErrBadBytes
	}
	if len(newPassword) > maxPasswordBytes {
		return ErrInvalidInput
	}
	if err := s.checkPassword(u.Username, u.Email, newPassword); err != nil {
		return err
	}
	if err := s.setPassword(ctx, u, newPassword, keepID); err != nil {
		return err
	}
	s.audit("password_changed", u.Username, ip, zap.Int64("user_id", u.ID), zap.String("by", "password_change"))
	return nil
}

// CheckNewPassword applies the password policy to a new password for the
// account named name, as far as it can be judged without the account (the
// reset page judges it before it may tell whether the account exists).
func (s *Service) CheckNewPassword(name, pw string) error {
	if c, err := username.Canonical(name); err == nil {
		name = c
	}
	return s.checkPassword(name, "", pw)
}

// checkPassword applies the password policy to a new password of the account
// named name (its canonical form) with the address email: length, not the
// name, and not common or easily guessed, also from the name and address.
func (s *Service) checkPassword(name, email, pw string) error {
	if err := password.CheckStrength(name, pw); err != nil {
		return err
	}
	inputs := []string{name, email}
	if local, _, ok := strings.Cut(email, "@"); ok {
		inputs = append(inputs, local)
	}
	return password.CheckGuessable(pw, s.passwordMinScore, inputs...)
}

// MailResetLink mails the user a link with a new single-use reset token;
// link builds the URL around the token.
func (s *Service) MailResetLink(ctx context.Context, u accounts.User, ip string, link func(token string) string) error {
	if u.Email == "" {
		return ErrNoEmail
	}
	subject := throttle.Subject{Kind: "mail", Username: u.Username, IP: ip}
	if err := s.checkThrottle(ctx, subject); err != nil {
		return err
	}
	token, err := s.codes.IssueResetToken(ctx, u.ID)
	if err != nil {
		s.storeError(err)
		return err
	}
	body := fmt.Sprintf("To set a new password for %s, open this link:\n\n%s\n\n"+
		"It works once and for %s. If you did not ask for it, ignore this mail: your password stays as it is.\n",
		u.Username, link(token), HumanDuration(s.codes.TTL()))
	if err := s.send(ctx, u, "Reset your password", body); err != nil {
		return err
	}
	s.audit("reset_link_sent", u.Username, ip, zap.Int64("user_id", u.ID))
	return nil
}

// setPassword stores a new hash and ends the user's sessions but keepID, and
// any OTP still pending.
func (s *Service) setPassword(ctx context.Context, u accounts.User, newPassword, keepID string) error {
	h, err := s.hasher.Hash(ctx, newPassword)
	if err != nil {
		return err
	}
	if err := s.accounts.SetPassword(ctx, u.ID, h); err != nil {
		s.storeError(err)
		return err
	}
	n, err := s.sessions.RevokeUser(ctx, u.Userhash, keepID)
	if err != nil {
		// The password changed but old sessions may live on: say so loudly.
		s.logger.Error("ending sessions after password change", zap.Int64("user_id", u.ID), zap.Error(err))
		s.storeError(err)
		return err
	}
	if err := s.codes.DropOTP(ctx, u.Userhash); err != nil {
		s.logger.Warn("dropping OTP after password change", zap.Int64("user_id", u.ID), zap.Error(err))
	}
	s.logger.Info("sessions ended after password change", zap.Int64("user_id", u.ID), zap.Int("sessions", n))
	return nil
}

// Authenticate returns the live session of token in one call to the
// session store: sessions.ErrNotFound when there is none. The gate calls it
// for every request.
func (s *Service) Authenticate(ctx context.Context, token string) (sessions.Session, error) {
	sess, err := s.sessions.Lookup(ctx, token)
	if err != nil && !errors.Is(err, sessions.ErrNotFound) {
		s.storeError(err)
	}
	return sess, err
}

// Account returns the account behind a session.
func (s *Service) Account(ctx context.Context, sess sessions.Session) (accounts.User, error) {
	u, err := s.accounts.ByID(ctx, sess.UserID)
	if err != nil && !errors.Is(err, accounts.ErrNotFound) {
		s.storeError(err)
	}
	return u, err
}

// AccountInfo returns what users/info shows of the account behind a live
// session, as the gate knows it: the session's own copy of the account
// (what the gate passes upstream) and the account's creation time, read
// from PostgreSQL once per account and then kept, since it never changes.
// So the endpoint a forward_auth setup calls on every request costs no
// query, and answers like the gate while PostgreSQL is down, except for an
// account it has not read yet.
func (s *Service) AccountInfo(ctx context.Context, sess sessions.Session) (accounts.User, error) {
	created, ok := s.created.get(sess.UserID)
	if !ok {
		u, err := s.Account(ctx, sess)
		if err != nil {
			return accounts.User{}, err
		}
		created = u.CreatedAt
		s.created.put(u.ID, created)
	}
	return accounts.User{ID: sess.UserID, Userhash: sess.Userhash, Username: sess.Username, Email: sess.Email, CreatedAt: created}, nil
}

// Logout ends the session of token.
func (s *Service) Logout(ctx context.Context, token, ip string) error {
	sess, err := s.sessions.Lookup(ctx, token)
	if errors.Is(err, sessions.ErrNotFound) {
		return nil
	}
	if err == nil {
		err = s.sessions.Delete(ctx, token)
	}
	if err != nil {
		s.storeError(err)
		return err
	}
	s.audit("logout", sess.Username, ip, zap.Int64("user_id", sess.UserID), zap.String("session", sessions.FormatID(sess.ID)))
	return nil
}

// UserByID returns the account with the id: ErrUnknownUser when there is
// none.
func (s *Service) UserByID(ctx context.Context, id int64) (accounts.User, error) {
	u, err := s.accounts.ByID(ctx, id)
	if errors.Is(err, accounts.ErrNotFound) {
		return accounts.User{}, ErrUnknownUser
	}
	if err != nil {
		s.storeError(err)
		return accounts.User{}, err
	}
	return u, nil
}

// ListSessions returns the live sessions of the account, oldest first.
func (s *Service) ListSessions(ctx context.Context, u accounts.User) ([]sessions.Session, error) {
	list, err := s.sessions.List(ctx, u.Userhash)
	if err != nil {
		s.storeError(err)
	}
	return list, err
}

// RevokeSessions ends every session of the account (an administrator's
// doing) and returns how many ended.
func (s *Service) RevokeSessions(ctx context.Context, u accounts.User, ip string) (int, error) {
	n, err := s.sessions.RevokeUser(ctx, u.Userhash, "")
	if err != nil {
		s.storeError(err)
		return 0, err
	}
	s.audit("sessions_revoked", u.Username, ip, zap.Int64("user_id", u.ID), zap.Int("sessions", n))
	return n, nil
}

// RegistrationOpen tells whether anyone may create an account.
func (s *Service) RegistrationOpen() bool { return s.registration }

// CodeTTL is how long a mailed code or reset link stays valid.
func (s *Service) CodeTTL() time.Duration { return s.codes.TTL() }

// Decoy returns what a recovery page shows, in place of an account's
// userhash and a new OTP's request id, for a name that gets no code, so
// that the page looks the same either way (see onetime.Store.Decoy).
func (s *Service) Decoy(name string) (userhash, reqid string, err error) {
	return s.codes.Decoy(name)
}

// subject is the throttle subject of an attempt of the kind at username's
// secret: with a device cookie signed for that username, the device's own.
func (s *Service) subject(kind, username string, at Attempt) throttle.Subject {
	subject := throttle.Subject{Kind: kind, Username: username, IP: at.IP}
	if at.Device != "" && s.devices != nil {
		subject.Device, _ = s.devices.Verify(at.Device, s.throttle.UserKey(username))
	}
	return subject
}

// NewDevice returns a new device cookie value for the account, and when it
// expires: the client that just logged in keeps its own allowance of
// failures from now on. Without Devices it returns "".
func (s *Service) NewDevice(u accounts.User) (string, time.Time) {
	if s.devices == nil {
		return "", time.Time{}
	}
	// Keyed like the throttle's subject of a login by this name (see
	// throttleName), so that Verify finds it.
	canonical, _ := username.Canonical(u.Username)
	return s.devices.Issue(s.throttle.UserKey(throttleName(u.Username, canonical)))
}

// FreshLogin tells whether the session's login is recent enough (under
// ReauthWindow) to stand in for the current password.
func (s *Service) FreshLogin(sess sessions.Session) bool {
	return s.now().Sub(time.Unix(sess.Created, 0)) < ReauthWindow
}

// checkThrottle counts an attempt before it is made, and refuses it when the
// subject has tried too often. A success takes the count back (Forget).
func (s *Service) checkThrottle(ctx context.Context, subject throttle.Subject) error {
	wait, err := s.throttle.Attempt(ctx, subject)
	if err != nil {
		s.storeError(err)
		return err
	}
	if wait > 0 {
		s.metrics.Throttled(subject.Kind)
		s.logger.Warn("attempt throttled", zap.String("kind", subject.Kind),
			zap.String("username", subject.Username), zap.String("client_ip", subject.IP),
			zap.Bool("device", subject.Device != ""), zap.Duration("retry_after", wait))
		return &ThrottledError{RetryAfter: wait}
	}
	return nil
}

// forget takes back the count of a successful attempt. Failing to costs the
// subject one attempt of its allowance, no more: the success stands.
func (s *Service) forget(ctx context.Context, subject throttle.Subject) {
	if err := s.throttle.Forget(ctx, subject); err != nil {
		s.logger.Warn("clearing throttle", zap.String("kind", subject.Kind), zap.Error(err))
	}
}

// takeBack takes back the count of an attempt that was never judged,
// because a store failed before the secret was checked: retries through an
// outage must not lock the user (or everyone behind one address) out once
// it is over. Failing to costs the subject that one attempt.
func (s *Service) takeBack(ctx context.Context, subject throttle.Subject) {
	if err := s.throttle.TakeBack(ctx, subject); err != nil {
		s.logger.Warn("taking back an attempt", zap.String("kind", subject.Kind), zap.Error(err))
	}
}

// fail reports a failed attempt, counted already by checkThrottle, and
// returns cause.
func (s *Service) fail(_ context.Context, subject throttle.Subject, cause error) error {
	if subject.Kind == "login" {
		reason := "invalid_password"
		switch cause {
		case ErrUnknownUser:
			reason = "unknown_user"
		case ErrBadBytes:
			reason = "invalid_input"
		}
		s.audit("login_failed", subject.Username, subject.IP, zap.String("reason", reason))
	}
	return cause
}

func (s *Service) send(ctx context.Context, u accounts.User, subject, body string) error {
	err := s.mailer.Send(ctx, mail.Message{From: s.mailFrom, To: u.Email, Subject: subject, Body: body})
	if err != nil {
		s.metrics.Mail("failed")
		s.logger.Error("sending mail", zap.Int64("user_id", u.ID), zap.Error(err))
		return fmt.Errorf("%w: %w", ErrMailFailed, err)
	}
	s.metrics.Mail("sent")
	return nil
}

// audit writes the structured log line of an account event and emits it as a
// Caddy event. Callers pass no secret: names, ids and addresses only.
func (s *Service) audit(event, username, ip string, fields ...zap.Field) {
	fields = append(fields, zap.String("username", username), zap.String("client_ip", ip))
	s.logger.Info(strings.ReplaceAll(event, "_", " "), append(fields, zap.String("event", event))...)
	if s.emit != nil {
		data := map[string]any{"username": username, "client_ip": ip}
		for _, f := range fields {
			switch {
			case f.String != "":
				data[f.Key] = f.String
			case f.Integer != 0:
				data[f.Key] = f.Integer
			}
		}
		s.emit("authgate."+event, data)
	}
}

func (s *Service) storeError(err error) {
	var outage *store.OutageError
	if errors.As(err, &outage) {
		s.metrics.StoreError(outage.Store)
	}
}

func resultOf(err error) string {
	var t *ThrottledError
	switch {
	case err == nil:
		return "success"
	case errors.As(err, &t):
		return "throttled"
	case errors.Is(err, ErrInvalidPassword):
		return "invalid_password"
	case errors.Is(err, ErrUnknownUser):
		return "unknown_user"
	case errors.Is(err, ErrBadBytes):
		return "invalid_input"
	case errors.Is(err, ErrInvalidSecondFactor):
		return "invalid_second_factor"
	default:
		return "error"
	}
}

// badBytes tells whether any of values holds NUL or is not UTF-8.
func badBytes(values ...string) bool {
	for _, v := range values {
		if username.BadBytes(v) {
			return true
		}
	}
	return false
}

func validEmail(email string) bool {
	if email == "" {
		return true
	}
	if len(email) > MaxEmail {
		return false
	}
	a, err := netmail.ParseAddress(email)
	return err == nil && a.Name == "" && a.Address == email
}

func validUserhash(h string) bool {
	if len(h) != 32 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// HumanDuration says a time the way a mail or a page would: "10 minutes",
// rounded up to whole minutes so that nobody is told to wait 0 minutes.
func HumanDuration(d time.Duration) string {
	unit, n := "minute", int64((d+time.Minute-1)/time.Minute)
	if d >= time.Hour && d%time.Hour == 0 {
		unit, n = "hour", int64(d/time.Hour)
	}
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
