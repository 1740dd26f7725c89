package restapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/auth"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/store"
	"github.com/authgate/authgate/caddymodule/web"
)

// fakeService answers every call with a canned success, or with the error
// set for its method.
type fakeService struct {
	errs  map[string]error
	calls []string
	link  string     // the link MailResetLink would mail
	proof auth.Proof // of the last login
	// secondFactor makes PasswordEnough say no.
	secondFactor bool
}

var (
	ann      = accounts.User{ID: 7, Userhash: strings.Repeat("a", 32), Username: "ann", Email: "ann@example.com"}
	annToken = ann.Userhash + "." + strings.Repeat("s", 43)
	annSess  = sessions.Session{ID: "sid", UserID: ann.ID, Userhash: ann.Userhash, Username: ann.Username, Expires: time.Now().Add(time.Hour).Unix()}
)

func (f *fakeService) call(method string) error {
	f.calls = append(f.calls, method)
	return f.errs[method]
}

func (f *fakeService) LoginWith(_ context.Context, _ auth.Attempt, _ string, proof auth.Proof) (accounts.User, string, sessions.Session, error) {
	f.proof = proof
	if err := f.call("Login"); err != nil {
		return accounts.User{}, "", sessions.Session{}, err
	}
	return ann, annToken, annSess, nil
}

func (f *fakeService) PasswordEnough(context.Context, accounts.User) (bool, error) {
	return !f.secondFactor, f.call("PasswordEnough")
}

func (f *fakeService) Verify(context.Context, auth.Attempt, string) (accounts.User, error) {
	return ann, f.call("Verify")
}

func (f *fakeService) RefuseLogin(context.Context, auth.Attempt) error {
	if err := f.call("RefuseLogin"); err != nil {
		return err
	}
	return auth.ErrBadBytes
}

func (f *fakeService) Register(context.Context, string, string, string, string) (accounts.User, error) {
	return ann, f.call("Register")
}

func (f *fakeService) StartSession(context.Context, accounts.User, auth.Attempt, ...string) (string, sessions.Session, error) {
	return annToken, annSess, f.call("StartSession")
}

func (f *fakeService) Authenticate(context.Context, string) (sessions.Session, error) {
	if err := f.call("Authenticate"); err != nil {
		return sessions.Session{}, err
	}
	return annSess, nil
}

func (f *fakeService) FreshLogin(sessions.Session) bool { return f.call("FreshLogin") == nil }

func (f *fakeService) Account(context.Context, sessions.Session) (accounts.User, error) {
	return ann, f.call("Account")
}

func (f *fakeService) UserByID(context.Context, int64) (accounts.User, error) {
	return ann, f.call("UserByID")
}

func (f *fakeService) UserByName(context.Context, string) (accounts.User, error) {
	return ann, f.call("UserByName")
}

func (f *fakeService) ChangePassword(context.Context, accounts.User, string, string, string) error {
	return f.call("ChangePassword")
}

func (f *fakeService) ResetWithToken(context.Context, string, string, string) (accounts.User, error) {
	return ann, f.call("ResetWithToken")
}

func (f *fakeService) MailResetLink(_ context.Context, _ accounts.User, _ string, link func(string) string) error {
	f.link = link("tok")
	return f.call("MailResetLink")
}

func (f *fakeService) Logout(context.Context, string, string) error { return f.call("Logout") }

func (f *fakeService) NewDevice(accounts.User) (string, time.Time) { return "", time.Time{} }

// The errors of the service, as the tables name them.
var (
	errThrottled = &auth.ThrottledError{RetryAfter: 61 * time.Second}
	errDown      = &store.OutageError{Store: "postgres", Err: errors.New("connection refused")}
	errOther     = errors.New("something unforeseen")
	errWeak      = fmt.Errorf("%w: shorter than 8 characters", auth.ErrTooWeak)
)

type answer struct {
	status  int
	message string
}

// The errors that are not the dialect's own keep their HTTP status, so
// that no front-end mistakes them for an answer.
var shared = []struct {
	name string
	err  error
	answer
}{
	{"throttled", errThrottled, answer{429, "Too many attempts, try again later"}},
	{"invalid input", auth.ErrInvalidInput, answer{400, "Invalid request"}},
	{"bad bytes", auth.ErrBadBytes, answer{400, "Invalid request"}},
	{"too weak", errWeak, answer{422, "Password must be 8 to 1024 characters, not the username and not a common password"}},
	{"store down", errDown, answer{503, "Service unavailable, try again later"}},
	{"anything else", errOther, answer{500, "Internal error"}},
}

