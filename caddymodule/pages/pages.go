// Package pages serves the browser pages under {prefix}: login (with its
// second-factor step), register, reset, logout, the signed-in user's
// account page and the second factors' pages under account/. They are
// plain server-rendered HTML from embedded
// templates, with one inline stylesheet and no JavaScript, so they work in
// any browser and leak nothing to third parties. Passkeys alone need a
// script, since only one can call the browser's WebAuthn API: passkeys.js,
// embedded and served from {prefix} like the pages.
package pages

import (
	"bytes"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/auth"
	"github.com/authgate/authgate/caddymodule/passkeys"
	"github.com/authgate/authgate/caddymodule/web"
)

//go:embed templates/*.html
var files embed.FS

var templates = func() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, name := range []string{"login", "register", "reset", "logout", "message", "account", "passkeys"} {
		out[name] = template.Must(template.ParseFS(files, "templates/layout.html", "templates/"+name+".html"))
	}
	return out
}()

// Pages serves the browser pages of one site.
type Pages struct {
	Service *auth.Service
	Cookie  web.Cookie
	Prefix  string
	// Title is the product name line shown above every form.
	Title  string
	Logger *zap.Logger
	// Passkeys runs the passkey ceremonies (nil: none), for the site as
	// the relying party RP (see passkeys.go).
	Passkeys *passkeys.Service
	RP       *passkeys.RP
}

// view is what a template sees.
type view struct {
	Title, Heading, Prefix, Error, Notice string
	Redirect, Username, Email             string
	RegistrationOpen                      bool
	Step, Userhash, Reqid, Token          string
	Done                                  bool
	MFA                                   *mfaView // the second factor's pages
	// Account is the account page's own (see account.go).
	Account *accountView
	// Script puts the pages' one script (passkeys.js) on the page, which
	// render allows to run by a nonce of its own (Nonce).
	Script bool
	Nonce  string
	// PasskeySignIn offers "Sign in with a passkey" on the login page.
	PasskeySignIn bool
	// Passkeys is the passkeys page's own (see passkeys.go).
	Passkeys *passkeysView
}

// Serve answers the page name (the path after the prefix) and reports
// whether there is such a page.
func (p *Pages) Serve(w http.ResponseWriter, r *http.Request, name string) bool {
	if p.servePasskeyAPI(w, r, strings.Trim(name, "/")) {
		return true
	}
	var serve func(http.ResponseWriter, *http.Request)
	switch strings.Trim(name, "/") {
	case "login", "":
		serve = p.login
	case "register":
		serve = p.register
	case "reset":
		serve = p.reset
	case "logout":
		serve = p.logout
	case "account":
		serve = p.account
	case "account/passkeys":
		serve = p.passkeys
	case "account/totp":
		serve = p.totp
	case "account/recovery":
		serve = p.recovery
	default:
		return false
	}
	unreadable := func(status int) bool {
		p.render(w, status, "message", view{Heading: "Request refused", Error: "The form could not be read."})
		return true
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		_ = r.ParseForm() // the query alone; what does not parse is absent
	case http.MethodPost:
		if !web.SameOrigin(r) {
			p.render(w, http.StatusForbidden, "message", view{Heading: "Request refused",
				Error: "This form was sent from another site, so it was refused. Open the page here and try again."})
			return true
		}
		if err := r.ParseForm(); err != nil {
			return unreadable(http.StatusBadRequest)
		}
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return true
	}
	if web.BadValues(r.Form) {
		err := error(auth.ErrBadBytes)
		if page := strings.Trim(name, "/"); r.Method == http.MethodPost && (page == "login" || page == "") {
			// Probing with bad bytes costs a failed login like any other.
			err = p.Service.RefuseLogin(r.Context(), p.Cookie.Attempt(r, r.PostFormValue("username")))
		}
		if errors.Is(err, auth.ErrBadBytes) {
			return unreadable(web.Failure(w, r, p.Logger, err))
		}
		status, msg := p.explain(w, r, err)
		p.render(w, status, "message", view{Heading: "Request refused", Error: msg})
		return true
	}
	serve(w, r)
	return true
}

