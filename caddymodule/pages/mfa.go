package pages

import (
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/skip2/go-qrcode"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/auth"
	"github.com/authgate/authgate/caddymodule/factors"
	"github.com/authgate/authgate/caddymodule/passkeys"
	"github.com/authgate/authgate/caddymodule/sessions"
)

// The second factor's pages: the login's second step (on {prefix}/login,
// with the ticket of auth.SecondFactorStep in a hidden field),
// {prefix}/account/totp (enrol, step up, remove) and
// {prefix}/account/recovery (new recovery codes).

func init() {
	for _, name := range []string{"secondfactor", "totp", "recovery"} {
		templates[name] = template.Must(template.ParseFS(files, "templates/layout.html", "templates/"+name+".html"))
	}
}

// EnrolPages are the pages a signed-in user whose session lacks the second
// factor that mfa required asks for may still open (see signedIn): the
// ways to enrol one. Another kind of factor adds its page here.
var EnrolPages = []string{"account/totp", "account/passkeys"}

// EnrolPath is where a user without the second factor that mfa required
// asks for is sent first, to come back to redirect after.
func EnrolPath(prefix, redirect string) string {
	return prefix + "/account/totp?redirect=" + url.QueryEscape(SafeRedirect(redirect))
}

// mfaView is what the second factor's templates see besides view.
type mfaView struct {
	// Ticket names the login's second step; Factors the kinds the user has,
	// comma-joined (only what the page offers depends on them).
	Ticket, Factors string
	// QR is the enrolment's QR code, an inline PNG; Secret the same key as
	// text.
	QR     template.URL
	Secret string
	// Confirmed: the user has an authenticator app.
	Confirmed bool
	// StepUp: the user has one, but this session was started without it
	// and mfa required asks for it.
	StepUp bool
	// Required: mfa required, and this session has no second factor yet.
	Required bool
	// Codes are new recovery codes, shown once.
	Codes        []string
	RecoveryLeft int
}

// Has tells whether the pending login's user has a factor of the kind.
func (m *mfaView) Has(kind string) bool {
	return slices.Contains(strings.Split(m.Factors, ","), kind)
}

// askSecondFactor shows the login's second step.
func (p *Pages) askSecondFactor(w http.ResponseWriter, status int, v view, ticket string, kinds []string) {
	v.Heading = "Two-step verification"
	var known []string
	for _, k := range kinds {
		if k != "" && !strings.ContainsAny(k, ", ") && len(k) < 32 {
			known = append(known, k)
		}
	}
	v.MFA = &mfaView{Ticket: ticket, Factors: strings.Join(known, ",")}
	// A passkey answers by the pages' script; only then does it run.
	v.Script = p.passkeysOn() && slices.Contains(known, passkeys.Factor)
	p.render(w, status, "secondfactor", v)
}

// secondStep is the login page's answer to the second step's form.
func (p *Pages) secondStep(w http.ResponseWriter, r *http.Request, v view, ticket string) {
	kinds := strings.Split(r.PostFormValue("factors"), ",")
	proof := auth.Proof{TOTP: strings.TrimSpace(r.PostFormValue("totp")), RecoveryCode: strings.TrimSpace(r.PostFormValue("recovery_code"))}
	u, token, sess, err := p.Service.FinishLogin(r.Context(), p.Cookie.Attempt(r, ""), ticket, proof)
	switch {
	case err == nil:
		p.Cookie.LoggedIn(w, r, p.Service, u, token, sess)
		http.Redirect(w, r, v.Redirect, http.StatusSeeOther)
	case errors.Is(err, auth.ErrLoginExpired):
		v.Error = "This sign-in has expired or was tried too often. Enter your password again."
		p.render(w, http.StatusUnauthorized, "login", v)
	case errors.Is(err, auth.ErrInvalidInput):
		v.Error = "Enter the code from your authenticator app, or a recovery code."
		p.askSecondFactor(w, http.StatusBadRequest, v, ticket, kinds)
	case errors.Is(err, auth.ErrInvalidSecondFactor):
		v.Error = "That code is wrong or was used already. Enter the code your app shows now."
		if proof.TOTP == "" {
			v.Error = "That recovery code is wrong or was used already."
		}
		p.askSecondFactor(w, http.StatusUnauthorized, v, ticket, kinds)
	default:
		var status int
		status, v.Error = p.explain(w, r, err)
		p.askSecondFactor(w, status, v, ticket, kinds)
	}
}

// afterLogin is where a login of the page sends the browser: where it was
// going, or first to enrol a second factor when mfa required asks for one.
func (p *Pages) afterLogin(redirect string, sess sessions.Session) string {
	if p.Service.MFA() == auth.MFARequired && !auth.HasSecondFactor(sess.AMR) {
		return EnrolPath(p.Prefix, redirect)
	}
	return redirect
}

