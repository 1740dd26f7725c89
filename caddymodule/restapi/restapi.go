// Package restapi serves the REST dialect of the account endpoints, at the
// site's account_api path:
//
//	{"success": bool, "messages": ["…"]}
//
// Its front-ends read success and messages[0] and expect HTTP 200 for the
// dialect's own failures (SPEC.md, "The REST account API"). Errors that are
// not the dialect's — a body that does not parse, too many attempts, a store
// that is down — keep their HTTP status so that nothing mistakes them for an
// answer.
package restapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/auth"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/username"
	"github.com/authgate/authgate/caddymodule/web"
)

// The dialect's messages, to the letter.
const (
	msgLoginOK         = "Successful login"
	msgBadCredentials  = "Invalid username/password"
	msgRegistered      = "User registered"
	msgEmpty           = "Username/email/password cannot be empty"
	msgExists          = "User already exists"
	msgClosed          = "Registration is closed"
	msgPasswordChanged = "Password changed"
	msgUnauthorized    = "Unauthorized request"
	msgRecoverySent    = "Password recovery email sent"
	msgUnknownUIDType  = "Unknown uid type"
	msgUserNotFound    = "User not found"
	msgLoggedOut       = "Logged out"
	msgWeak            = "Password must be 8 to 1024 characters, not the username and not a common password"
	// A user with a second factor logs in with it: {"totp": "123456"} or
	// {"recovery_code": "…"} in the body. A wrong code gets the same
	// answer (SPEC: "else Second factor required").
	msgSecondFactor = "Second factor required"
	// Under mfa required, a user without a second factor cannot log in
	// here: one is enrolled on the account page first.
	msgEnrolment = "Second factor enrolment required"
)

// Service is what the dialect asks of the account service, *auth.Service:
// an interface, so that the dialect's answer to every outcome of the
// service can be tested on its own.
type Service interface {
	LoginWith(ctx context.Context, at auth.Attempt, password string, proof auth.Proof) (accounts.User, string, sessions.Session, error)
	PasswordEnough(ctx context.Context, u accounts.User) (bool, error)
	Verify(ctx context.Context, at auth.Attempt, password string) (accounts.User, error)
	RefuseLogin(ctx context.Context, at auth.Attempt) error
	Register(ctx context.Context, username, password, email, ip string) (accounts.User, error)
	StartSession(ctx context.Context, u accounts.User, at auth.Attempt, amr ...string) (string, sessions.Session, error)
	Authenticate(ctx context.Context, token string) (sessions.Session, error)
	FreshLogin(sess sessions.Session) bool
	Account(ctx context.Context, sess sessions.Session) (accounts.User, error)
	UserByID(ctx context.Context, id int64) (accounts.User, error)
	UserByName(ctx context.Context, name string) (accounts.User, error)
	ChangePassword(ctx context.Context, u accounts.User, newPassword, keepID, ip string) error
	ResetWithToken(ctx context.Context, token, newPassword, ip string) (accounts.User, error)
	MailResetLink(ctx context.Context, u accounts.User, ip string, link func(token string) string) error
	Logout(ctx context.Context, token, ip string) error
	NewDevice(u accounts.User) (string, time.Time)
}

var _ Service = (*auth.Service)(nil)

// API serves the REST dialect of one site.
type API struct {
	Service Service
	Cookie  web.Cookie
	// ResetURL is the link template of recovery mails, with {prefix} and
	// {token}; a path is put after Origin.
	ResetURL string
	// Origin is the site's configured public origin (scheme://host[:port]).
	// Mailed links never take their host from the request: Host and
	// X-Forwarded-Host are whatever the asker wants them to be.
	Origin string
	// Prefix is the site's page prefix, for {prefix} in ResetURL.
	Prefix string
	Logger *zap.Logger
}

