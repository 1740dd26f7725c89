// Package passkeys lets users add passkeys (WebAuthn credentials) to their
// accounts and sign in with them: without a username, as discoverable
// credentials, or as the second factor after the password.
//
// The ceremonies follow github.com/go-webauthn/webauthn, which checks the
// origin, the relying-party id, the challenge, the signature and the
// flags. This package decides the rest: where credentials and ceremony
// state live (Store in PostgreSQL, Ceremonies in Redis), whom a ceremony
// is bound to (Binding), that a challenge is answered once, and what a
// signature counter that went backwards means (the passkey is suspended).
// Its stores and neighbours are small interfaces, so that the rules can be
// tested with fakes.
package passkeys

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/accounts"
)

// Limits.
const (
	// CeremonyTTL is how long a challenge may be answered, and the time a
	// browser gives its user to touch the authenticator.
	CeremonyTTL = 5 * time.Minute
	// MaxPerUser bounds an account's passkeys.
	MaxPerUser = 20
	// MaxName bounds a passkey's name, in characters.
	MaxName = 64
	// MaxResponse bounds the JSON of an authenticator's answer.
	MaxResponse = 32 << 10
)

// Errors of the ceremonies. Besides these, a store's error (wrapping
// store.ErrUnavailable when it is down) may come from any of them.
var (
	// ErrUnavailable: the site cannot use passkeys (see RP.Unavailable).
	ErrUnavailable = errors.New("passkeys are not available on this site")
	// ErrRefused: the authenticator's answer did not verify (wrong
	// origin, challenge, signature, user, flags, unknown credential, …).
	// Details go to the log, never to the client.
	ErrRefused = errors.New("passkey refused")
	// ErrCloned: the answer verified, but the passkey's signature counter
	// went backwards, which a copied authenticator does: the passkey is
	// suspended.
	ErrCloned = errors.New("passkey refused: its signature counter went backwards")
	// ErrBadName: a passkey's name must be 1 to MaxName printable
	// characters.
	ErrBadName = errors.New("invalid passkey name")
)

// Why a site cannot use passkeys.
const (
	ReasonNoHost   = "this site has no host name, and a passkey belongs to one"
	ReasonNotHTTPS = "this site is not served over HTTPS, and browsers offer passkeys only there (or on localhost)"
)

// RP is one site as a WebAuthn relying party. Build it with NewRP.
type RP struct {
	web    *webauthn.WebAuthn
	reason string
}

// NewRP makes the relying party of a site whose public origin is origin
// (scheme and host, as the handler's origin): its passkeys are checked
// against that origin, and belong to its host, or to cookieDomain when set,
// so that one passkey serves every site sharing the login. name is what
// authenticators show. A site without a host name, or one on plain HTTP
// other than localhost, cannot use passkeys: its RP says why (Unavailable).
// A cookieDomain that does not cover the site's host is an error.
func NewRP(origin, cookieDomain, name string) (*RP, error) {
	if origin == "" {
		return &RP{reason: ReasonNoHost}, nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("origin %q is not a URL", origin)
	}
	host := strings.ToLower(u.Hostname())
	if host == "" || net.ParseIP(host) != nil {
		return &RP{reason: ReasonNoHost}, nil
	}
	if u.Scheme != "https" && host != "localhost" && !strings.HasSuffix(host, ".localhost") {
		return &RP{reason: ReasonNotHTTPS}, nil
	}
	id := host
	if cookieDomain != "" {
		domain := strings.ToLower(strings.TrimPrefix(cookieDomain, "."))
		if host != domain && !strings.HasSuffix(host, "."+domain) {
			return nil, fmt.Errorf("authgate: cookie_domain: %q does not cover this site's host %s: "+
				"neither the session cookie nor passkeys would work there", cookieDomain, host)
		}
		id = domain
	}
	timeout := webauthn.TimeoutConfig{Enforce: true, Timeout: CeremonyTTL, TimeoutUVD: CeremonyTTL}
	web, err := webauthn.New(&webauthn.Config{
		RPID:                  id,
		RPDisplayName:         name,
		RPOrigins:             []string{strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)},
		AttestationPreference: protocol.PreferNoAttestation,
		Timeouts:              webauthn.TimeoutsConfig{Login: timeout, Registration: timeout},
	})
	if err != nil {
		return nil, fmt.Errorf("passkeys of %s: %w", origin, err)
	}
	return &RP{web: web}, nil
}