func (p *Pages) login(w http.ResponseWriter, r *http.Request) {
	v := view{Heading: "Log in", Redirect: SafeRedirect(r.FormValue("redirect")), RegistrationOpen: p.Service.RegistrationOpen()}
	v.PasskeySignIn = p.passkeysOn()
	v.Script = v.PasskeySignIn
	if r.Method != http.MethodPost {
		p.render(w, http.StatusOK, "login", v)
		return
	}
	if ticket := r.PostFormValue("ticket"); ticket != "" {
		p.secondStep(w, r, v, ticket)
		return
	}
	v.Username = r.PostFormValue("username")
	username, password := v.Username, r.PostFormValue("password")
	if username == "" || password == "" {
		v.Error = "Enter your username and password."
		p.render(w, http.StatusBadRequest, "login", v)
		return
	}
	u, token, sess, err := p.Service.BeginLogin(r.Context(), p.Cookie.Attempt(r, username), password)
	var step *auth.SecondFactorStep
	if errors.As(err, &step) {
		p.askSecondFactor(w, http.StatusOK, v, step.Ticket, step.Kinds)
		return
	}
	if err != nil {
		status := http.StatusUnauthorized
		v.Error = "Wrong username or password."
		if !errors.Is(err, auth.ErrInvalidPassword) && !errors.Is(err, auth.ErrUnknownUser) {
			status, v.Error = p.explain(w, r, err)
		}
		p.render(w, status, "login", v)
		return
	}
	p.Cookie.LoggedIn(w, r, p.Service, u, token, sess)
	http.Redirect(w, r, p.afterLogin(v.Redirect, sess), http.StatusSeeOther)
}

func (p *Pages) register(w http.ResponseWriter, r *http.Request) {
	v := view{Heading: "Create an account", Redirect: SafeRedirect(r.FormValue("redirect"))}
	if !p.Service.RegistrationOpen() {
		v.Error = "Registration is closed. Ask an administrator for an account."
		p.render(w, http.StatusForbidden, "message", v)
		return
	}
	if r.Method != http.MethodPost {
		p.render(w, http.StatusOK, "register", v)
		return
	}
	v.Username, v.Email = r.PostFormValue("username"), r.PostFormValue("email")
	u, err := p.Service.Register(r.Context(), v.Username, r.PostFormValue("password"), v.Email, web.ClientIP(r))
	if err != nil {
		var status int
		switch {
		case errors.Is(err, auth.ErrExists):
			status, v.Error = http.StatusConflict, "That username is taken. Choose another, or log in."
		case errors.Is(err, auth.ErrInvalidInput):
			status, v.Error = http.StatusBadRequest, `Usernames are 1 to 64 characters of one script, without spaces or any of , ; " < > : / \; the email must be a plain address.`
		default:
			status, v.Error = p.explain(w, r, err)
		}
		p.render(w, status, "register", v)
		return
	}
	token, sess, err := p.Service.StartSession(r.Context(), u, p.Cookie.Attempt(r, u.Username))
	if err != nil {
		// The account exists; only the automatic login failed.
		http.Redirect(w, r, p.Prefix+"/login?redirect="+url.QueryEscape(v.Redirect), http.StatusSeeOther)
		return
	}
	p.Cookie.LoggedIn(w, r, p.Service, u, token, sess)
	http.Redirect(w, r, p.afterLogin(v.Redirect, sess), http.StatusSeeOther)
}

func (p *Pages) reset(w http.ResponseWriter, r *http.Request) {
	// redirect rides along, so that a user who forgot the password still
	// comes back to the page the gate sent them from.
	v := view{Heading: "Reset your password", Step: "request", Redirect: SafeRedirect(r.FormValue("redirect"))}
	if token := r.FormValue("token"); token != "" {
		v.Step, v.Token = "token", token
	}
	if r.Method != http.MethodPost {
		p.render(w, http.StatusOK, "reset", v)
		return
	}
	ip := web.ClientIP(r)
	switch r.PostFormValue("step") {
	case "request":
		// The answer is the same whether the name has an account with an
		// email address, one without, or none (SPEC: the reset page does
		// not tell who has an account): the code step, with a decoy in
		// place of the account's handles. The mail throttle counts alike.
		v.Username = r.PostFormValue("username")
		u, reqid, err := p.Service.RequestOTP(r.Context(), v.Username, ip)
		userhash := u.Userhash
		if errors.Is(err, auth.ErrUnknownUser) || errors.Is(err, auth.ErrNoEmail) {
			userhash, reqid, err = p.Service.Decoy(v.Username)
		}
		if err != nil {
			var status int
			switch {
			case errors.Is(err, auth.ErrMailFailed):
				status, v.Error = http.StatusInternalServerError, "The mail could not be sent. Try again later."
			default:
				status, v.Error = p.explain(w, r, err)
			}
			p.render(w, status, "reset", v)
			return
		}
		v.Step, v.Userhash, v.Reqid = "code", userhash, reqid
		v.Notice = "If that account has an email address, we mailed a 6-digit code to it. It is valid for " +
			auth.HumanDuration(p.Service.CodeTTL()) + "."
		p.render(w, http.StatusOK, "reset", v)
	case "code":
		v.Step, v.Userhash, v.Reqid = "code", r.PostFormValue("userhash"), r.PostFormValue("reqid")
		v.Username = r.PostFormValue("username")
		pw := r.PostFormValue("password")
		// A weak password is told apart here, before the code step can tell
		// a decoy (no such account: "wrong code") from an account (the
		// service checks the password before the code).
		err := p.Service.CheckNewPassword(v.Username, pw)
		if err == nil {
			_, err = p.Service.ResetWithOTP(r.Context(), v.Userhash, v.Reqid, strings.TrimSpace(r.PostFormValue("otp")), pw, ip)
		}
		p.resetDone(w, r, v, err)
	case "token":
		_, err := p.Service.ResetWithToken(r.Context(), v.Token, r.PostFormValue("password"), ip)
		p.resetDone(w, r, v, err)
	default:
		v.Error = "The form could not be read."
		p.render(w, http.StatusBadRequest, "reset", v)
	}
}

