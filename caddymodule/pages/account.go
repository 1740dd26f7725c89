package pages

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/auth"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/web"
)

// accountView is what the account page shows besides the shared view.
type accountView struct {
	Username, Email string
	// EmailField is what the address field holds: the address, or what
	// the user typed when the change failed.
	EmailField string
	// Sessions are the user's live sessions, this one first; Others tells
	// whether there are any but this one.
	Sessions []sessionRow
	Others   bool
	// SecondFactors are the second-factor pages, see secondFactors.
	SecondFactors []factorLink
}

// sessionRow is one session as the account page lists it.
type sessionRow struct {
	ID, Device, IP       string
	Started, StartedAt   string // in words (UTC), and RFC 3339 for <time>
	LastSeen, LastSeenAt string
	Current              bool
}

// factorLink is a second factor's page, linked from the account page.
type factorLink struct {
	Name, Path, About string
	// Status says how the factor stands for the user ("On", "2
	// passkeys"); empty, nothing is said.
	Status string
}

// What a successful change on the account page says after its redirect
// (POST, then 303 to GET: a reload repeats nothing). Only these keys are
// read from the query, so the page never shows text from a link.
var accountNotices = map[string]string{
	"ended":         "The session was ended.",
	"others":        "Every other session was ended.",
	"password":      "Your password was changed, and every other session was ended.",
	"email":         "Your email address was changed.",
	"email-removed": "Your email address was removed. Without one, a forgotten password cannot be reset.",
}

// account serves {prefix}/account to a signed-in user: their sessions
// (ended one by one or all but this one), the password, the email address
// and links to the second factors. Anyone else goes to the login page and
// comes back here.
func (p *Pages) account(w http.ResponseWriter, r *http.Request) {
	u, sess, _, ok := p.signedIn(w, r, "account")
	if !ok {
		return
	}
	v := view{Heading: "Your account", Notice: accountNotices[r.URL.Query().Get("done")]}
	status := http.StatusOK
	typedEmail := u.Email
	if r.Method == http.MethodPost {
		var done string
		done, status, v.Error = p.accountChange(w, r, sess)
		switch done {
		case "":
			typedEmail = r.PostFormValue("email")
		case "ended-this":
			// Ending the session in use is logging out.
			p.Cookie.Clear(w, r)
			http.Redirect(w, r, p.Prefix+"/login?redirect="+url.QueryEscape(p.Prefix+"/account"), http.StatusSeeOther)
			return
		default:
			http.Redirect(w, r, p.Prefix+"/account?done="+done, http.StatusSeeOther)
			return
		}
	}
	list, err := p.Service.ListSessions(r.Context(), u)
	if err != nil {
		status, v.Error = p.explain(w, r, err)
	}
	v.Account = &accountView{
		Username: u.Username, Email: u.Email, EmailField: typedEmail,
		Sessions:      sessionRows(list, sess.ID, time.Now()),
		SecondFactors: p.secondFactors(r, u),
	}
	for _, row := range v.Account.Sessions {
		v.Account.Others = v.Account.Others || !row.Current
	}
	p.render(w, status, "account", v)
}