// signedIn returns the account and session of a request to a page of the
// signed-in user named page (the path after the prefix). With no session
// it sends the browser to log in, to come back to the page. Under mfa
// required, a session without a second factor is sent to enrol one first,
// unless page is one of EnrolPages. ok is false when it has answered.
func (p *Pages) signedIn(w http.ResponseWriter, r *http.Request, page string) (u accounts.User, sess sessions.Session, token string, ok bool) {
	here := p.Prefix + "/" + page
	if redirect := r.FormValue("redirect"); redirect != "" {
		here += "?redirect=" + url.QueryEscape(SafeRedirect(redirect))
	}
	token, _ = p.Cookie.Token(r)
	if token == "" {
		http.Redirect(w, r, p.Prefix+"/login?redirect="+url.QueryEscape(here), http.StatusSeeOther)
		return accounts.User{}, sessions.Session{}, "", false
	}
	sess, err := p.Service.Authenticate(r.Context(), token)
	if err == nil {
		u, err = p.Service.Account(r.Context(), sess)
	}
	switch {
	case errors.Is(err, sessions.ErrNotFound), errors.Is(err, accounts.ErrNotFound):
		http.Redirect(w, r, p.Prefix+"/login?redirect="+url.QueryEscape(here), http.StatusSeeOther)
		return accounts.User{}, sessions.Session{}, "", false
	case err != nil:
		status, msg := p.explain(w, r, err)
		p.render(w, status, "message", view{Heading: "Request refused", Error: msg})
		return accounts.User{}, sessions.Session{}, "", false
	}
	if p.Service.MFA() == auth.MFARequired && !auth.HasSecondFactor(sess.AMR) && !slices.Contains(EnrolPages, page) {
		http.Redirect(w, r, EnrolPath(p.Prefix, here), http.StatusSeeOther)
		return accounts.User{}, sessions.Session{}, "", false
	}
	return u, sess, token, true
}

// secondFactorsOff answers a page of second factors when mfa is off.
func (p *Pages) secondFactorsOff(w http.ResponseWriter) bool {
	if p.Service.MFA() != auth.MFAOff {
		return false
	}
	p.render(w, http.StatusNotFound, "message", view{Heading: "Not available",
		Error: "Second factors are turned off on this site."})
	return true
}

// totp is {prefix}/account/totp: enrol an authenticator app (QR code and
// key, confirmed by a first code), prove it for a session that lacks it,
// or remove it.
func (p *Pages) totp(w http.ResponseWriter, r *http.Request) {
	if p.secondFactorsOff(w) {
		return
	}
	u, sess, token, ok := p.signedIn(w, r, "account/totp")
	if !ok {
		return
	}
	v := view{Heading: "Authenticator app", Redirect: SafeRedirect(r.FormValue("redirect")), Username: u.Username,
		MFA: &mfaView{Required: p.Service.MFA() == auth.MFARequired && !auth.HasSecondFactor(sess.AMR)}}
	at := p.Cookie.Attempt(r, u.Username)
	code := strings.TrimSpace(r.PostFormValue("totp"))
	status := http.StatusOK
	if r.Method == http.MethodPost {
		var err error
		switch r.PostFormValue("action") {
		case "confirm":
			var codes []string
			if codes, err = p.Service.ConfirmTOTP(r.Context(), u, at, code); err == nil {
				p.enrolled(w, r, v, u, sess, token, codes)
				return
			}
		case "stepup":
			var newToken string
			if newToken, sess, err = p.Service.StepUp(r.Context(), u, at, token, auth.Proof{TOTP: code}); err == nil {
				p.Cookie.Set(w, r, newToken, time.Unix(sess.Expires, 0))
				http.Redirect(w, r, v.Redirect, http.StatusSeeOther)
				return
			}
		case "remove":
			c := auth.Confirmation{Password: r.PostFormValue("password"), TOTP: code}
			if err = p.Service.RemoveTOTP(r.Context(), u, at, c); err == nil {
				p.removed(w, r, v, u, sess, token)
				return
			}
		default:
			err = auth.ErrInvalidInput
		}
		status, v.Error = p.factorError(w, r, err)
	}
	secret, confirmed, err := p.Service.TOTPEnrolment(r.Context(), u)
	if err != nil {
		status, msg := p.explain(w, r, err)
		p.render(w, status, "message", view{Heading: "Request refused", Error: msg})
		return
	}
	v.MFA.Confirmed = confirmed
	switch {
	case confirmed && v.MFA.Required:
		v.MFA.StepUp = true
	case confirmed:
		v.MFA.RecoveryLeft = p.recoveryLeft(r, u)
	default:
		link, err := factors.KeyURL(p.Title, u.Username, secret)
		var png []byte
		if err == nil {
			png, err = qrcode.Encode(link, qrcode.Medium, 256)
		}
		if err != nil {
			status, msg := p.explain(w, r, err)
			p.render(w, status, "message", view{Heading: "Request refused", Error: msg})
			return
		}
		v.MFA.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
		v.MFA.Secret = factors.SecretText(secret)
	}
	p.render(w, status, "totp", v)
}