// Serve answers a request whose path below the API's prefix is rest.
func (a *API) Serve(w http.ResponseWriter, r *http.Request, rest string) {
	// Bodies are read as JSON whatever their type, so a text/plain form on
	// any site could post here; browsers say where they come from.
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !web.SameOrigin(r) {
		reply(w, http.StatusForbidden, false, "Cross-site request refused")
		return
	}
	// Path segments are parameters too ({username}, {id}).
	if username.BadBytes(rest) {
		a.fail(w, r, auth.ErrBadBytes)
		return
	}
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	route, arg := parts[0], ""
	if len(parts) == 2 {
		arg = parts[1]
	} else if len(parts) > 2 {
		route = ""
	}
	var allow string
	switch {
	case route == "account" && arg == "" && r.Method == http.MethodPost:
		a.login(w, r)
	case route == "account" && arg == "" && r.Method == http.MethodDelete:
		a.logout(w, r)
	case route == "account" && arg != "" && r.Method == http.MethodPut:
		a.register(w, r, arg)
	case route == "password" && r.Method == http.MethodPut:
		a.changePassword(w, r, arg)
	case route == "password" && arg != "" && r.Method == http.MethodPost:
		a.recover(w, r, arg)
	case route == "account" && arg == "":
		allow = "POST, DELETE"
	case route == "account":
		allow = "PUT"
	case route == "password" && arg == "":
		allow = "PUT"
	case route == "password":
		allow = "PUT, POST"
	default:
		reply(w, http.StatusNotFound, false, "Not found")
		return
	}
	if allow != "" {
		w.Header().Set("Allow", allow)
		reply(w, http.StatusMethodNotAllowed, false, "Method not allowed")
	}
}

// login is "POST account": by Basic credentials when the call carries them
// (and then by them alone), else a "who am I" by the session.
func (a *API) login(w http.ResponseWriter, r *http.Request) {
	if web.HasBasic(r) {
		username, password, ok := web.BasicCredentials(r)
		if !ok || username == "" || password == "" {
			reply(w, http.StatusOK, false, msgBadCredentials)
			return
		}
		// The body may hold the second factor. One that does not parse
		// holds none; bad bytes count as a failed login like any other.
		p, err := web.ReadParams(w, r)
		if errors.Is(err, auth.ErrBadBytes) {
			a.fail(w, r, a.Service.RefuseLogin(r.Context(), a.Cookie.Attempt(r, username)))
			return
		}
		proof := auth.Proof{TOTP: p.String("totp"), RecoveryCode: p.String("recovery_code")}
		u, token, sess, err := a.Service.LoginWith(r.Context(), a.Cookie.Attempt(r, username), password, proof)
		switch {
		case errors.Is(err, auth.ErrBadBytes):
			a.fail(w, r, err)
		case errors.Is(err, auth.ErrInvalidPassword), errors.Is(err, auth.ErrUnknownUser), errors.Is(err, auth.ErrInvalidInput):
			reply(w, http.StatusOK, false, msgBadCredentials)
		case errors.Is(err, auth.ErrSecondFactorRequired), errors.Is(err, auth.ErrInvalidSecondFactor):
			reply(w, http.StatusOK, false, msgSecondFactor)
		case errors.Is(err, auth.ErrEnrolmentRequired):
			reply(w, http.StatusOK, false, msgEnrolment)
		case err != nil:
			a.fail(w, r, err)
		default:
			a.Cookie.LoggedIn(w, r, a.Service, u, token, sess)
			a.user(w, http.StatusOK, u.ID, u.Username, msgLoginOK)
		}
		return
	}
	sess, ok, answered := a.session(w, r)
	if answered {
		return
	}
	if !ok {
		reply(w, http.StatusOK, false, msgBadCredentials)
		return
	}
	a.user(w, http.StatusOK, sess.UserID, sess.Username, msgLoginOK)
}

func (a *API) register(w http.ResponseWriter, r *http.Request, name string) {
	p, ok := a.params(w, r)
	if !ok {
		return
	}
	password, email := p.String("password"), strings.TrimSpace(p.String("email"))
	if name == "" || password == "" || email == "" {
		reply(w, http.StatusOK, false, msgEmpty)
		return
	}
	u, err := a.Service.Register(r.Context(), name, password, email, web.ClientIP(r))
	switch {
	case errors.Is(err, auth.ErrBadBytes):
		a.fail(w, r, err)
		return
	case errors.Is(err, auth.ErrExists):
		reply(w, http.StatusOK, false, msgExists)
		return
	case errors.Is(err, auth.ErrRegistrationClosed):
		reply(w, http.StatusOK, false, msgClosed)
		return
	case errors.Is(err, auth.ErrTooWeak):
		reply(w, http.StatusOK, false, msgWeak)
		return
	case errors.Is(err, auth.ErrInvalidInput):
		reply(w, http.StatusOK, false, "Invalid username or email")
		return
	case err != nil:
		a.fail(w, r, err)
		return
	}
	if p.Bool("autologin") && !a.startSession(w, r, u) {
		return
	}
	a.user(w, http.StatusCreated, u.ID, u.Username, msgRegistered)
}