func (p *Pages) resetDone(w http.ResponseWriter, r *http.Request, v view, err error) {
	if err != nil {
		var status int
		switch {
		case (errors.Is(err, auth.ErrInvalidCode) || errors.Is(err, auth.ErrUnknownUser)) && v.Step == "token":
			status, v.Error = http.StatusUnauthorized, "This reset link is invalid, used or expired. Ask for a new one."
		case errors.Is(err, auth.ErrInvalidCode) || errors.Is(err, auth.ErrUnknownUser):
			status, v.Error = http.StatusUnauthorized, "That code is wrong or has expired. Check the mail, or ask for a new code."
		default:
			status, v.Error = p.explain(w, r, err)
		}
		p.render(w, status, "reset", v)
		return
	}
	p.render(w, http.StatusOK, "message", view{Heading: "Password changed", Redirect: v.Redirect,
		Notice: "Your password was changed and every session was ended. Log in with the new password."})
}

func (p *Pages) logout(w http.ResponseWriter, r *http.Request) {
	v := view{Heading: "Log out"}
	token, _ := p.Cookie.Token(r)
	if r.Method != http.MethodPost {
		if token != "" {
			if sess, err := p.Service.Authenticate(r.Context(), token); err == nil {
				v.Username = sess.Username
			}
		}
		p.render(w, http.StatusOK, "logout", v)
		return
	}
	if token != "" {
		if err := p.Service.Logout(r.Context(), token, web.ClientIP(r)); err != nil {
			status, msg := p.explain(w, r, err)
			v.Error = msg
			p.render(w, status, "logout", v)
			return
		}
	}
	p.Cookie.Clear(w, r)
	v.Heading, v.Notice, v.Done = "Logged out", "You are logged out.", true
	p.render(w, http.StatusOK, "logout", v)
}

// explain turns the errors every form shares into a status and plain words.
func (p *Pages) explain(w http.ResponseWriter, r *http.Request, err error) (int, string) {
	status := web.Failure(w, r, p.Logger, err)
	var throttled *auth.ThrottledError
	if errors.As(err, &throttled) {
		return status, "Too many attempts. Wait " + auth.HumanDuration(throttled.RetryAfter) + " and try again."
	}
	return status, sharedWords[status]
}

var sharedWords = map[int]string{
	http.StatusBadRequest:          "Some fields are missing or too long.",
	http.StatusUnprocessableEntity: "Choose a password of 8 to 1024 characters that is not your username and not a common password.",
	http.StatusServiceUnavailable:  "The service is unavailable right now. Try again in a minute.",
	http.StatusInternalServerError: "Something went wrong on our side. Try again later.",
}

func (p *Pages) render(w http.ResponseWriter, status int, name string, v view) {
	v.Title, v.Prefix = p.Title, p.Prefix
	csp := "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	if v.Script {
		// Only the script tag carrying this response's nonce runs: not
		// whatever else the site serves from its origin. It talks to
		// this origin only.
		var err error
		if v.Nonce, err = passkeys.NewTicket(); err != nil {
			p.Logger.Error("making a script nonce", zap.Error(err))
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		csp += "; script-src 'nonce-" + v.Nonce + "'; connect-src 'self'"
	}
	var buf bytes.Buffer
	if err := templates[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		p.Logger.Error("rendering page", zap.String("page", name), zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", csp)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// SafeRedirect returns target when it is a path on this site, and "/"
// otherwise, so that the login page cannot be used to send people elsewhere.
func SafeRedirect(target string) string {
	if target == "" || len(target) > 2048 || target[0] != '/' {
		return "/"
	}
	if len(target) > 1 && (target[1] == '/' || target[1] == '\\') {
		return "/" // "//host" and "/\host" are other sites to browsers
	}
	for _, c := range target {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return "/" // browsers drop tabs and newlines and read '\' as '/'
		}
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") {
		return "/"
	}
	return target
}
