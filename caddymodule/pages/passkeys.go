package pages

// Passkeys in the pages: {prefix}/account/passkeys lists, renames and
// removes a signed-in user's passkeys (forms, no script needed) and adds
// one (the script); the login page offers "Sign in with a passkey".
// The script talks to four JSON endpoints, each a POST from this site
// only, like every form:
//
//	{prefix}/account/passkeys/begin    {name, current_password} → creation options
//	{prefix}/account/passkeys/finish   the new credential       → {next}
//	{prefix}/passkey/begin             {}                       → request options, and a ticket cookie
//	{prefix}/passkey/finish            {credential, redirect}   → {next}, and the session cookie
//	{prefix}/passkey/second/begin      {ticket}                 → request options (the user's passkeys)
//	{prefix}/passkey/second/finish     {ticket, credential, redirect} → {next}, and the session cookie

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/auth"
	"github.com/authgate/authgate/caddymodule/factors"
	"github.com/authgate/authgate/caddymodule/passkeys"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/useragent"
	"github.com/authgate/authgate/caddymodule/web"
)

// passkeysView is what the passkeys page shows besides the shared view.
type passkeysView struct {
	Username string
	// Unavailable says why the site cannot use passkeys ("": it can).
	Unavailable string
	List        []passkeyRow
	// NeedPassword: adding or removing one asks for the current password,
	// the login being older than auth.ReauthWindow.
	NeedPassword bool
	// Name is what the add form's name field holds.
	Name string
	Full bool // as many passkeys as allowed
}

// passkeyRow is one passkey as the page lists it.
type passkeyRow struct {
	ID, Name             string
	Added, AddedAt       string // in words (UTC), and RFC 3339 for <time>
	LastUsed, LastUsedAt string // "" when never used
	Suspended            bool
}

// What the page says after a change (POST, then 303 to GET). Only these
// keys are read from the query, so the page never shows text from a link.
var passkeyNotices = map[string]string{
	"added":   "Your passkey was added. You can sign in with it now, without your password.",
	"renamed": "The passkey was renamed.",
	"removed": "The passkey was removed. It cannot sign in to this account any more.",
}

// passkeysOn tells whether the site offers passkeys: it can, and second
// factors are not turned off (mfa off turns passkeys off altogether, the
// sign-in without a password too).
func (p *Pages) passkeysOn() bool {
	return p.Passkeys != nil && p.RP.Unavailable() == "" && p.Service.MFA() != auth.MFAOff
}

// passkeys serves {prefix}/account/passkeys to a signed-in user.
func (p *Pages) passkeys(w http.ResponseWriter, r *http.Request) {
	u, sess, _, ok := p.signedIn(w, r, "account/passkeys")
	if !ok {
		return
	}
	v := view{Heading: "Passkeys", Notice: passkeyNotices[r.URL.Query().Get("done")],
		Passkeys: &passkeysView{Username: sess.Username, NeedPassword: !p.Service.FreshLogin(sess),
			Name: useragent.Summary(r.UserAgent())}}
	if !p.passkeysOn() {
		v.Passkeys.Unavailable = p.RP.Unavailable()
		if p.Passkeys == nil || p.Service.MFA() == auth.MFAOff {
			v.Passkeys.Unavailable = "second factors, passkeys among them, are turned off"
		}
		p.render(w, http.StatusOK, "passkeys", v)
		return
	}
	status := http.StatusOK
	if r.Method == http.MethodPost {
		var done string
		done, status, v.Error = p.passkeyChange(w, r, sess, u)
		if done != "" {
			http.Redirect(w, r, p.Prefix+"/account/passkeys?done="+done, http.StatusSeeOther)
			return
		}
	}
	list, err := p.Passkeys.List(r.Context(), u)
	if err != nil {
		status, v.Error = p.explain(w, r, err)
	}
	for _, k := range list {
		row := passkeyRow{ID: passkeys.EncodeID(k.ID), Name: k.Name, Suspended: !k.Suspended.IsZero(),
			Added: day(k.Created), AddedAt: k.Created.UTC().Format(time.RFC3339)}
		if !k.LastUsed.IsZero() {
			row.LastUsed, row.LastUsedAt = day(k.LastUsed), k.LastUsed.UTC().Format(time.RFC3339)
		}
		v.Passkeys.List = append(v.Passkeys.List, row)
	}
	v.Passkeys.Full = len(list) >= passkeys.MaxPerUser
	v.Script = true
	p.render(w, status, "passkeys", v)
}

