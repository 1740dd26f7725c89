package usersapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"reflect"
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
	proof auth.Proof // of the last login
}

var (
	ann      = accounts.User{ID: 7, Userhash: strings.Repeat("a", 32), Username: "ann", Email: "ann@example.com"}
	annToken = ann.Userhash + "." + strings.Repeat("s", 43) // well formed (sessions.TokenLen)
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
	return ann, annToken, sessions.Session{UserID: ann.ID, Expires: time.Now().Add(time.Hour).Unix()}, nil
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

func (f *fakeService) RequestOTP(context.Context, string, string) (accounts.User, string, error) {
	return ann, "reqid", f.call("RequestOTP")
}

func (f *fakeService) ResetWithOTP(context.Context, string, string, string, string, string) (accounts.User, error) {
	return ann, f.call("ResetWithOTP")
}

func (f *fakeService) Authenticate(context.Context, string) (sessions.Session, error) {
	if err := f.call("Authenticate"); err != nil {
		return sessions.Session{}, err
	}
	return sessions.Session{UserID: ann.ID, Userhash: ann.Userhash, Username: ann.Username}, nil
}

func (f *fakeService) AccountInfo(context.Context, sessions.Session) (accounts.User, error) {
	return ann, f.call("AccountInfo")
}

func (f *fakeService) Logout(context.Context, string, string) error { return f.call("Logout") }

func (f *fakeService) RegistrationOpen() bool { return f.errs["RegistrationOpen"] == nil }

func (f *fakeService) NewDevice(accounts.User) (string, time.Time) { return "", time.Time{} }

// The errors of the service, as the tables name them.
var (
	errThrottled = &auth.ThrottledError{RetryAfter: 61 * time.Second}
	errDown      = &store.OutageError{Store: "redis", Err: errors.New("connection refused")}
	errOther     = errors.New("something unforeseen")
	errWeak      = fmt.Errorf("%w: shorter than 8 characters", auth.ErrTooWeak)
)

// The errors every endpoint answers alike, and how.
var shared = []struct {
	name   string
	err    error
	status int
	code   string
}{
	{"throttled", errThrottled, 429, TooManyAttempts},
	{"invalid input", auth.ErrInvalidInput, 400, InvalidInput},
	{"bad bytes", auth.ErrBadBytes, 400, InvalidInput},
	{"too weak", errWeak, 422, PasswordTooWeak},
	{"store down", errDown, 503, ServiceUnavailable},
	{"anything else", errOther, 500, InternalError},
}

type call struct {
	method, path, query, body string
	header                    []string // name, value, …
	fails                     string   // the service method that fails
}

var (
	login    = call{method: "POST", path: "login", body: `{"username":"ann","password":"pw"}`, fails: "Login"}
	register = call{method: "POST", path: "register", body: `{"username":"ann","password":"pw","email":"ann@example.com"}`, fails: "Register"}
	otp      = call{method: "POST", path: "requestotp", body: `{"username":"ann"}`, fails: "RequestOTP"}
	modify   = call{method: "POST", path: "modifypassword", body: `{"userhash":"` + ann.Userhash + `","reqid":"r","OTP":"123456","password":"pw"}`, fails: "ResetWithOTP"}
	info     = call{method: "GET", path: "info", header: []string{"Authorization", "Bearer " + annToken}, fails: "AccountInfo"}
	session  = call{method: "GET", path: "info", header: []string{"Authorization", "Bearer " + annToken}, fails: "Authenticate"}
	logout   = call{method: "POST", path: "logout", header: []string{"Authorization", "Bearer " + annToken}, fails: "Logout"}
	badLogin = call{method: "POST", path: "login", body: `{"username":"ann","password":"p\u0000w"}`, fails: "RefuseLogin"}
)

// serve runs c against a dialect over f and returns the status, the code
// (data.message) and the recorder.
func serve(t *testing.T, f *fakeService, c call) (int, any, *httptest.ResponseRecorder) {
	t.Helper()
	target := "/auth/users/" + c.path
	if c.query != "" {
		target += "?" + c.query
	}
	r := httptest.NewRequest(c.method, target, strings.NewReader(c.body))
	if c.body == "" {
		r = httptest.NewRequest(c.method, target, nil)
	}
	for i := 0; i+1 < len(c.header); i += 2 {
		r.Header.Set(c.header[i], c.header[i+1])
	}
	w := httptest.NewRecorder()
	api := &API{Service: f, Cookie: web.Cookie{Name: "s"}, Logger: zap.NewNop()}
	api.Serve(w, r, c.path)
	like := httptest.NewRecorder() // every answer has the headers of web.WriteJSON
	web.WriteJSON(like, w.Code, nil)
	for k := range like.Header() {
		if w.Header().Get(k) != like.Header().Get(k) {
			t.Errorf("%s: %s %q, want %q", c.path, k, w.Header().Get(k), like.Header().Get(k))
		}
	}
	var env struct {
		Success any `json:"success"`
		Data    struct {
			Message any `json:"message"`
		} `json:"data"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
		t.Fatalf("%s: not the envelope: %v: %s", c.path, err, w.Body)
	}
	if w.Code != 200 && env.Success != false {
		t.Errorf("status %d with success %v", w.Code, env.Success)
	}
	return w.Code, env.Data.Message, w
}

// Every error of the service, on every endpoint that can meet it, gets the
// status and code SPEC.md gives it.
func TestErrorMapping(t *testing.T) {
	t.Parallel()
	type row struct {
		name   string
		call   call
		err    error
		status int
		code   string
	}
	rows := []row{
		{"login: wrong password", login, auth.ErrInvalidPassword, 401, "INVALID_PASSWORD"},
		{"login: unknown user", login, auth.ErrUnknownUser, 401, "REGISTER_FOR_A_PASSWORD"},
		{"login: a second factor needed", login, auth.ErrSecondFactorRequired, 401, MFARequired},
		{"login: a wrong code", login, auth.ErrInvalidSecondFactor, 401, "ERROR_INVALID_OTP"},
		{"login: a second factor to enrol first", login, auth.ErrEnrolmentRequired, 403, MFAEnrolmentRequired},
		{"register: exists", register, auth.ErrExists, 200, "ERROR_LOGIN_WITH_PASSWORD"},
		{"register: closed", register, auth.ErrRegistrationClosed, 401, "CANT_CREATE_USER"},
		{"requestotp: no email", otp, auth.ErrNoEmail, 200, "ERROR_NO_EMAIL_SET"},
		{"requestotp: unknown user", otp, auth.ErrUnknownUser, 403, "ERROR_INVALID_USERNAME"},
		{"requestotp: mail failed", otp, fmt.Errorf("%w: smtp: 554", auth.ErrMailFailed), 500, "ERROR_EMAIL_SENDING_FAILED"},
		{"modifypassword: unknown userhash", modify, auth.ErrUnknownUser, 403, "ERROR_INVALID_USERNAME"},
		{"modifypassword: wrong code", modify, auth.ErrInvalidCode, 401, "ERROR_INVALID_OTP"},
		{"info: no session", session, sessions.ErrNotFound, 401, PleaseLogin},
		{"login with bad bytes", badLogin, nil, 400, InvalidInput},
	}
	for _, c := range []call{login, register, otp, modify, info, session, logout, badLogin} {
		for _, s := range shared {
			rows = append(rows, row{c.path + " (" + c.fails + "): " + s.name, c, s.err, s.status, s.code})
		}
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeService{errs: map[string]error{tc.call.fails: tc.err}}
			status, code, w := serve(t, f, tc.call)
			if status != tc.status || code != tc.code {
				t.Fatalf("got %d %v, want %d %s (calls %v)", status, code, tc.status, tc.code, f.calls)
			}
			if want := tc.err == errThrottled; (w.Header().Get("Retry-After") == "61") != want {
				t.Fatalf("Retry-After %q", w.Header().Get("Retry-After"))
			}
			if strings.Contains(w.Body.String(), errOther.Error()) || strings.Contains(w.Body.String(), "connection refused") {
				t.Fatalf("the error's details reached the client: %s", w.Body)
			}
		})
	}
}

// The codes of the second factor reach the service as sent, in JSON and in
// forms.
func TestLoginPassesTheSecondFactor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		want       auth.Proof
	}{
		{"none", `{"username":"ann","password":"pw"}`, auth.Proof{}},
		{"totp", `{"username":"ann","password":"pw","totp":"123456"}`, auth.Proof{TOTP: "123456"}},
		{"totp as a JSON number", `{"username":"ann","password":"pw","totp":123456}`, auth.Proof{TOTP: "123456"}},
		{"recovery code", `{"username":"ann","password":"pw","recovery_code":"7mq2k-9xh4d"}`, auth.Proof{RecoveryCode: "7mq2k-9xh4d"}},
		{"form", "username=ann&password=pw&totp=654321", auth.Proof{TOTP: "654321"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeService{}
			if status, _, _ := serve(t, f, call{method: "POST", path: "login", body: tc.body}); status != 200 {
				t.Fatalf("status %d", status)
			}
			if f.proof != tc.want {
				t.Fatalf("the service got %+v, want %+v", f.proof, tc.want)
			}
		})
	}
}

// What is refused before the service is asked.
func TestRefusedBeforeTheService(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		call   call
		status int
		code   string
	}{
		{"unknown endpoint", call{method: "GET", path: "nothing"}, 404, NotFound},
		{"wrong method", call{method: "GET", path: "login"}, 405, MethodNotAllowed},
		{"login without a password", call{method: "POST", path: "login", body: `{"username":"ann"}`}, 400, InvalidInput},
		{"login with an empty name", call{method: "POST", path: "login", body: `{"username":"","password":"pw"}`}, 400, InvalidInput},
		{"register without a name", call{method: "POST", path: "register", body: `{"password":"pw"}`}, 400, InvalidInput},
		{"requestotp without a name", call{method: "POST", path: "requestotp", body: `{}`}, 400, InvalidInput},
		{"modifypassword without a code", call{method: "POST", path: "modifypassword", body: `{"userhash":"u","reqid":"r","password":"pw"}`}, 400, InvalidInput},
		{"a body that does not parse", call{method: "POST", path: "login", body: `{"username":`}, 400, InvalidInput},
		{"info without a session", call{method: "GET", path: "info"}, 401, PleaseLogin},
		{"info with Basic of another userhash", call{method: "GET", path: "info",
			header: []string{"Authorization", "Basic " + basic(strings.Repeat("b", 32), annToken)}}, 401, PleaseLogin},
		{"a cross-site login", call{method: "POST", path: "login", body: `{"username":"ann","password":"pw"}`,
			header: []string{"Sec-Fetch-Site", "cross-site"}}, 403, CrossSite},
		{"a cross-site requestotp by GET", call{method: "GET", path: "requestotp", query: "username=ann",
			header: []string{"Origin", "https://evil.example"}}, 403, CrossSite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeService{}
			status, code, _ := serve(t, f, tc.call)
			if status != tc.status || code != tc.code {
				t.Fatalf("got %d %v, want %d %s", status, code, tc.status, tc.code)
			}
			for _, m := range f.calls {
				if m != "RegistrationOpen" {
					t.Fatalf("the service was asked: %v", f.calls)
				}
			}
		})
	}
}

func basic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// The answers of success, as the seed's front-end reads them.
func TestSuccess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		call    call
		closed  bool
		message any
	}{
		{"login", login, false, map[string]any{"userhash": ann.Userhash, "ssid": annToken}},
		{"register", register, false, "USER_INSERT_OK"},
		{"requestotp", otp, false, map[string]any{"userhash": ann.Userhash, "reqid": "reqid"}},
		{"requestotp by GET", call{method: "GET", path: "requestotp", query: "username=ann"}, false,
			map[string]any{"userhash": ann.Userhash, "reqid": "reqid"}},
		{"modifypassword", modify, false, "PASSWORD_RESET_OK"},
		{"modifypassword with otp in lower case", call{method: "POST", path: "modifypassword",
			body: `{"userhash":"u","reqid":"r","otp":"123456","password":"pw"}`}, false, "PASSWORD_RESET_OK"},
		{"info", info, false, map[string]any{"user_id": float64(7), "userhash": ann.Userhash, "username": "ann",
			"email": "ann@example.com", "created_at": "0001-01-01T00:00:00Z"}},
		{"info by the seed client's Basic", call{method: "GET", path: "info",
			header: []string{"Authorization", "Basic " + basic(ann.Userhash, annToken)}}, false,
			map[string]any{"user_id": float64(7), "userhash": ann.Userhash, "username": "ann",
				"email": "ann@example.com", "created_at": "0001-01-01T00:00:00Z"}},
		{"logout", logout, false, "LOGOUT_OK"},
		{"logout without a session", call{method: "POST", path: "logout"}, false, "LOGOUT_OK"},
		{"registration open", call{method: "GET", path: "settings/registrationstatus"}, false, true},
		{"registration closed", call{method: "GET", path: "settings/registrationstatus"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeService{errs: map[string]error{}}
			if tc.closed {
				f.errs["RegistrationOpen"] = auth.ErrRegistrationClosed
			}
			status, message, w := serve(t, f, tc.call)
			// A login answers the string "true", as the seed's server did.
			success := `"success":true`
			if tc.call.path == "login" {
				success = `"success":"true"`
			}
			if status != 200 || !reflect.DeepEqual(message, tc.message) || !strings.Contains(w.Body.String(), success) {
				t.Fatalf("got %d %s, want 200 %v", status, w.Body, tc.message)
			}
		})
	}
}