// Unavailable says why the site cannot use passkeys; "" when it can.
func (rp *RP) Unavailable() string {
	if rp == nil {
		return ReasonNoHost
	}
	return rp.reason
}

// ID is the relying-party id: the host (or domain) passkeys belong to.
func (rp *RP) ID() string {
	if rp == nil || rp.web == nil {
		return ""
	}
	return rp.web.Config.RPID
}

// Credentials stores passkeys (see Store). Lookups return ErrNotFound.
type Credentials interface {
	List(ctx context.Context, userID int64) ([]Passkey, error)
	ByCredentialID(ctx context.Context, id []byte) (Passkey, error)
	Add(ctx context.Context, p Passkey, max int) (Passkey, error)
	Rename(ctx context.Context, userID int64, id []byte, name string) error
	Remove(ctx context.Context, userID int64, id []byte) (string, error)
	Used(ctx context.Context, id []byte, signCount uint32, flags byte) error
	Suspend(ctx context.Context, id []byte) error
	Count(ctx context.Context, userID int64) (int, error)
}

// CeremonyStore keeps ceremonies under way (see Ceremonies). Take
// returns ErrNoCeremony for one that is not there.
type CeremonyStore interface {
	Save(ctx context.Context, b Binding, state []byte) error
	Take(ctx context.Context, b Binding) ([]byte, error)
}

// Accounts finds the account a passkey belongs to (accounts.Store);
// accounts.ErrNotFound when there is none.
type Accounts interface {
	ByID(ctx context.Context, id int64) (accounts.User, error)
}

// Metrics counts the uses of second factors by factor (Factor here) and
// result: success, invalid (an answer that did not verify), expired (a
// challenge answered late or twice), cloned (a counter that went
// backwards), error; metrics.Metrics does. Enrolments and removals are
// counted by Config.Enrolled and Removed.
type Metrics interface {
	MFA(factor, result string)
}

// Factor is how audit events, metrics and sessions (amr) name passkeys.
const Factor = "webauthn"

// Config is what New builds a Service from; Credentials, Ceremonies and
// Accounts are required.
type Config struct {
	Credentials Credentials
	Ceremonies  CeremonyStore
	Accounts    Accounts
	// Metrics counts the sign-ins; nil counts nothing.
	Metrics Metrics
	// Enrolled and Removed are told of a passkey added to or taken from an
	// account, as every kind of second factor tells them
	// (auth.Service.FactorEnrolled and FactorRemoved): they write the
	// audit event and count it, and Enrolled returns the recovery codes
	// that a first second factor brings, to be shown once. nil: nobody is.
	Enrolled func(ctx context.Context, u accounts.User, ip, kind string) ([]string, error)
	Removed  func(ctx context.Context, u accounts.User, ip, kind string) error
	// Logger gets what an operator must see; nil logs nothing.
	Logger *zap.Logger
}

// Service runs the passkey ceremonies of every site. It is safe for
// concurrent use.
type Service struct {
	creds      Credentials
	ceremonies CeremonyStore
	accounts   Accounts
	metrics    Metrics
	enrolled   func(ctx context.Context, u accounts.User, ip, kind string) ([]string, error)
	removed    func(ctx context.Context, u accounts.User, ip, kind string) error
	logger     *zap.Logger
}

// New returns a Service over c.
func New(c Config) *Service {
	s := &Service{creds: c.Credentials, ceremonies: c.Ceremonies, accounts: c.Accounts,
		metrics: c.Metrics, enrolled: c.Enrolled, removed: c.Removed, logger: c.Logger}
	if s.metrics == nil {
		s.metrics = noMetrics{}
	}
	if s.enrolled == nil {
		s.enrolled = func(context.Context, accounts.User, string, string) ([]string, error) { return nil, nil }
	}
	if s.removed == nil {
		s.removed = func(context.Context, accounts.User, string, string) error { return nil }
	}
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	return s
}

type noMetrics struct{}

func (noMetrics) MFA(string, string) {}