const (
	badCredentials = "Invalid username/password"
	unauthorized   = "Unauthorized request"
	weak           = "Password must be 8 to 1024 characters, not the username and not a common password"
)

type call struct {
	name, method, path, body string
	header                   []string // name, value, …
	fails                    string   // the service method that fails
	// own are the shared errors the endpoint answers in its own words.
	own map[string]answer
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

var (
	bearer      = []string{"Authorization", "Bearer " + annToken}
	credentials = map[string]answer{"invalid input": {200, badCredentials}}
	pwChange    = map[string]answer{"invalid input": {200, unauthorized}, "too weak": {200, weak}}

	login         = call{name: "login", method: "POST", path: "/account", header: []string{"Authorization", basic("ann", "pw")}, fails: "Login", own: credentials}
	whoami        = call{name: "login by the session", method: "POST", path: "/account", header: bearer, fails: "Authenticate"}
	register      = call{name: "register", method: "PUT", path: "/account/ann", body: `{"password":"pw","email":"ann@example.com"}`, fails: "Register", own: map[string]answer{"invalid input": {200, "Invalid username or email"}, "too weak": {200, weak}}}
	autologin     = call{name: "register, logged in", method: "PUT", path: "/account/ann", body: `{"password":"pw","email":"ann@example.com","autologin":true}`, fails: "StartSession"}
	byToken       = call{name: "password by token", method: "PUT", path: "/password", body: `{"password":"pw","token":"t"}`, fails: "ResetWithToken", own: pwChange}
	byBasic       = call{name: "password by Basic", method: "PUT", path: "/password/7", body: `{"password":"pw"}`, header: []string{"Authorization", basic("ann", "old")}, fails: "Verify", own: pwChange}
	changeByBasic = call{name: "password by Basic, the change", method: "PUT", path: "/password", body: `{"password":"pw"}`, header: []string{"Authorization", basic("ann", "old")}, fails: "ChangePassword", own: pwChange}
	byCurrent     = call{name: "password by session and current password", method: "PUT", path: "/password/7", body: `{"password":"pw","current_password":"old"}`, header: bearer, fails: "Verify", own: pwChange}
	byFresh       = call{name: "password by a fresh session", method: "PUT", path: "/password", body: `{"password":"pw"}`, header: bearer, fails: "Account", own: pwChange}
	bySession     = call{name: "password by session, the session", method: "PUT", path: "/password", body: `{"password":"pw"}`, header: bearer, fails: "Authenticate"}
	recoverByID   = call{name: "recover by id", method: "POST", path: "/password/7", body: `{}`, fails: "UserByID"}
	recoverByName = call{name: "recover by name", method: "POST", path: "/password/ann", body: `{"uid_type":"username"}`, fails: "UserByName"}
	recoverMail   = call{name: "recover, the mail", method: "POST", path: "/password/7", body: `{"uid_type":"user_id"}`, fails: "MailResetLink"}
	logout        = call{name: "logout", method: "DELETE", path: "/account", header: bearer, fails: "Logout"}
	badLogin      = call{name: "login with bad bytes in the password change", method: "PUT", path: "/password", body: `{"password":"p\u0000w"}`, header: []string{"Authorization", basic("ann", "old")}, fails: "RefuseLogin"}
)

type answered struct {
	Success  any      `json:"success"`
	Messages []string `json:"messages"`
	UserID   any      `json:"user_id"`
	Username any      `json:"username"`
}

func serve(t *testing.T, f *fakeService, c call) (int, answered, *httptest.ResponseRecorder) {
	t.Helper()
	// The dialect is handed the decoded path; the request carries it escaped.
	target := (&url.URL{Path: "/api/user" + c.path}).EscapedPath()
	r := httptest.NewRequest(c.method, target, strings.NewReader(c.body))
	if c.body == "" {
		r = httptest.NewRequest(c.method, target, nil)
	}
	for i := 0; i+1 < len(c.header); i += 2 {
		r.Header.Set(c.header[i], c.header[i+1])
	}
	w := httptest.NewRecorder()
	api := &API{Service: f, Cookie: web.Cookie{Name: "s"}, Logger: zap.NewNop(),
		ResetURL: "{prefix}/reset?token={token}", Origin: "https://app.example.com", Prefix: "/auth"}
	api.Serve(w, r, c.path)
	like := httptest.NewRecorder() // every answer has the headers of web.WriteJSON
	web.WriteJSON(like, w.Code, nil)
	for k := range like.Header() {
		if w.Header().Get(k) != like.Header().Get(k) {
			t.Errorf("%s: %s %q, want %q", c.path, k, w.Header().Get(k), like.Header().Get(k))
		}
	}
	var rep answered
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil || len(rep.Messages) != 1 {
		t.Fatalf("%s: not the dialect's answer: %v: %s", c.path, err, w.Body)
	}
	return w.Code, rep, w
}

// Every error of the service, on every endpoint that can meet it, gets the
// status and message SPEC.md gives it.
func TestErrorMapping(t *testing.T) {
	t.Parallel()
	type row struct {
		name string
		call call
		err  error
		answer
	}
	rows := []row{
		{"login: wrong password", login, auth.ErrInvalidPassword, answer{200, badCredentials}},
		{"login: unknown user", login, auth.ErrUnknownUser, answer{200, badCredentials}},
		{"login: a second factor needed", login, auth.ErrSecondFactorRequired, answer{200, "Second factor required"}},
		{"login: a wrong code", login, auth.ErrInvalidSecondFactor, answer{200, "Second factor required"}},
		{"login: a second factor to enrol first", login, auth.ErrEnrolmentRequired, answer{200, "Second factor enrolment required"}},
		{"register, logged in: the second-factor store down", call{name: "x", method: "PUT", path: "/account/ann",
			body: `{"password":"pw","email":"ann@example.com","autologin":true}`, fails: "PasswordEnough"}, errDown, answer{503, "Service unavailable, try again later"}},
		{"login by the session: none", whoami, sessions.ErrNotFound, answer{200, badCredentials}},
		{"register: exists", register, auth.ErrExists, answer{200, "User already exists"}},
		{"register: closed", register, auth.ErrRegistrationClosed, answer{200, "Registration is closed"}},
		{"register, logged in: a name refused since", autologin, auth.ErrUnknownUser, answer{200, unauthorized}},
		{"password by token: wrong token", byToken, auth.ErrInvalidCode, answer{200, unauthorized}},
		{"password by token: unknown user", byToken, auth.ErrUnknownUser, answer{200, unauthorized}},
		{"password by Basic: wrong password", byBasic, auth.ErrInvalidPassword, answer{200, unauthorized}},
		{"password by Basic: unknown user", byBasic, auth.ErrUnknownUser, answer{200, unauthorized}},
		{"password by current password: wrong", byCurrent, auth.ErrInvalidPassword, answer{200, unauthorized}},
		{"password by a fresh session: the account is gone", byFresh, accounts.ErrNotFound, answer{200, unauthorized}},
		{"password by a stale session", call{method: "PUT", path: "/password", body: `{"password":"pw"}`, header: bearer, fails: "FreshLogin"},
			errors.New("stale"), answer{200, unauthorized}},
		{"password by session: none", bySession, sessions.ErrNotFound, answer{200, unauthorized}},
		{"recover by id: none", recoverByID, auth.ErrUnknownUser, answer{200, "User not found"}},
		{"recover by name: none", recoverByName, auth.ErrUnknownUser, answer{200, "User not found"}},
		{"recover: no email", recoverMail, auth.ErrNoEmail, answer{200, "No email address is set for this user"}},
		{"recover: mail failed", recoverMail, fmt.Errorf("%w: smtp: 554", auth.ErrMailFailed), answer{500, "Password recovery email could not be sent"}},
		{"bad bytes where credentials were to be checked", badLogin, nil, answer{400, "Invalid request"}},
	}
	for _, c := range []call{login, whoami, register, autologin, byToken, byBasic, changeByBasic, byCurrent, byFresh,
		bySession, recoverByID, recoverByName, recoverMail, logout, badLogin} {
		for _, s := range shared {
			a := s.answer
			if own, ok := c.own[s.name]; ok {
				a = own
			}
			rows = append(rows, row{c.name + " (" + c.fails + "): " + s.name, c, s.err, a})
		}
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeService{errs: map[string]error{tc.call.fails: tc.err}}
			status, rep, w := serve(t, f, tc.call)
			if status != tc.status || rep.Success != false || rep.Messages[0] != tc.message {
				t.Fatalf("got %d %s, want %d %q (calls %v)", status, w.Body, tc.status, tc.message, f.calls)
			}
			if want := tc.err == errThrottled; (w.Header().Get("Retry-After") == "61") != want {
				t.Fatalf("Retry-After %q", w.Header().Get("Retry-After"))
			}
			if !slices.Contains(f.calls, tc.call.fails) {
				t.Fatalf("%s was not called: %v", tc.call.fails, f.calls)
			}
			if strings.Contains(w.Body.String(), errOther.Error()) || strings.Contains(w.Body.String(), "connection refused") {
				t.Fatalf("the error's details reached the client: %s", w.Body)
			}
		})
	}
}