// day says when, to the minute, in UTC (the server knows no time zone of
// the reader's).
func day(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") }

// passkeyChange makes the change a form of the passkeys page asks for and
// returns the notice key of its success, or the status and words of its
// failure.
func (p *Pages) passkeyChange(w http.ResponseWriter, r *http.Request, sess sessions.Session, u accounts.User) (done string, status int, msg string) {
	ctx, ip := r.Context(), web.ClientIP(r)
	action := r.PostFormValue("action")
	if action == "add" {
		// The add form posts here only when its script did not run.
		return "", http.StatusBadRequest, "Adding a passkey needs this page's script: allow JavaScript for this site and try again."
	}
	id, ok := passkeys.DecodeID(r.PostFormValue("id"))
	if !ok || (action != "rename" && action != "remove") {
		return "", http.StatusBadRequest, "The form could not be read."
	}
	var err error
	switch action {
	case "rename":
		err = p.Passkeys.Rename(ctx, u, id, r.PostFormValue("name"))
	case "remove":
		if err = p.confirmPasskeyChange(r, sess, r.PostFormValue("current_password")); err == nil {
			err = p.Passkeys.Remove(ctx, u, id, ip)
		}
		if err == nil {
			p.keepSecondFactorWord(w, r, sess, u)
		}
	}
	switch {
	case err == nil:
		return action + "d", 0, ""
	case errors.Is(err, passkeys.ErrNotFound):
		return "", http.StatusNotFound, "That passkey is not one of yours, or it was removed already."
	case errors.Is(err, passkeys.ErrBadName):
		return "", http.StatusBadRequest, "Name it with 1 to 64 letters, digits, spaces or signs."
	}
	status, msg = p.passkeyFailure(w, r, err)
	return "", status, msg
}

// keepSecondFactorWord keeps, after a passkey was removed, the session's
// word that it proved a second factor only while the user has one: under
// mfa required, a user left without any keeps the session only to enrol
// another. The passkey is gone either way: a failure here is logged.
func (p *Pages) keepSecondFactorWord(w http.ResponseWriter, r *http.Request, sess sessions.Session, u accounts.User) {
	if p.Service.MFA() != auth.MFARequired || !auth.HasSecondFactor(sess.AMR) {
		return
	}
	list, err := p.Service.SecondFactors(r.Context(), u)
	for _, e := range list {
		if e.Kind != factors.KindRecovery {
			return
		}
	}
	var newToken string
	if err == nil {
		token, _ := p.Cookie.Token(r)
		newToken, sess, err = p.Service.UpgradeSession(r.Context(), u, p.Cookie.Attempt(r, u.Username), token, auth.AMRPassword)
	}
	if err != nil {
		p.Logger.Error("ending the second factor of a session whose user removed the last", zap.Int64("user_id", u.ID), zap.Error(err))
		return
	}
	p.Cookie.Set(w, r, newToken, time.Unix(sess.Expires, 0))
}

// confirmPasskeyChange asks, of a change of the user's passkeys, for the
// current password, unless the login is under auth.ReauthWindow old (the
// rule SPEC gives a password change through the REST dialect): a session
// alone, stolen or left open, must neither add a passkey, which would be a
// lasting way in that outlives a password change, nor remove the user's.
func (p *Pages) confirmPasskeyChange(r *http.Request, sess sessions.Session, current string) error {
	if p.Service.FreshLogin(sess) {
		return nil
	}
	if current == "" {
		return errNoPassword
	}
	_, err := p.Service.Reauthenticate(r.Context(), p.Cookie.Attempt(r, sess.Username), sess, current)
	return err
}

var errNoPassword = errors.New("the current password is needed")

// passkeyFailure explains the errors of the passkey forms and endpoints.
func (p *Pages) passkeyFailure(w http.ResponseWriter, r *http.Request, err error) (int, string) {
	switch {
	case errors.Is(err, errNoPassword):
		return http.StatusUnauthorized, "Enter your current password: your login is too old to change your passkeys without it."
	case errors.Is(err, auth.ErrInvalidPassword) || errors.Is(err, auth.ErrUnknownUser):
		return http.StatusUnauthorized, "Your current password is wrong. Nothing was changed."
	case errors.Is(err, passkeys.ErrTooMany):
		return http.StatusConflict, "You have as many passkeys as an account may have. Remove one first."
	case errors.Is(err, passkeys.ErrBadName):
		return http.StatusBadRequest, "Name it with 1 to 64 letters, digits, spaces or signs."
	case errors.Is(err, passkeys.ErrNoCeremony):
		return http.StatusBadRequest, "That took too long, or was sent twice. Try again."
	case errors.Is(err, passkeys.ErrCloned):
		return http.StatusUnauthorized, "That passkey was refused and is now blocked: its signatures show it may have been copied. " +
			"Log in with your password, and remove it from your passkeys."
	case errors.Is(err, passkeys.ErrRefused):
		return http.StatusUnauthorized, "That passkey was not accepted. It may belong to another site, or have been removed from your account."
	case errors.Is(err, passkeys.ErrNotFound):
		return http.StatusNotFound, "You have no passkey to use here. Use another way, or add one after you log in."
	case errors.Is(err, passkeys.ErrUnavailable):
		return http.StatusNotFound, "Passkeys are not available on this site."
	}
	return p.explain(w, r, err)
}

// servePasskeyAPI answers the passkey endpoints and the script, and
// reports whether name is one of them.
func (p *Pages) servePasskeyAPI(w http.ResponseWriter, r *http.Request, name string) bool {
	var serve func(http.ResponseWriter, *http.Request, []byte)
	switch name {
	case "passkeys.js":
		p.script(w, r)
		return true
	case "passkey/begin":
		serve = p.beginSignIn
	case "passkey/finish":
		serve = p.finishSignIn
	case "account/passkeys/begin":
		serve = p.beginAdd
	case "account/passkeys/finish":
		serve = p.finishAdd
	case "passkey/second/begin":
		serve = p.beginSecond
	case "passkey/second/finish":
		serve = p.finishSecond
	default:
		return false
	}
	switch {
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", "POST")
		failJSON(w, http.StatusMethodNotAllowed, "Use POST.")
	case !web.SameOrigin(r):
		failJSON(w, http.StatusForbidden, "This request came from another site, so it was refused.")
	case !p.passkeysOn():
		failJSON(w, http.StatusNotFound, "Passkeys are not available on this site.")
	default:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, web.MaxBody))
		if err != nil {
			failJSON(w, http.StatusBadRequest, "The request could not be read.")
			return true
		}
		serve(w, r, body)
	}
	return true
}