// user is an account as go-webauthn sees it. Its user handle, which
// authenticators keep and send back, is the account's userhash: random,
// stable, and naming nothing about the person.
type user struct {
	u     accounts.User
	creds []Passkey
}

func (x user) WebAuthnID() []byte          { return []byte(x.u.Userhash) }
func (x user) WebAuthnName() string        { return x.u.Username }
func (x user) WebAuthnDisplayName() string { return x.u.Username }
func (x user) WebAuthnCredentials() []webauthn.Credential {
	out := make([]webauthn.Credential, 0, len(x.creds))
	for _, p := range x.creds {
		out = append(out, p.credential())
	}
	return out
}

func (p Passkey) credential() webauthn.Credential {
	transports := make([]protocol.AuthenticatorTransport, 0, len(p.Transports))
	for _, t := range p.Transports {
		transports = append(transports, protocol.AuthenticatorTransport(t))
	}
	return webauthn.Credential{
		ID: p.ID, PublicKey: p.PublicKey, AttestationFormat: p.AttestationFormat, Transport: transports,
		Flags:         webauthn.CredentialFlagsFromMsgpByte(p.Flags),
		Authenticator: webauthn.Authenticator{AAGUID: p.AAGUID, SignCount: p.SignCount},
	}
}

// state is a ceremony's record in the CeremonyStore.
type state struct {
	Session webauthn.SessionData `json:"s"`
	// Name is the name a passkey being added will get.
	Name string `json:"n,omitempty"`
}

// List returns the account's passkeys, oldest first.
func (s *Service) List(ctx context.Context, u accounts.User) ([]Passkey, error) {
	return s.creds.List(ctx, u.ID)
}

// Count returns how many usable passkeys the account has: a second factor
// when there is at least one.
func (s *Service) Count(ctx context.Context, userID int64) (int, error) {
	return s.creds.Count(ctx, userID)
}

// CleanName returns a passkey name as it is kept: trimmed, 1 to MaxName
// characters, none of them control or formatting characters (which could
// make one name pass for another on the page); else ErrBadName.
func CleanName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 4*MaxName || !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxName {
		return "", ErrBadName
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError ||
			(unicode.IsSpace(r) && r != ' ') {
			return "", ErrBadName
		}
	}
	return name, nil
}

// BeginRegistration starts adding a passkey named name to the account,
// bound to the session (by its id) that asks: only it can finish. The
// authenticator is asked for a discoverable credential (so that it signs in
// without a username) and to verify the user (so that it alone proves
// two factors). It returns the options for navigator.credentials.create.
func (s *Service) BeginRegistration(ctx context.Context, rp *RP, u accounts.User, sessionID, name string) (*protocol.CredentialCreation, error) {
	if rp.Unavailable() != "" {
		return nil, ErrUnavailable
	}
	name, err := CleanName(name)
	if err != nil {
		return nil, err
	}
	creds, err := s.creds.List(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	if len(creds) >= MaxPerUser {
		return nil, ErrTooMany
	}
	x := user{u: u, creds: creds}
	creation, session, err := rp.web.BeginRegistration(x,
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			RequireResidentKey: protocol.ResidentKeyRequired(),
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			UserVerification:   protocol.VerificationRequired,
		}),
		// An authenticator that holds one of the account's passkeys
		// already says so, instead of making a second.
		webauthn.WithExclusions(webauthn.Credentials(x.WebAuthnCredentials()).CredentialDescriptors()),
	)
	if err != nil {
		return nil, fmt.Errorf("beginning passkey registration: %w", err)
	}
	if err := s.save(ctx, Binding{Kind: "register", Userhash: u.Userhash, Ticket: sessionID}, state{Session: *session, Name: name}); err != nil {
		return nil, err
	}
	return creation, nil
}