// errStaleSession refuses a password change by a session alone once its
// login is no longer fresh.
var errStaleSession = errors.New("session needs the current password")

// changePassword is "PUT password[/{user_id}]": authorised by Basic
// credentials, by a reset token alone, or by the session (whose own id the
// path must name, if it names one) together with current_password, or by a
// session whose login is fresh (auth.ReauthWindow).
func (a *API) changePassword(w http.ResponseWriter, r *http.Request, pathID string) {
	p, err := web.ReadParams(w, r)
	if errors.Is(err, auth.ErrBadBytes) && web.HasBasic(r) {
		// The credentials were to be checked: count it as a failed login.
		name, _, _ := web.BasicCredentials(r)
		err = a.Service.RefuseLogin(r.Context(), a.Cookie.Attempt(r, name))
	}
	if !a.paramsRead(w, r, err) {
		return
	}
	password, token := p.String("password"), p.String("token")
	var wantID int64
	if pathID != "" {
		id, err := strconv.ParseInt(pathID, 10, 64)
		if err != nil || id <= 0 {
			reply(w, http.StatusOK, false, msgUnauthorized)
			return
		}
		wantID = id
	}
	if password == "" {
		reply(w, http.StatusOK, false, "Password cannot be empty")
		return
	}
	ip := web.ClientIP(r)
	var u accounts.User
	keep := ""
	switch {
	case web.HasBasic(r):
		username, current, _ := web.BasicCredentials(r)
		if u, err = a.Service.Verify(r.Context(), a.Cookie.Attempt(r, username), current); err == nil {
			if wantID != 0 && u.ID != wantID {
				err = auth.ErrInvalidCode
			} else {
				err = a.Service.ChangePassword(r.Context(), u, password, "", ip)
			}
		}
	case token != "":
		u, err = a.Service.ResetWithToken(r.Context(), token, password, ip)
	default:
		sess, ok, answered := a.session(w, r)
		if answered {
			return
		}
		if !ok || (wantID != 0 && sess.UserID != wantID) {
			reply(w, http.StatusOK, false, msgUnauthorized)
			return
		}
		// A stolen session alone must not take the account over.
		switch current := p.String("current_password"); {
		case current != "":
			u, err = a.Service.Verify(r.Context(), a.Cookie.Attempt(r, sess.Username), current)
			if err == nil && u.ID != sess.UserID {
				err = errStaleSession
			}
		case a.Service.FreshLogin(sess):
			u, err = a.Service.Account(r.Context(), sess)
		default:
			err = errStaleSession
		}
		if err == nil {
			keep = sess.ID
			err = a.Service.ChangePassword(r.Context(), u, password, keep, ip)
		}
	}
	switch {
	case errors.Is(err, auth.ErrBadBytes):
		a.fail(w, r, err)
		return
	case errors.Is(err, auth.ErrInvalidCode), errors.Is(err, auth.ErrInvalidPassword),
		errors.Is(err, auth.ErrUnknownUser), errors.Is(err, auth.ErrInvalidInput),
		errors.Is(err, accounts.ErrNotFound), errors.Is(err, errStaleSession):
		reply(w, http.StatusOK, false, msgUnauthorized)
		return
	case errors.Is(err, auth.ErrTooWeak):
		reply(w, http.StatusOK, false, msgWeak)
		return
	case err != nil:
		a.fail(w, r, err)
		return
	}
	// A caller that already has its session (kept above) needs no new one.
	if p.Bool("autologin") && keep == "" && !a.startSession(w, r, u) {
		return
	}
	a.user(w, http.StatusOK, u.ID, u.Username, msgPasswordChanged)
}