func failJSON(w http.ResponseWriter, status int, msg string) {
	web.WriteJSON(w, status, map[string]any{"error": msg})
}

// passkeyFail answers an endpoint's failure.
func (p *Pages) passkeyFail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := p.passkeyFailure(w, r, err)
	failJSON(w, status, msg)
}

// signedInJSON returns the session and account of an endpoint's request,
// or answers 401.
func (p *Pages) signedInJSON(w http.ResponseWriter, r *http.Request) (sessions.Session, accounts.User, bool) {
	token, _ := p.Cookie.Token(r)
	sess, err := p.Service.Authenticate(r.Context(), token)
	var u accounts.User
	if err == nil {
		u, err = p.Service.Account(r.Context(), sess)
	}
	switch {
	case errors.Is(err, sessions.ErrNotFound) || errors.Is(err, accounts.ErrNotFound) || token == "":
		failJSON(w, http.StatusUnauthorized, "You are not signed in any more. Log in again.")
	case err != nil:
		p.passkeyFail(w, r, err)
	default:
		return sess, u, true
	}
	return sessions.Session{}, accounts.User{}, false
}

// beginAdd starts adding a passkey, named as the body says, to the
// signed-in user's account.
func (p *Pages) beginAdd(w http.ResponseWriter, r *http.Request, body []byte) {
	sess, u, ok := p.signedInJSON(w, r)
	if !ok {
		return
	}
	var in struct {
		Name            string `json:"name"`
		CurrentPassword string `json:"current_password"`
	}
	if json.Unmarshal(body, &in) != nil {
		failJSON(w, http.StatusBadRequest, "The request could not be read.")
		return
	}
	// The name first: a bad one costs no guess of the password.
	if _, err := passkeys.CleanName(in.Name); err != nil {
		p.passkeyFail(w, r, err)
		return
	}
	if err := p.confirmPasskeyChange(r, sess, in.CurrentPassword); err != nil {
		p.passkeyFail(w, r, err)
		return
	}
	creation, err := p.Passkeys.BeginRegistration(r.Context(), p.RP, u, sess.ID, in.Name)
	if err != nil {
		p.passkeyFail(w, r, err)
		return
	}
	web.WriteJSON(w, http.StatusOK, creation)
}