// FinishRegistration checks the authenticator's answer to the account's
// registration ceremony (bound to sessionID) and stores the new passkey.
// The ceremony ends whatever the outcome: a challenge is answered once. It
// returns the new passkey and, when it is the account's first second
// factor, its new recovery codes, to be shown once (see Config.Enrolled).
func (s *Service) FinishRegistration(ctx context.Context, rp *RP, u accounts.User, sessionID string, response []byte, ip string) (Passkey, []string, error) {
	const ceremony = "register"
	if rp.Unavailable() != "" {
		return Passkey{}, nil, ErrUnavailable
	}
	st, err := s.take(ctx, Binding{Kind: ceremony, Userhash: u.Userhash, Ticket: sessionID})
	if err != nil {
		return Passkey{}, nil, err
	}
	if len(response) > MaxResponse {
		return Passkey{}, nil, s.refuse(ceremony, u, ip, errors.New("answer too large"))
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return Passkey{}, nil, s.refuse(ceremony, u, ip, err)
	}
	creds, err := s.creds.List(ctx, u.ID)
	if err != nil {
		s.count("error")
		return Passkey{}, nil, err
	}
	cred, err := rp.web.CreateCredential(user{u: u, creds: creds}, st.Session, parsed)
	if err != nil {
		return Passkey{}, nil, s.refuse(ceremony, u, ip, err)
	}
	p := Passkey{
		UserID: u.ID, ID: cred.ID, PublicKey: cred.PublicKey, SignCount: cred.Authenticator.SignCount,
		AAGUID: cred.Authenticator.AAGUID, Flags: cred.Flags.MsgpByte(),
		AttestationFormat: cred.AttestationFormat, Name: st.Name,
	}
	for _, t := range cred.Transport {
		if len(p.Transports) < 8 && len(t) <= 32 {
			p.Transports = append(p.Transports, string(t))
		}
	}
	stored, err := s.creds.Add(ctx, p, MaxPerUser)
	switch {
	case errors.Is(err, ErrExists):
		// Another account's, or this one's: either way not a new passkey.
		return Passkey{}, nil, s.refuse(ceremony, u, ip, err)
	case errors.Is(err, ErrTooMany):
		s.count("invalid")
		return Passkey{}, nil, err
	case err != nil:
		s.count("error")
		return Passkey{}, nil, err
	}
	codes, err := s.enrolled(ctx, u, ip, Factor)
	if err != nil {
		// The passkey is there; only the recovery codes are not, and the
		// recovery page makes new ones.
		s.logger.Error("after adding a passkey", zap.Int64("user_id", u.ID), zap.Error(err))
	}
	return stored, codes, nil
}

// BeginLogin starts a sign-in with a discoverable passkey, for whoever
// holds the passkey: the account is learnt from the answer. It returns the
// options for navigator.credentials.get and the ticket (from crypto/rand)
// that the browser must bring back with the answer.
func (s *Service) BeginLogin(ctx context.Context, rp *RP) (*protocol.CredentialAssertion, string, error) {
	if rp.Unavailable() != "" {
		return nil, "", ErrUnavailable
	}
	// The passkey alone stands for both factors: it must verify its user.
	assertion, session, err := rp.web.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, "", fmt.Errorf("beginning passkey sign-in: %w", err)
	}
	ticket, err := NewTicket()
	if err != nil {
		return nil, "", err
	}
	if err := s.save(ctx, Binding{Kind: "login", Ticket: ticket}, state{Session: *session}); err != nil {
		return nil, "", err
	}
	return assertion, ticket, nil
}

// FinishLogin checks the answer to the sign-in ceremony of ticket and
// returns the account whose passkey signed it, its user verified. The
// ceremony ends whatever the outcome.
func (s *Service) FinishLogin(ctx context.Context, rp *RP, ticket string, response []byte, ip string) (accounts.User, error) {
	const ceremony = "login"
	if rp.Unavailable() != "" {
		return accounts.User{}, ErrUnavailable
	}
	if !ValidTicket(ticket) {
		s.count("expired")
		return accounts.User{}, ErrNoCeremony
	}
	st, err := s.take(ctx, Binding{Kind: ceremony, Ticket: ticket})
	if err != nil {
		return accounts.User{}, err
	}
	parsed, err := parseAssertion(response)
	if err != nil {
		return accounts.User{}, s.refuse(ceremony, accounts.User{}, ip, err)
	}
	// The handler finds the passkey by its id, whoever's it is; the
	// library then checks that the user handle the authenticator sent is
	// that account's, and the signature with that passkey's key.
	var lookupErr error
	var owner accounts.User
	handler := func(rawID, _ []byte) (webauthn.User, error) {
		p, err := s.usable(ctx, rawID)
		if err == nil {
			owner, err = s.accounts.ByID(ctx, p.UserID)
		}
		if err != nil {
			lookupErr = err
			return nil, err
		}
		return user{u: owner, creds: []Passkey{p}}, nil
	}
	_, cred, err := rp.web.ValidatePasskeyLogin(handler, st.Session, parsed)
	if err != nil {
		if lookupErr != nil && !refusal(lookupErr) {
			s.count("error")
			return accounts.User{}, lookupErr
		}
		return accounts.User{}, s.refuse(ceremony, owner, ip, err)
	}
	if err := s.used(ctx, ceremony, owner, cred, ip); err != nil {
		return accounts.User{}, err
	}
	s.count("success")
	return owner, nil
}