// recover is "POST password/{id}": mail a reset link to the account named by
// id, read as uid_type says.
func (a *API) recover(w http.ResponseWriter, r *http.Request, id string) {
	p, ok := a.params(w, r)
	if !ok {
		return
	}
	var u accounts.User
	var err error
	switch p.String("uid_type") {
	case "", "user_id":
		n, perr := strconv.ParseInt(id, 10, 64)
		if perr != nil || n <= 0 {
			reply(w, http.StatusOK, false, msgUserNotFound)
			return
		}
		u, err = a.Service.UserByID(r.Context(), n)
	case "username":
		u, err = a.Service.UserByName(r.Context(), id)
	default:
		reply(w, http.StatusOK, false, msgUnknownUIDType)
		return
	}
	if errors.Is(err, auth.ErrUnknownUser) {
		reply(w, http.StatusOK, false, msgUserNotFound)
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	err = a.Service.MailResetLink(r.Context(), u, web.ClientIP(r), a.resetLink)
	switch {
	case errors.Is(err, auth.ErrNoEmail):
		reply(w, http.StatusOK, false, "No email address is set for this user")
	case errors.Is(err, auth.ErrMailFailed):
		reply(w, http.StatusInternalServerError, false, "Password recovery email could not be sent")
	case err != nil:
		a.fail(w, r, err)
	default:
		reply(w, http.StatusOK, true, msgRecoverySent)
	}
}

func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	if token, _ := a.Cookie.Token(r); token != "" {
		if err := a.Service.Logout(r.Context(), token, web.ClientIP(r)); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	a.Cookie.Clear(w, r)
	reply(w, http.StatusOK, true, msgLoggedOut)
}

// resetLink fills in the reset_url template; a path is put after the
// site's configured origin (provisioning makes sure there is one).
func (a *API) resetLink(token string) string {
	link := strings.NewReplacer("{prefix}", a.Prefix, "{token}", token).Replace(a.ResetURL)
	if strings.HasPrefix(link, "/") {
		link = a.Origin + link
	}
	return link
}

// startSession logs u in after a registration or password change that
// asked for autologin. A user whose login needs a second factor (or, under
// mfa required, its enrolment) is not: the change stands, and the client
// logs in as any other, with the code. It returns false when it has
// answered with a failure.
func (a *API) startSession(w http.ResponseWriter, r *http.Request, u accounts.User) bool {
	if enough, err := a.Service.PasswordEnough(r.Context(), u); err != nil {
		a.fail(w, r, err)
		return false
	} else if !enough {
		return true
	}
	token, sess, err := a.Service.StartSession(r.Context(), u, a.Cookie.Attempt(r, u.Username))
	if errors.Is(err, auth.ErrUnknownUser) { // a name refused since it was made
		reply(w, http.StatusOK, false, msgUnauthorized)
		return false
	}
	if err != nil {
		a.fail(w, r, err)
		return false
	}
	a.Cookie.LoggedIn(w, r, a.Service, u, token, sess)
	return true
}

// session returns the live session of the cookie or bearer token. With
// none it returns false; when Redis fails it has answered 503 already and
// returns false with answered set.
func (a *API) session(w http.ResponseWriter, r *http.Request) (sess sessions.Session, ok, answered bool) {
	token, _ := a.Cookie.Token(r)
	if token == "" {
		return sessions.Session{}, false, false
	}
	sess, err := a.Service.Authenticate(r.Context(), token)
	if err != nil && !errors.Is(err, sessions.ErrNotFound) {
		a.fail(w, r, err)
		return sessions.Session{}, false, true
	}
	return sess, err == nil, false
}

func (a *API) params(w http.ResponseWriter, r *http.Request) (web.Params, bool) {
	p, err := web.ReadParams(w, r)
	return p, a.paramsRead(w, r, err)
}

// paramsRead answers the failure of web.ReadParams, if any, and tells
// whether the parameters may be used.
func (a *API) paramsRead(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, web.ErrBadInput):
		reply(w, http.StatusBadRequest, false, "Invalid request body: send a JSON object of at most 64 KiB")
	default: // bad bytes, or what counting them as a failed login met
		a.fail(w, r, err)
	}
	return false
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := web.Failure(w, r, a.Logger, err)
	reply(w, status, false, sharedMessages[status])
}

// sharedMessages words the errors that are not the dialect's own.
var sharedMessages = map[int]string{
	http.StatusTooManyRequests:     "Too many attempts, try again later",
	http.StatusBadRequest:          "Invalid request",
	http.StatusUnprocessableEntity: msgWeak,
	http.StatusServiceUnavailable:  "Service unavailable, try again later",
	http.StatusInternalServerError: "Internal error",
}

func (a *API) user(w http.ResponseWriter, status int, id int64, username, message string) {
	web.WriteJSON(w, status, map[string]any{"success": true, "user_id": id, "username": username, "messages": []string{message}})
}

func reply(w http.ResponseWriter, status int, success bool, message string) {
	web.WriteJSON(w, status, map[string]any{"success": success, "messages": []string{message}})
}