// finishAdd stores the passkey the authenticator made, when its answer
// verifies.
func (p *Pages) finishAdd(w http.ResponseWriter, r *http.Request, body []byte) {
	sess, u, ok := p.signedInJSON(w, r)
	if !ok {
		return
	}
	_, codes, err := p.Passkeys.FinishRegistration(r.Context(), p.RP, u, sess.ID, body, web.ClientIP(r))
	if err != nil {
		p.passkeyFail(w, r, err)
		return
	}
	// The ceremony proved the new passkey, its user verified: from now on
	// the session says so, under a new id, as after any enrolment (and
	// under mfa required, may go on past the enrolment pages).
	if !auth.HasSecondFactor(sess.AMR) {
		if !p.resession(w, r, u, auth.AMRPassword, passkeys.Factor) {
			return
		}
	}
	answer := map[string]any{"next": p.Prefix + "/account/passkeys?done=added"}
	if len(codes) > 0 {
		// A first second factor brings recovery codes: the script shows
		// them, once; they are never readable again.
		answer["recovery_codes"] = codes
	}
	web.WriteJSON(w, http.StatusOK, answer)
}

// resession replaces the request's session with one authenticated as amr
// says, and sends its cookie; on failure it answers and reports false.
func (p *Pages) resession(w http.ResponseWriter, r *http.Request, u accounts.User, amr ...string) bool {
	token, _ := p.Cookie.Token(r)
	newToken, sess, err := p.Service.UpgradeSession(r.Context(), u, p.Cookie.Attempt(r, u.Username), token, amr...)
	if err != nil {
		p.passkeyFail(w, r, err)
		return false
	}
	p.Cookie.Set(w, r, newToken, time.Unix(sess.Expires, 0))
	return true
}

// ticketCookie is the cookie that binds a passkey sign-in to the browser
// that began it: only that browser can answer its challenge.
func (p *Pages) ticketCookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: p.Cookie.Name + "_passkey", Value: value, Path: p.Prefix + "/passkey/",
		MaxAge: maxAge, HttpOnly: true, Secure: web.Secure(r), SameSite: http.SameSiteStrictMode}
}

// beginSignIn starts a sign-in with a passkey, for whoever holds one.
func (p *Pages) beginSignIn(w http.ResponseWriter, r *http.Request, _ []byte) {
	assertion, ticket, err := p.Passkeys.BeginLogin(r.Context(), p.RP)
	if err != nil {
		p.passkeyFail(w, r, err)
		return
	}
	http.SetCookie(w, p.ticketCookie(r, ticket, int(passkeys.CeremonyTTL.Seconds())))
	web.WriteJSON(w, http.StatusOK, assertion)
}

// finishSignIn logs in the account whose passkey answered the challenge
// of the browser's ticket, authenticated by it alone (amr webauthn: the
// passkey verified its user), and tells the script where to go: the
// redirect target, when it is a path on this site.
func (p *Pages) finishSignIn(w http.ResponseWriter, r *http.Request, body []byte) {
	var in struct {
		Credential json.RawMessage `json:"credential"`
		Redirect   string          `json:"redirect"`
	}
	if json.Unmarshal(body, &in) != nil || len(in.Credential) == 0 {
		failJSON(w, http.StatusBadRequest, "The request could not be read.")
		return
	}
	at := p.Cookie.Attempt(r, "")
	if err := p.Service.AttemptUnnamed(r.Context(), at); err != nil {
		p.passkeyFail(w, r, err)
		return
	}
	ticket := ""
	if c, err := r.Cookie(p.Cookie.Name + "_passkey"); err == nil {
		ticket = c.Value
	}
	http.SetCookie(w, p.ticketCookie(r, "", -1)) // spent, whatever the outcome
	u, err := p.Passkeys.FinishLogin(r.Context(), p.RP, ticket, in.Credential, at.IP)
	if err != nil {
		switch {
		case errors.Is(err, passkeys.ErrNoCeremony):
			p.Service.UnnamedFailed(at, "expired_passkey")
		case errors.Is(err, passkeys.ErrRefused) || errors.Is(err, passkeys.ErrCloned):
			p.Service.UnnamedFailed(at, "invalid_passkey")
		}
		p.passkeyFail(w, r, err)
		return
	}
	token, sess, err := p.Service.LoginVerified(r.Context(), u, at, passkeys.Factor)
	if err != nil {
		p.passkeyFail(w, r, err)
		return
	}
	p.Cookie.LoggedIn(w, r, p.Service, u, token, sess)
	web.WriteJSON(w, http.StatusOK, map[string]any{"next": p.afterLogin(SafeRedirect(in.Redirect), sess)})
}

