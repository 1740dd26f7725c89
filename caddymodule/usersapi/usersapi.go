// Package usersapi serves the seed dialect of the account endpoints,
// {prefix}/users/<name>, in its envelope:
//
//	{"success": true,  "data": {"message": {...} | "CODE"}}
//	{"success": false, "data": {"message": "CODE"}}
//
// Existing front-ends read success and data.message, so the codes and
// statuses here are a contract (SPEC.md, "The users API"). One exception to
// the envelope is kept from the seed's own server: a successful login
// answers "success": "true", a string, which its client tests with
// === "true".
package usersapi

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/auth"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/web"
)

// Codes shared by every endpoint.
const (
	InvalidInput       = "INVALID_INPUT"
	PasswordTooWeak    = "PASSWORD_TOO_WEAK"
	TooManyAttempts    = "TOO_MANY_ATTEMPTS"
	MethodNotAllowed   = "METHOD_NOT_ALLOWED"
	NotFound           = "NOT_FOUND"
	ServiceUnavailable = "SERVICE_UNAVAILABLE"
	InternalError      = "INTERNAL_ERROR"
	PleaseLogin        = "PLEASE_LOGIN"
	// MFARequired: the password was right, and the user has a second
	// factor: send it as totp or recovery_code with the same login.
	MFARequired = "MFA_REQUIRED"
	// MFAEnrolmentRequired: under mfa required, the user has no second
	// factor yet; one is enrolled on the account page.
	MFAEnrolmentRequired = "MFA_ENROLMENT_REQUIRED"
	// CrossSite refuses a browser's request sent from another site: bodies
	// are read as JSON whatever their type, so a text/plain form on any
	// site could otherwise post here (login CSRF).
	CrossSite = "CROSS_SITE_REQUEST"
)

// Service is what the dialect asks of the account service, *auth.Service:
// an interface, so that the dialect's answer to every outcome of the
// service can be tested on its own.
type Service interface {
	LoginWith(ctx context.Context, at auth.Attempt, password string, proof auth.Proof) (accounts.User, string, sessions.Session, error)
	RefuseLogin(ctx context.Context, at auth.Attempt) error
	Register(ctx context.Context, username, password, email, ip string) (accounts.User, error)
	RequestOTP(ctx context.Context, name, ip string) (accounts.User, string, error)
	ResetWithOTP(ctx context.Context, userhash, reqid, code, newPassword, ip string) (accounts.User, error)
	Authenticate(ctx context.Context, token string) (sessions.Session, error)
	AccountInfo(ctx context.Context, sess sessions.Session) (accounts.User, error)
	Logout(ctx context.Context, token, ip string) error
	RegistrationOpen() bool
	NewDevice(u accounts.User) (string, time.Time)
}

var _ Service = (*auth.Service)(nil)

// API serves the users dialect.
type API struct {
	Service Service
	Cookie  web.Cookie
	Logger  *zap.Logger
}

type endpoint struct {
	methods string // for the Allow header
	serve   func(a *API, w http.ResponseWriter, r *http.Request, p web.Params)
	mails   bool // changes something (sends a mail) also when asked by GET
}

var endpoints = map[string]endpoint{
	"login":                       {"POST", (*API).login, false},
	"register":                    {"POST", (*API).register, false},
	"requestotp":                  {"GET, POST", (*API).requestOTP, true},
	"modifypassword":              {"POST", (*API).modifyPassword, false},
	"info":                        {"GET", (*API).info, false},
	"logout":                      {"POST", (*API).logout, false},
	"settings/registrationstatus": {"GET", (*API).registrationStatus, false},
}

// Names lists the endpoints' names, sorted.
func Names() []string { return slices.Sorted(maps.Keys(endpoints)) }