// accountChange makes the change a form of the account page asks for, and
// returns the notice key of its success, or the status and words of its
// failure.
func (p *Pages) accountChange(w http.ResponseWriter, r *http.Request, sess sessions.Session) (done string, status int, msg string) {
	ctx, ip := r.Context(), web.ClientIP(r)
	switch r.PostFormValue("action") {
	case "end":
		id := r.PostFormValue("session")
		err := p.Service.EndSession(ctx, sess, id, ip)
		switch {
		case err == nil && id == sess.ID:
			return "ended-this", 0, ""
		case err == nil:
			return "ended", 0, ""
		case errors.Is(err, sessions.ErrNotFound):
			return "", http.StatusNotFound, "That session is not one of yours, or it has ended already."
		}
		status, msg = p.explain(w, r, err)
		return "", status, msg

	case "end-others":
		if _, err := p.Service.EndOtherSessions(ctx, sess, ip); err != nil {
			status, msg = p.explain(w, r, err)
			return "", status, msg
		}
		return "others", 0, ""

	case "password":
		current, next := r.PostFormValue("current_password"), r.PostFormValue("new_password")
		if current == "" || next == "" {
			return "", http.StatusBadRequest, "Enter your current password and a new one."
		}
		if subtle.ConstantTimeCompare([]byte(next), []byte(r.PostFormValue("new_password_again"))) != 1 {
			return "", http.StatusBadRequest, "The new password and its repetition differ. Type them again."
		}
		// A new password that would be refused costs no guess of the
		// current one.
		err := p.Service.CheckNewPassword(sess.Username, next)
		var u accounts.User
		if err == nil {
			u, err = p.Service.Reauthenticate(ctx, p.Cookie.Attempt(r, sess.Username), sess, current)
		}
		if err == nil {
			// The same path as every password change: policy, hash, and the
			// other sessions ended; this one is kept.
			err = p.Service.ChangePassword(ctx, u, next, sess.ID, ip)
		}
		if err == nil {
			return "password", 0, ""
		}
		return "", p.reauthFailure(w, r, err, &msg), msg

	case "email":
		// The address is where a forgotten password is reset: whoever may
		// change it may take the account over. So a session alone, which
		// may be stolen or left open, is not enough; the password is.
		current := r.PostFormValue("current_password")
		if current == "" {
			return "", http.StatusBadRequest, "Enter your current password to change the address."
		}
		u, err := p.Service.Reauthenticate(ctx, p.Cookie.Attempt(r, sess.Username), sess, current)
		if err != nil {
			return "", p.reauthFailure(w, r, err, &msg), msg
		}
		email := strings.TrimSpace(r.PostFormValue("email"))
		err = p.Service.ChangeEmail(ctx, u, email, ip)
		switch {
		case err == nil && email == "":
			return "email-removed", 0, ""
		case err == nil:
			return "email", 0, ""
		case errors.Is(err, auth.ErrInvalidInput) && !errors.Is(err, auth.ErrBadBytes):
			return "", http.StatusBadRequest, "Enter a plain address such as name@example.com, or leave the field empty to remove it."
		}
		status, msg = p.explain(w, r, err)
		return "", status, msg
	}
	return "", http.StatusBadRequest, "The form could not be read."
}

// reauthFailure explains a failed change that needed the current password.
func (p *Pages) reauthFailure(w http.ResponseWriter, r *http.Request, err error, msg *string) int {
	if errors.Is(err, auth.ErrInvalidPassword) || errors.Is(err, auth.ErrUnknownUser) {
		*msg = "Your current password is wrong. Nothing was changed."
		return http.StatusUnauthorized
	}
	status, words := p.explain(w, r, err)
	*msg = words
	return status
}

// secondFactors lists the second-factor pages the account page links to.
//
// Merge hook: Status is left empty here; the second-factor work fills it
// from its stores (e.g. "On", "8 codes left", "2 passkeys"), and leaves out
// the factors the site's mfa setting turns off.
func (p *Pages) secondFactors(_ *http.Request, _ accounts.User) []factorLink {
	return []factorLink{
		{Name: "Authenticator app", Path: p.Prefix + "/account/totp",
			About: "A 6-digit code from an app on your phone, asked for after your password."},
		{Name: "Recovery codes", Path: p.Prefix + "/account/recovery",
			About: "Ten single-use codes for when you cannot use your other second factors."},
		{Name: "Passkeys", Path: p.Prefix + "/account/passkeys",
			About: "Sign in with your device's screen lock or a security key."},
	}
}

// sessionRows orders the sessions for the page, this one (currentID) first
// and then the most recently started, and says their times in words.
func sessionRows(list []sessions.Session, currentID string, now time.Time) []sessionRow {
	rows := make([]sessionRow, 0, len(list))
	for _, s := range slices.Backward(list) { // List gives the oldest first
		seen := s.Seen
		if seen == 0 {
			seen = s.Created
		}
		started, last := time.Unix(s.Created, 0).UTC(), time.Unix(seen, 0).UTC()
		row := sessionRow{
			ID: s.ID, Device: s.Device, IP: s.IP, Current: s.ID == currentID,
			Started: started.Format("2 Jan 2006, 15:04 UTC"), StartedAt: started.Format(time.RFC3339),
			LastSeen: ago(now, last), LastSeenAt: last.Format(time.RFC3339),
		}
		if row.Device == "" {
			row.Device = "Unknown device"
		}
		if row.IP == "" {
			row.IP = "unknown"
		}
		if row.Current {
			rows = slices.Insert(rows, 0, row)
		} else {
			rows = append(rows, row)
		}
	}
	return rows
}

// ago says how long before now t was, the way a person would.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	n, unit := 0, ""
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		n, unit = int(d/time.Minute), "minute"
	case d < 48*time.Hour:
		n, unit = int(d/time.Hour), "hour"
	default:
		n, unit = int(d/(24*time.Hour)), "day"
	}
	if n == 1 {
		return "1 " + unit + " ago"
	}
	return fmt.Sprintf("%d %ss ago", n, unit)
}