// secondStepOf reads the body of the passkey step of a login whose password
// was right: the ticket of the step (auth.SecondFactorStep), and with the
// answer, the credential and the redirect target. It answers and reports
// false when there is no such step.
func (p *Pages) secondStepOf(w http.ResponseWriter, r *http.Request, body []byte) (in secondStepBody, u accounts.User, ok bool) {
	if json.Unmarshal(body, &in) != nil || in.Ticket == "" {
		failJSON(w, http.StatusBadRequest, "The request could not be read.")
		return in, u, false
	}
	// Peeked, not spent: a passkey's answer cannot be guessed, and its
	// challenge, bound to the ticket, is answered once.
	u, err := p.Service.PendingLogin(r.Context(), in.Ticket)
	switch {
	case errors.Is(err, auth.ErrLoginExpired):
		failJSON(w, http.StatusUnauthorized, "This sign-in has expired or was tried too often. Enter your password again.")
		return in, u, false
	case err != nil:
		p.passkeyFail(w, r, err)
		return in, u, false
	}
	return in, u, true
}

type secondStepBody struct {
	Ticket     string          `json:"ticket"`
	Credential json.RawMessage `json:"credential"`
	Redirect   string          `json:"redirect"`
}

// beginSecond starts the passkey step of a login: any of the user's
// passkeys may answer.
func (p *Pages) beginSecond(w http.ResponseWriter, r *http.Request, body []byte) {
	in, u, ok := p.secondStepOf(w, r, body)
	if !ok {
		return
	}
	assertion, err := p.Passkeys.BeginSecondFactor(r.Context(), p.RP, u, in.Ticket)
	if err != nil {
		p.passkeyFail(w, r, err)
		return
	}
	web.WriteJSON(w, http.StatusOK, assertion)
}

// finishSecond ends the login whose step a passkey of the user answered:
// the session says amr pwd webauthn.
func (p *Pages) finishSecond(w http.ResponseWriter, r *http.Request, body []byte) {
	in, u, ok := p.secondStepOf(w, r, body)
	if !ok {
		return
	}
	at := p.Cookie.Attempt(r, u.Username)
	if err := p.Passkeys.FinishSecondFactor(r.Context(), p.RP, u, in.Ticket, in.Credential, at.IP); err != nil {
		if errors.Is(err, passkeys.ErrRefused) || errors.Is(err, passkeys.ErrCloned) || errors.Is(err, passkeys.ErrNoCeremony) {
			p.Service.Audit("mfa_failed", u.Username, at.IP, zap.Int64("user_id", u.ID), zap.String("factor", passkeys.Factor))
		}
		p.passkeyFail(w, r, err)
		return
	}
	u, token, sess, err := p.Service.CompleteLogin(r.Context(), at, in.Ticket, auth.AMRPassword, passkeys.Factor)
	if err != nil {
		if errors.Is(err, auth.ErrLoginExpired) {
			failJSON(w, http.StatusUnauthorized, "This sign-in has expired or was tried too often. Enter your password again.")
			return
		}
		p.passkeyFail(w, r, err)
		return
	}
	p.Cookie.LoggedIn(w, r, p.Service, u, token, sess)
	web.WriteJSON(w, http.StatusOK, map[string]any{"next": p.afterLogin(SafeRedirect(in.Redirect), sess)})
}

// script serves passkeys.js, the pages' one script.
func (p *Pages) script(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	// Revalidated at every use, so that an upgrade's script replaces the
	// old one at once; the ETag makes that a 304.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", passkeys.ScriptETag)
	http.ServeContent(w, r, "passkeys.js", time.Time{}, bytes.NewReader(passkeys.Script))
}