// enrolled answers a confirmed enrolment: the session says from now on
// that it proved the factor (under a new id), and the recovery codes made
// with a first factor are shown, once.
func (p *Pages) enrolled(w http.ResponseWriter, r *http.Request, v view, u accounts.User, sess sessions.Session, token string, codes []string) {
	if !auth.HasSecondFactor(sess.AMR) {
		newToken, newSess, err := p.Service.UpgradeSession(r.Context(), u, p.Cookie.Attempt(r, u.Username), token, auth.AMRPassword, auth.AMROTP)
		if err != nil {
			status, msg := p.explain(w, r, err)
			p.render(w, status, "message", view{Heading: "Request refused", Error: msg})
			return
		}
		p.Cookie.Set(w, r, newToken, time.Unix(newSess.Expires, 0))
	}
	v.Heading, v.Notice = "Authenticator app on", "Your authenticator app is on: every login asks for one of its codes after the password."
	v.MFA = &mfaView{Codes: codes}
	p.render(w, http.StatusOK, "recovery", v)
}

// removed answers a removed authenticator app. Under mfa required, a user
// left without a second factor keeps the session only to enrol another.
func (p *Pages) removed(w http.ResponseWriter, r *http.Request, v view, u accounts.User, sess sessions.Session, token string) {
	if p.Service.MFA() == auth.MFARequired && auth.HasSecondFactor(sess.AMR) {
		list, err := p.Service.SecondFactors(r.Context(), u)
		if err == nil && !hasFactor(list) {
			var newToken string
			newToken, sess, err = p.Service.UpgradeSession(r.Context(), u, p.Cookie.Attempt(r, u.Username), token, auth.AMRPassword)
			if err == nil {
				p.Cookie.Set(w, r, newToken, time.Unix(sess.Expires, 0))
			}
		}
		if err != nil {
			status, msg := p.explain(w, r, err)
			p.render(w, status, "message", view{Heading: "Request refused", Error: msg})
			return
		}
	}
	p.render(w, http.StatusOK, "message", view{Heading: "Authenticator app removed", Redirect: v.Redirect,
		Notice: "Your authenticator app was removed; its codes no longer log in."})
}

func hasFactor(list []factors.Enrolment) bool {
	for _, e := range list {
		if e.Kind != factors.KindRecovery {
			return true
		}
	}
	return false
}

// recovery is {prefix}/account/recovery: how many recovery codes are left,
// and a new set (the old one dies), shown once.
func (p *Pages) recovery(w http.ResponseWriter, r *http.Request) {
	if p.secondFactorsOff(w) {
		return
	}
	u, _, _, ok := p.signedIn(w, r, "account/recovery")
	if !ok {
		return
	}
	v := view{Heading: "Recovery codes", Redirect: SafeRedirect(r.FormValue("redirect")), Username: u.Username, MFA: &mfaView{}}
	status := http.StatusOK
	if r.Method == http.MethodPost {
		at := p.Cookie.Attempt(r, u.Username)
		c := auth.Confirmation{Password: r.PostFormValue("password"), TOTP: strings.TrimSpace(r.PostFormValue("totp"))}
		codes, err := p.Service.NewRecoveryCodes(r.Context(), u, at, c)
		if err == nil {
			v.Notice, v.MFA.Codes = "Your new recovery codes. The ones you had before no longer work.", codes
			p.render(w, http.StatusOK, "recovery", v)
			return
		}
		status, v.Error = p.factorError(w, r, err)
	}
	list, err := p.Service.SecondFactors(r.Context(), u)
	if err != nil {
		status, msg := p.explain(w, r, err)
		p.render(w, status, "message", view{Heading: "Request refused", Error: msg})
		return
	}
	v.MFA.Confirmed = hasFactor(list)
	v.MFA.RecoveryLeft = left(list)
	p.render(w, status, "recovery", v)
}

func left(list []factors.Enrolment) int {
	for _, e := range list {
		if e.Kind == factors.KindRecovery {
			return e.Remaining
		}
	}
	return 0
}

func (p *Pages) recoveryLeft(r *http.Request, u accounts.User) int {
	list, _ := p.Service.SecondFactors(r.Context(), u)
	return left(list)
}

// factorError words what a second-factor form can meet.
func (p *Pages) factorError(w http.ResponseWriter, r *http.Request, err error) (int, string) {
	switch {
	case errors.Is(err, auth.ErrInvalidSecondFactor):
		return http.StatusUnauthorized, "That code is wrong or was used already. Enter the code your app shows now (check that your phone's clock is right)."
	case errors.Is(err, auth.ErrInvalidPassword):
		return http.StatusUnauthorized, "That password is wrong."
	case errors.Is(err, auth.ErrInvalidInput):
		return http.StatusBadRequest, "Enter your password or a code from your authenticator app."
	case errors.Is(err, auth.ErrNoSecondFactor):
		return http.StatusConflict, "You have no authenticator app or other second factor to recover."
	}
	return p.explain(w, r, err)
}