// What is refused before the service is asked, or without its word.
func TestRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		call
		answer
		allow string
	}{
		{call{name: "unknown route", method: "GET", path: "/nothing"}, answer{404, "Not found"}, ""},
		{call{name: "too deep", method: "PUT", path: "/account/ann/more"}, answer{404, "Not found"}, ""},
		{call{name: "account: wrong method", method: "GET", path: "/account"}, answer{405, "Method not allowed"}, "POST, DELETE"},
		{call{name: "account/{name}: wrong method", method: "POST", path: "/account/ann"}, answer{405, "Method not allowed"}, "PUT"},
		{call{name: "password: wrong method", method: "POST", path: "/password"}, answer{405, "Method not allowed"}, "PUT"},
		{call{name: "password/{id}: wrong method", method: "GET", path: "/password/7"}, answer{405, "Method not allowed"}, "PUT, POST"},
		{call{name: "cross-site", method: "PUT", path: "/account/ann", body: `{}`, header: []string{"Sec-Fetch-Site", "cross-site"}},
			answer{403, "Cross-site request refused"}, ""},
		{call{name: "bad bytes in the path", method: "PUT", path: "/account/a\x00b", body: `{}`}, answer{400, "Invalid request"}, ""},
		{call{name: "a body that does not parse", method: "PUT", path: "/account/ann", body: `{"password":`},
			answer{400, "Invalid request body: send a JSON object of at most 64 KiB"}, ""},
		{call{name: "register without an email", method: "PUT", path: "/account/ann", body: `{"password":"pw"}`},
			answer{200, "Username/email/password cannot be empty"}, ""},
		{call{name: "login with Basic without a password", method: "POST", path: "/account", header: []string{"Authorization", basic("ann", "")}},
			answer{200, badCredentials}, ""},
		{call{name: "login with Basic that does not parse", method: "POST", path: "/account", header: []string{"Authorization", "Basic !!!"}},
			answer{200, badCredentials}, ""},
		{call{name: "login without credentials or session", method: "POST", path: "/account"}, answer{200, badCredentials}, ""},
		{call{name: "password: empty", method: "PUT", path: "/password", body: `{"token":"t"}`}, answer{200, "Password cannot be empty"}, ""},
		{call{name: "password: a path id that is no id", method: "PUT", path: "/password/ann", body: `{"password":"pw","token":"t"}`},
			answer{200, unauthorized}, ""},
		{call{name: "password: no credentials, no session", method: "PUT", path: "/password", body: `{"password":"pw"}`},
			answer{200, unauthorized}, ""},
		{call{name: "recover: unknown uid type", method: "POST", path: "/password/7", body: `{"uid_type":"email"}`},
			answer{200, "Unknown uid type"}, ""},
		{call{name: "recover: an id that is no id", method: "POST", path: "/password/ann", body: `{}`}, answer{200, "User not found"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeService{}
			status, rep, w := serve(t, f, tc.call)
			if status != tc.status || rep.Success != false || rep.Messages[0] != tc.message || w.Header().Get("Allow") != tc.allow {
				t.Fatalf("got %d %s (Allow %q), want %d %q", status, w.Body, w.Header().Get("Allow"), tc.status, tc.message)
			}
			if len(f.calls) != 0 {
				t.Fatalf("the service was asked: %v", f.calls)
			}
		})
	}
}