// BeginSecondFactor starts the passkey step of a login whose password was
// right: any of the account's passkeys may answer, bound to ticket (the
// pending login's). The password was one factor; the passkey is the
// second whether or not it verifies its user, so that is only preferred.
func (s *Service) BeginSecondFactor(ctx context.Context, rp *RP, u accounts.User, ticket string) (*protocol.CredentialAssertion, error) {
	if rp.Unavailable() != "" {
		return nil, ErrUnavailable
	}
	creds, err := s.usableOf(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	if len(creds) == 0 {
		return nil, ErrNotFound
	}
	assertion, session, err := rp.web.BeginLogin(user{u: u, creds: creds},
		webauthn.WithUserVerification(protocol.VerificationPreferred))
	if err != nil {
		return nil, fmt.Errorf("beginning passkey step: %w", err)
	}
	if err := s.save(ctx, Binding{Kind: "second", Userhash: u.Userhash, Ticket: ticket}, state{Session: *session}); err != nil {
		return nil, err
	}
	return assertion, nil
}

// FinishSecondFactor checks the answer to the account's passkey step of
// ticket: nil when one of the account's passkeys signed it.
func (s *Service) FinishSecondFactor(ctx context.Context, rp *RP, u accounts.User, ticket string, response []byte, ip string) error {
	const ceremony = "second"
	if rp.Unavailable() != "" {
		return ErrUnavailable
	}
	st, err := s.take(ctx, Binding{Kind: ceremony, Userhash: u.Userhash, Ticket: ticket})
	if err != nil {
		return err
	}
	parsed, err := parseAssertion(response)
	if err != nil {
		return s.refuse(ceremony, u, ip, err)
	}
	creds, err := s.usableOf(ctx, u.ID)
	if err != nil {
		s.count("error")
		return err
	}
	cred, err := rp.web.ValidateLogin(user{u: u, creds: creds}, st.Session, parsed)
	if err != nil {
		return s.refuse(ceremony, u, ip, err)
	}
	if err := s.used(ctx, ceremony, u, cred, ip); err != nil {
		return err
	}
	s.count("success")
	return nil
}

// Rename names one of the account's passkeys anew.
func (s *Service) Rename(ctx context.Context, u accounts.User, id []byte, name string) error {
	name, err := CleanName(name)
	if err != nil {
		return err
	}
	return s.creds.Rename(ctx, u.ID, id, name)
}

// Remove deletes one of the account's passkeys.
func (s *Service) Remove(ctx context.Context, u accounts.User, id []byte, ip string) error {
	if _, err := s.creds.Remove(ctx, u.ID, id); err != nil {
		return err
	}
	if err := s.removed(ctx, u, ip, Factor); err != nil {
		// The passkey is gone; only what follows from it (the recovery
		// codes of a last factor) is not.
		s.logger.Error("after removing a passkey", zap.Int64("user_id", u.ID), zap.Error(err))
	}
	return nil
}

// used records a verified sign-in with cred: a counter that went backwards
// (go-webauthn's clone warning) suspends the passkey and refuses the
// sign-in; so does one that another sign-in moved past meanwhile.
func (s *Service) used(ctx context.Context, ceremony string, u accounts.User, cred *webauthn.Credential, ip string) error {
	if cred.Authenticator.CloneWarning {
		s.count("cloned")
		s.logger.Warn("passkey suspended: its signature counter went backwards, as a copied authenticator's would",
			zap.Int64("user_id", u.ID), zap.String("username", u.Username), zap.String("client_ip", ip),
			zap.String("credential", EncodeID(cred.ID)), zap.Uint32("sign_count", cred.Authenticator.SignCount))
		if err := s.creds.Suspend(ctx, cred.ID); err != nil {
			s.logger.Error("suspending a passkey", zap.Int64("user_id", u.ID), zap.Error(err))
		}
		return ErrCloned
	}
	err := s.creds.Used(ctx, cred.ID, cred.Authenticator.SignCount, cred.Flags.MsgpByte())
	if errors.Is(err, ErrNotFound) {
		return s.refuse(ceremony, u, ip, errors.New("the passkey was removed, suspended or used with a later counter meanwhile"))
	}
	if err != nil {
		s.count("error")
		return err
	}
	return nil
}

// usable returns the passkey with the credential id unless it is
// suspended.
func (s *Service) usable(ctx context.Context, id []byte) (Passkey, error) {
	p, err := s.creds.ByCredentialID(ctx, id)
	if err == nil && !p.Suspended.IsZero() {
		return Passkey{}, errSuspended
	}
	return p, err
}

// usableOf returns the account's passkeys that are not suspended.
func (s *Service) usableOf(ctx context.Context, userID int64) ([]Passkey, error) {
	all, err := s.creds.List(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, p := range all {
		if p.Suspended.IsZero() {
			out = append(out, p)
		}
	}
	return out, nil
}

var errSuspended = errors.New("the passkey is suspended")

// refusal tells whether a lookup's error is an answer (no such passkey or
// account, or a suspended one) rather than a store failing.
func refusal(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, errSuspended) || errors.Is(err, accounts.ErrNotFound)
}

func (s *Service) count(result string) { s.metrics.MFA(Factor, result) }

// refuse logs why an answer did not verify and returns ErrRefused: the
// client learns only that it was refused.
func (s *Service) refuse(ceremony string, u accounts.User, ip string, why error) error {
	s.count("invalid")
	fields := []zap.Field{zap.String("ceremony", ceremony), zap.String("client_ip", ip), zap.Error(why)}
	var perr *protocol.Error
	if errors.As(why, &perr) && perr.DevInfo != "" {
		fields = append(fields, zap.String("detail", perr.DevInfo))
	}
	if u.ID != 0 {
		fields = append(fields, zap.Int64("user_id", u.ID), zap.String("username", u.Username))
	}
	s.logger.Info("passkey refused", fields...)
	return ErrRefused
}

func (s *Service) save(ctx context.Context, b Binding, st state) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.ceremonies.Save(ctx, b, raw)
}