// Serve answers the endpoint name (the path after "users/").
func (a *API) Serve(w http.ResponseWriter, r *http.Request, name string) {
	ep, ok := endpoints[strings.TrimSuffix(name, "/")]
	if !ok {
		Fail(w, http.StatusNotFound, NotFound)
		return
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if !slices.Contains(strings.Split(ep.methods, ", "), method) {
		w.Header().Set("Allow", ep.methods)
		Fail(w, http.StatusMethodNotAllowed, MethodNotAllowed)
		return
	}
	// requestotp mails a code even by GET (the seed's front-end calls it so
	// from its own pages): an <img> on any site must not mail-bomb a user.
	if (method != http.MethodGet || ep.mails) && !web.SameOrigin(r) {
		Fail(w, http.StatusForbidden, CrossSite)
		return
	}
	p, err := web.ReadParams(w, r)
	if errors.Is(err, auth.ErrBadBytes) {
		if strings.TrimSuffix(name, "/") == "login" {
			// Probing with bad bytes costs a failed login like any other.
			err = a.Service.RefuseLogin(r.Context(), a.Cookie.Attempt(r, p.String("username")))
		}
		a.fail(w, r, err)
		return
	}
	if err != nil {
		Fail(w, http.StatusBadRequest, InvalidInput)
		return
	}
	ep.serve(a, w, r, p)
}

func (a *API) login(w http.ResponseWriter, r *http.Request, p web.Params) {
	username, ok1 := p.Get("username")
	pw, ok2 := p.Get("password")
	if !ok1 || !ok2 || username == "" || pw == "" {
		Fail(w, http.StatusBadRequest, InvalidInput)
		return
	}
	proof := auth.Proof{TOTP: p.String("totp"), RecoveryCode: p.String("recovery_code")}
	u, token, sess, err := a.Service.LoginWith(r.Context(), a.Cookie.Attempt(r, username), pw, proof)
	switch {
	case errors.Is(err, auth.ErrInvalidPassword):
		Fail(w, http.StatusUnauthorized, "INVALID_PASSWORD")
	case errors.Is(err, auth.ErrUnknownUser):
		Fail(w, http.StatusUnauthorized, "REGISTER_FOR_A_PASSWORD")
	case errors.Is(err, auth.ErrSecondFactorRequired):
		Fail(w, http.StatusUnauthorized, MFARequired)
	case errors.Is(err, auth.ErrInvalidSecondFactor):
		Fail(w, http.StatusUnauthorized, "ERROR_INVALID_OTP")
	case errors.Is(err, auth.ErrEnrolmentRequired):
		Fail(w, http.StatusForbidden, MFAEnrolmentRequired)
	case err != nil:
		a.fail(w, r, err)
	default:
		a.Cookie.LoggedIn(w, r, a.Service, u, token, sess)
		// The string, not true: the seed's client accepts a login only if
		// success === "true". A failure stays the boolean false, which no
		// truthiness test takes for a success.
		reply(w, http.StatusOK, "true", map[string]any{"userhash": u.Userhash, "ssid": token})
	}
}

func (a *API) register(w http.ResponseWriter, r *http.Request, p web.Params) {
	username, pw := p.String("username"), p.String("password")
	if username == "" || pw == "" {
		Fail(w, http.StatusBadRequest, InvalidInput)
		return
	}
	_, err := a.Service.Register(r.Context(), username, pw, p.String("email"), web.ClientIP(r))
	switch {
	case errors.Is(err, auth.ErrExists):
		reply(w, http.StatusOK, false, "ERROR_LOGIN_WITH_PASSWORD")
	case errors.Is(err, auth.ErrRegistrationClosed):
		Fail(w, http.StatusUnauthorized, "CANT_CREATE_USER")
	case err != nil:
		a.fail(w, r, err)
	default:
		Succeed(w, "USER_INSERT_OK")
	}
}

func (a *API) requestOTP(w http.ResponseWriter, r *http.Request, p web.Params) {
	username := p.String("username")
	if username == "" {
		Fail(w, http.StatusBadRequest, InvalidInput)
		return
	}
	u, reqid, err := a.Service.RequestOTP(r.Context(), username, web.ClientIP(r))
	switch {
	case errors.Is(err, auth.ErrNoEmail):
		reply(w, http.StatusOK, false, "ERROR_NO_EMAIL_SET")
	case errors.Is(err, auth.ErrUnknownUser):
		Fail(w, http.StatusForbidden, "ERROR_INVALID_USERNAME")
	case errors.Is(err, auth.ErrMailFailed):
		Fail(w, http.StatusInternalServerError, "ERROR_EMAIL_SENDING_FAILED")
	case err != nil:
		a.fail(w, r, err)
	default:
		Succeed(w, map[string]any{"userhash": u.Userhash, "reqid": reqid})
	}
}

func (a *API) modifyPassword(w http.ResponseWriter, r *http.Request, p web.Params) {
	code, ok := p.Get("OTP")
	if !ok {
		code = p.String("otp")
	}
	userhash, reqid, pw := p.String("userhash"), p.String("reqid"), p.String("password")
	if userhash == "" || reqid == "" || code == "" || pw == "" {
		Fail(w, http.StatusBadRequest, InvalidInput)
		return
	}
	_, err := a.Service.ResetWithOTP(r.Context(), userhash, reqid, code, pw, web.ClientIP(r))
	switch {
	case errors.Is(err, auth.ErrUnknownUser):
		Fail(w, http.StatusForbidden, "ERROR_INVALID_USERNAME")
	case errors.Is(err, auth.ErrInvalidCode):
		Fail(w, http.StatusUnauthorized, "ERROR_INVALID_OTP")
	case err != nil:
		a.fail(w, r, err)
	default:
		Succeed(w, "PASSWORD_RESET_OK")
	}
}

func (a *API) info(w http.ResponseWriter, r *http.Request, _ web.Params) {
	sess, ok := a.session(w, r)
	if !ok {
		return
	}
	u, err := a.Service.AccountInfo(r.Context(), sess)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	Succeed(w, map[string]any{
		"user_id": u.ID, "userhash": u.Userhash, "username": u.Username,
		"email": u.Email, "created_at": u.CreatedAt.UTC().Format(time.RFC3339),
	})
}

func (a *API) logout(w http.ResponseWriter, r *http.Request, _ web.Params) {
	if token := a.token(r); token != "" {
		if err := a.Service.Logout(r.Context(), token, web.ClientIP(r)); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	a.Cookie.Clear(w, r)
	Succeed(w, "LOGOUT_OK")
}

func (a *API) registrationStatus(w http.ResponseWriter, _ *http.Request, _ web.Params) {
	Succeed(w, a.Service.RegistrationOpen())
}

// token finds the session token: Bearer, the seed client's
// Basic base64(userhash:ssid), or the cookie.
func (a *API) token(r *http.Request) string {
	if web.HasBasic(r) {
		token, _ := web.SessionBasic(r.Header.Get("Authorization"))
		return token
	}
	token, _ := a.Cookie.Token(r)
	return token
}

// session answers PLEASE_LOGIN (or the store's failure) and returns false
// when the request has no live session.
func (a *API) session(w http.ResponseWriter, r *http.Request) (sessions.Session, bool) {
	token := a.token(r)
	if token == "" {
		Fail(w, http.StatusUnauthorized, PleaseLogin)
		return sessions.Session{}, false
	}
	sess, err := a.Service.Authenticate(r.Context(), token)
	if errors.Is(err, sessions.ErrNotFound) {
		Fail(w, http.StatusUnauthorized, PleaseLogin)
		return sessions.Session{}, false
	}
	if err != nil {
		a.fail(w, r, err)
		return sessions.Session{}, false
	}
	return sess, true
}

// fail answers the errors every endpoint shares.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := web.Failure(w, r, a.Logger, err)
	Fail(w, status, sharedCodes[status])
}

var sharedCodes = map[int]string{
	http.StatusTooManyRequests:     TooManyAttempts,
	http.StatusBadRequest:          InvalidInput,
	http.StatusUnprocessableEntity: PasswordTooWeak,
	http.StatusServiceUnavailable:  ServiceUnavailable,
	http.StatusInternalServerError: InternalError,
}

// Succeed writes a 200 success envelope.
func Succeed(w http.ResponseWriter, message any) { reply(w, http.StatusOK, true, message) }

// Fail writes a failure envelope with the given status.
func Fail(w http.ResponseWriter, status int, code string) { reply(w, status, false, code) }

// reply writes the envelope; success is a bool, or the string "true" of a
// login.
func reply(w http.ResponseWriter, status int, success any, message any) {
	web.WriteJSON(w, status, map[string]any{"success": success, "data": map[string]any{"message": message}})
}