// The second factor reaches the service from the body of a Basic login.
func TestLoginPassesTheSecondFactor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		want       auth.Proof
	}{
		{"no body", "", auth.Proof{}},
		{"totp", `{"totp":"123456"}`, auth.Proof{TOTP: "123456"}},
		{"recovery code", `{"recovery_code":"7mq2k-9xh4d"}`, auth.Proof{RecoveryCode: "7mq2k-9xh4d"}},
		{"a body that does not parse holds none", `{"totp":`, auth.Proof{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeService{}
			c := login
			c.body = tc.body
			if status, rep, w := serve(t, f, c); status != 200 || rep.Success != true {
				t.Fatalf("got %d %s", status, w.Body)
			}
			if f.proof != tc.want {
				t.Fatalf("the service got %+v, want %+v", f.proof, tc.want)
			}
		})
	}
}

// An autologin does not skip a second factor: the change stands, without a
// session.
func TestAutologinWithSecondFactor(t *testing.T) {
	t.Parallel()
	for _, c := range []call{
		autologin,
		{name: "password by token, logged in", method: "PUT", path: "/password", body: `{"password":"pw","token":"t","autologin":true}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeService{secondFactor: true}
			status, rep, w := serve(t, f, c)
			if status/100 != 2 || rep.Success != true || w.Header().Get("Set-Cookie") != "" || slices.Contains(f.calls, "StartSession") {
				t.Fatalf("got %d %s, cookie %q, calls %v", status, w.Body, w.Header().Get("Set-Cookie"), f.calls)
			}
		})
	}
}

// A password change must be made by the account the path names.
func TestPasswordChangeOfAnother(t *testing.T) {
	t.Parallel()
	for _, c := range []call{
		{name: "by Basic", method: "PUT", path: "/password/8", body: `{"password":"pw"}`, header: []string{"Authorization", basic("ann", "old")}},
		{name: "by session", method: "PUT", path: "/password/8", body: `{"password":"pw"}`, header: bearer},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeService{}
			status, rep, w := serve(t, f, c)
			if status != 200 || rep.Messages[0] != unauthorized {
				t.Fatalf("got %d %s", status, w.Body)
			}
			if slices.Contains(f.calls, "ChangePassword") {
				t.Fatalf("the password changed: %v", f.calls)
			}
		})
	}
}

func TestSuccess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		call
		status  int
		message string
		user    bool // the answer names the user
		cookie  bool // a session cookie is set
	}{
		{login, 200, "Successful login", true, true},
		{whoami, 200, "Successful login", true, false},
		{register, 201, "User registered", true, false},
		{autologin, 201, "User registered", true, true},
		{byToken, 200, "Password changed", true, false},
		{call{name: "password by token, logged in", method: "PUT", path: "/password", body: `{"password":"pw","token":"t","autologin":true}`},
			200, "Password changed", true, true},
		{byBasic, 200, "Password changed", true, false},
		{byCurrent, 200, "Password changed", true, false},
		{byFresh, 200, "Password changed", true, false},
		{recoverByID, 200, "Password recovery email sent", false, false},
		{recoverByName, 200, "Password recovery email sent", false, false},
		{logout, 200, "Logged out", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeService{}
			status, rep, w := serve(t, f, tc.call)
			if status != tc.status || rep.Success != true || rep.Messages[0] != tc.message {
				t.Fatalf("got %d %s, want %d %q", status, w.Body, tc.status, tc.message)
			}
			if named := reflect.DeepEqual(rep.UserID, float64(7)) && rep.Username == "ann"; named != tc.user {
				t.Fatalf("user named %v: %s", named, w.Body)
			}
			if set := strings.Contains(w.Header().Get("Set-Cookie"), "s="+annToken); set != tc.cookie {
				t.Fatalf("session cookie set %v: %q", set, w.Header().Values("Set-Cookie"))
			}
			if strings.HasPrefix(tc.name, "recover") && f.link != "https://app.example.com/auth/reset?token=tok" {
				t.Fatalf("link %q", f.link)
			}
		})
	}
}