func (s *Service) take(ctx context.Context, b Binding) (state, error) {
	raw, err := s.ceremonies.Take(ctx, b)
	if errors.Is(err, ErrNoCeremony) {
		s.count("expired")
		return state{}, err
	}
	if err != nil {
		s.count("error")
		return state{}, err
	}
	var st state
	if err := json.Unmarshal(raw, &st); err != nil {
		s.count("error")
		return state{}, fmt.Errorf("reading passkey ceremony: %w", err)
	}
	return st, nil
}

func parseAssertion(response []byte) (*protocol.ParsedCredentialAssertionData, error) {
	if len(response) > MaxResponse {
		return nil, errors.New("answer too large")
	}
	return protocol.ParseCredentialRequestResponseBytes(response)
}

// NewTicket returns a random ticket: 32 bytes from crypto/rand, base64url.
func NewTicket() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ValidTicket tells whether t has the shape of a NewTicket.
func ValidTicket(t string) bool {
	b, err := base64.RawURLEncoding.DecodeString(t)
	return err == nil && len(b) == 32
}

// EncodeID spells a credential id as the pages and logs do: base64url.
func EncodeID(id []byte) string { return base64.RawURLEncoding.EncodeToString(id) }

// DecodeID reads a credential id spelled by EncodeID; false when it is
// not one (WebAuthn ids are 1 to 1023 bytes).
func DecodeID(s string) ([]byte, bool) {
	if len(s) > 1400 {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	return b, err == nil && len(b) > 0 && len(b) <= 1023
}
