package caddymodule

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

var hiddenField = regexp.MustCompile(`<input type="hidden" name="(userhash|reqid|username)" value="([^"]*)"`)

// resetPage posts one step of the reset page and returns the reply, the
// page with the hidden per-request values blanked, and those values.
func resetPage(e *env, kv ...string) (reply, string, map[string]string) {
	e.t.Helper()
	r := e.do(nil, "POST", "/auth/reset", formBody(kv...), "Content-Type", "application/x-www-form-urlencoded")
	fields := map[string]string{}
	page := hiddenField.ReplaceAllStringFunc(string(r.body), func(m string) string {
		sub := hiddenField.FindStringSubmatch(m)
		fields[sub[1]] = sub[2]
		return `<input type="hidden" name="` + sub[1] + `" value="…"`
	})
	return r, page, fields
}

// The reset page answers alike for a known username, an unknown one and an
// account without an email address: same status, same words, hidden fields
// of the same shape. Only the known one gets a mail; the mail throttle
// counts every one.
func TestResetPageAnswersAlike(t *testing.T) {
	e := newEnv(t, options{})
	e.register("katherine", "katherine-password", "katherine@example.com")
	e.register("no-mail-user", "no-mail-user-password", "")

	var firstPage string
	handles := map[string]map[string]string{}
	names := []string{"katherine", "nobody-here", "no-mail-user", "NOBODY-here", "katherine"}
	for i, name := range names {
		r, page, fields := resetPage(e, "step", "request", "username", name)
		if r.status != 200 || !strings.Contains(page, "If that account has an email address, we mailed a 6-digit code") {
			t.Fatalf("%s: %d\n%s", name, r.status, r.body)
		}
		if fields["username"] != name || !hex32.MatchString(fields["userhash"]) || !hex32.MatchString(fields["reqid"]) {
			t.Fatalf("%s: hidden fields %v", name, fields)
		}
		if i == 0 {
			firstPage = page
		} else if page != firstPage {
			t.Fatalf("%s: the page differs from katherine's:\n%s\n---\n%s", name, page, firstPage)
		}
		// A userhash is the same at every request for a name, as a real
		// one is; the request id is new each time.
		key := strings.ToLower(name)
		if prev, ok := handles[key]; ok && (prev["userhash"] != fields["userhash"] || prev["reqid"] == fields["reqid"]) {
			t.Fatalf("%s: handles %v after %v", name, fields, prev)
		}
		handles[key] = fields
	}
	if handles["katherine"]["userhash"] == handles["nobody-here"]["userhash"] {
		t.Fatal("decoy userhash equals the account's")
	}

	// Mail only for katherine (twice), an OTP only for her.
	entries, _ := os.ReadDir(e.mailDir)
	if len(entries) != 2 || !strings.Contains(e.lastMail(), "To: <katherine@example.com>") {
		t.Fatalf("%d mails, last:\n%s", len(entries), e.lastMail())
	}
	ctx := context.Background()
	if keys := e.rdb.Keys(ctx, e.prefix+":*:otp").Val(); len(keys) != 1 || !strings.Contains(keys[0], handles["katherine"]["userhash"]) {
		t.Fatalf("OTP keys %v", keys)
	}
	// The mail throttle counted all five requests: three names, one client.
	if keys := e.rdb.Keys(ctx, e.prefix+":throttle:mail:user:*").Val(); len(keys) != 3 {
		t.Fatalf("mail throttle user keys %v", keys)
	}
	if n, _ := e.rdb.Get(ctx, e.prefix+":throttle:mail:ip:127.0.0.1").Int(); n != len(names) {
		t.Fatalf("mail throttle of the client counts %d, want %d", n, len(names))
	}

	// The code step answers alike too: a wrong code, and a weak password.
	otp := mailedOTP(t, e.lastMail())
	wrong := fmt.Sprintf("%06d", (atoi(otp)+1)%1000000)
	code := func(name, otp, password string) (reply, string) {
		h := handles[name]
		r, page, _ := resetPage(e, "step", "code", "username", name, "userhash", h["userhash"], "reqid", h["reqid"],
			"otp", otp, "password", password)
		return r, page
	}
	for _, tc := range []struct {
		name, password string
		status         int
		text           string
	}{
		{"wrong code", "a-good-new-password", 401, "That code is wrong or has expired"},
		{"short password", "short", 422, "Choose a password of 8 to 1024 characters"},
		{"the username as password", "", 422, "Choose a password of 8 to 1024 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pages []string
			for _, name := range []string{"katherine", "nobody-here", "no-mail-user"} {
				pw := tc.password
				if pw == "" {
					pw = " " + strings.ToUpper(name)
				}
				r, page := code(name, wrong, pw)
				if r.status != tc.status || !strings.Contains(page, tc.text) {
					t.Fatalf("%s: %d\n%s", name, r.status, r.body)
				}
				pages = append(pages, page)
			}
			if pages[1] != pages[0] || pages[2] != pages[0] {
				t.Fatalf("the pages differ:\n%s", strings.Join(pages, "\n---\n"))
			}
		})
	}
	// Her code still works (a weak password spends no guess of it).
	r, _ := code("katherine", otp, "katherine-new-password")
	if r.status != 200 || !strings.Contains(string(r.body), "Password changed") {
		t.Fatalf("reset with the mailed code: %d\n%s", r.status, r.body)
	}
	e.login(e.client(), "katherine", "katherine-new-password")
}
