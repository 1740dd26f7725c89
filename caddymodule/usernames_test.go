package caddymodule

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/testenv"
)

// upstreamSees returns the Remote-User and Remote-User-Id the upstream gets
// with the session token ssid.
func (e *env) upstreamSees(ssid string) (user string, id int64) {
	e.t.Helper()
	r := e.do(nil, "GET", "/app", nil, "Authorization", "Bearer "+ssid)
	if r.status != 200 {
		e.t.Fatalf("gate: %d %s", r.status, r.body)
	}
	user, _ = r.json["user"].(string)
	id, _ = strconv.ParseInt(r.json["user_id"].(string), 10, 64)
	return user, id
}

// throttleCounts returns the values of the login throttle's username keys,
// sorted, and the client IP's count.
func (e *env) throttleCounts() (users []string, ip string) {
	e.t.Helper()
	ctx := context.Background()
	for _, k := range e.rdb.Keys(ctx, e.prefix+":throttle:login:user:*").Val() {
		users = append(users, e.rdb.Get(ctx, k).Val())
	}
	slices.Sort(users)
	return users, e.rdb.Get(ctx, e.prefix+":throttle:login:ip:127.0.0.1").Val()
}

// Look-alike names are one name in every front door, stored and sent
// upstream in their canonical form; names that would mislead are refused.
func TestUsernamesAreCanonical(t *testing.T) {
	e := newRESTEnv(t, "")
	e.register("ÉLODIE", "elodie-secret-words", "elodie@example.com")
	e.register("Admin", "admin-secret-words", "admin@example.com")
	if got := e.scalar("SELECT string_agg(username || '=' || canonical, ' ' ORDER BY id) FROM authgate.users"); got != "élodie=élodie admin=admin" {
		t.Fatalf("stored %v", got)
	}

	// Every spelling logs in to the one account, which the upstream sees by
	// its canonical name.
	for _, name := range []string{"élodie", "e\u0301lodie", "Élodie", "E\u0301LODIE", "ÉLODIE"} {
		ssid := e.login(e.client(), name, "elodie-secret-words").str("ssid")
		if user, _ := e.upstreamSees(ssid); user != "élodie" {
			t.Fatalf("login as %q: Remote-User %q", name, user)
		}
	}
	for _, name := range []string{"ＡＤＭＩＮ", "ａｄｍｉｎ", "ADMIN", "ADMİN"} {
		ssid := e.login(e.client(), name, "admin-secret-words").str("ssid")
		if user, _ := e.upstreamSees(ssid); user != "admin" {
			t.Fatalf("login as %q: Remote-User %q", name, user)
		}
	}
	r := e.do(nil, "POST", "/api/user/account", nil, "Authorization", basic("ＡＤＭＩＮ", "admin-secret-words"))
	if e.expectREST(r, 200, true, "Successful login"); r.json["username"] != "admin" {
		t.Fatalf("REST login: %s", r.body)
	}
	c := e.client()
	r = e.do(c, "POST", "/auth/login", formBody("username", "Élodie", "password", "elodie-secret-words"),
		"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html")
	if r.status != 303 {
		t.Fatalf("login page: %d %s", r.status, r.body)
	}

	// A look-alike of a taken name is taken, in every front door.
	for _, name := range []string{"ａｄｍｉｎ", "ADMİN", "e\u0301lodie"} {
		r = e.do(nil, "POST", "/auth/users/register", map[string]any{"username": name, "password": "another-secret-words"})
		e.expect(r, 200, false, "ERROR_LOGIN_WITH_PASSWORD")
	}
	r = e.do(nil, "PUT", "/api/user/account/"+url.PathEscape("ＡＤＭＩＮ"), `{"password":"another-secret-words","email":"x@example.com"}`)
	e.expectREST(r, 200, false, "User already exists")
	r = e.do(nil, "POST", "/auth/register", formBody("username", "Ａdmin", "password", "another-secret-words"),
		"Content-Type", "application/x-www-form-urlencoded")
	if r.status != 409 || !strings.Contains(string(r.body), "That username is taken") {
		t.Fatalf("register page: %d %s", r.status, r.body)
	}
	// Names that would mislead a person or a parser are refused.
	for _, name := range []string{"\u0430dmin", "admin,root", "admin;root", `admin"`, "<admin>", "admin\u0336", " admin"} {
		r = e.do(nil, "POST", "/auth/users/register", map[string]any{"username": name, "password": "another-secret-words"})
		e.expect(r, 400, false, "INVALID_INPUT")
	}
	r = e.do(nil, "PUT", "/api/user/account/"+url.PathEscape("\u0430dmin"), `{"password":"another-secret-words","email":"x@example.com"}`)
	e.expectREST(r, 200, false, "Invalid username or email")
	if n := e.scalar("SELECT count(*) FROM authgate.users"); n != int64(2) {
		t.Fatalf("%v accounts", n)
	}

	// Failures count against the canonical name, whatever the spelling; a
	// refused name is an unknown user, and counts under its own bytes.
	before, _ := e.throttleCounts()
	for _, name := range []string{"ADMIN", "ａｄｍｉｎ"} {
		r = e.do(nil, "POST", "/auth/users/login", map[string]any{"username": name, "password": "wrong-secret-words"})
		e.expect(r, 401, false, "INVALID_PASSWORD")
	}
	r = e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "\u0430dmin", "password": "admin-secret-words"})
	e.expect(r, 401, false, "REGISTER_FOR_A_PASSWORD")
	if users, _ := e.throttleCounts(); len(before) != 0 || !slices.Equal(users, []string{"1", "2"}) {
		t.Fatalf("throttle counts %v, then %v", before, users)
	}

	// Recovery by name (both dialects) and the CLI find the account too.
	r = e.do(nil, "POST", "/auth/users/requestotp", map[string]any{"username": "ＡＤＭＩＮ"})
	e.expect(r, 200, true, "")
	if !strings.Contains(e.lastMail(), "To: <admin@example.com>") {
		t.Fatalf("OTP mail:\n%s", e.lastMail())
	}
	r = e.do(nil, "POST", "/api/user/password/"+url.PathEscape("E\u0301LODIE"), `{"uid_type":"username"}`)
	e.expectREST(r, 200, true, "Password recovery email sent")
	if !strings.Contains(e.lastMail(), "To: <elodie@example.com>") {
		t.Fatalf("reset mail:\n%s", e.lastMail())
	}
	r = e.do(nil, "POST", "/api/user/password/"+url.PathEscape("\u0430dmin"), `{"uid_type":"username"}`)
	e.expectREST(r, 200, false, "User not found")
	out, err := e.cli("", "sessions", "ＡＤＭＩＮ")
	if err != nil || !strings.Contains(out, "live session(s) of admin") {
		t.Fatalf("sessions: %v\n%s", err, out)
	}
	out, err = e.cli("new-admin-secret-words\n", "passwd", "Admin")
	if err != nil || !strings.Contains(out, "password of admin changed") {
		t.Fatalf("passwd: %v\n%s", err, out)
	}
	e.login(e.client(), "admin", "new-admin-secret-words")
	if _, err = e.cli("cli-secret-words\n", "useradd", "Ｂｅｌｌａ"); err != nil {
		t.Fatal(err)
	}
	if got := e.scalar("SELECT username FROM authgate.users ORDER BY id DESC LIMIT 1"); got != "bella" {
		t.Fatalf("useradd stored %v", got)
	}
}

// oldSchema makes the accounts schema as the first release left it
// (migration 1 alone) and inserts accounts as it did: name as typed, unique
// only in lower case. It returns their ids by name.
func oldSchema(t *testing.T, dsn string, names ...string) map[string]int64 {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	body, err := os.ReadFile("accounts/migrations/001_users.sql")
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE SCHEMA authgate",
		"SET LOCAL search_path TO authgate",
		"CREATE TABLE schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
		string(body),
		"INSERT INTO schema_migrations (version) VALUES (1)",
	} {
		if _, err := tx.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	ids := map[string]int64{}
	created := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, name := range names {
		hash, err := bcrypt.GenerateFromPassword([]byte(oldPassword(name)), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		var id int64
		err = tx.QueryRow("INSERT INTO users (userhash, username, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
			strings.Repeat("0", 31)+strconv.Itoa(i), name, string(hash), created.AddDate(0, i, 0)).Scan(&id)
		if err != nil {
			t.Fatalf("inserting %q: %v", name, err)
		}
		ids[name] = id
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// oldPassword is each old account's own password.
func oldPassword(name string) string { return "old password of " + name }

// Accounts made before usernames were canonical get their canonical names
// at the upgrade; where several share one, one keeps it and the others log
// in by their exact old names; refused names can no longer log in. Every
// such account is reported at start.
func TestUsernameMigration(t *testing.T) {
	dsn := testenv.PostgresURL(t)
	ids := oldSchema(t, dsn,
		"ａｄｍｉｎ",        // oldest of the "admin" group
		"admin",        // named exactly so: keeps it, the upstream knows it as admin
		"ADMİN",        // Turkish capital I
		"ÉLODIE",       // oldest of the "élodie" group: gets it
		"e\u0301lodie", // decomposed
		"Bob",
		"carol",
		"admin,root", // refused: a list to whatever reads Remote-User
		"\u0430dmin", // refused: Cyrillic а in a Latin name
	)
	e := newEnv(t, options{postgres: dsn})

	rows, err := e.db.Query("SELECT id, username, coalesce(canonical, '-') FROM authgate.users ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var id int64
		var name, canonical string
		if err := rows.Scan(&id, &name, &canonical); err != nil {
			t.Fatal(err)
		}
		got = append(got, name+"="+canonical)
	}
	rows.Close()
	want := []string{"ａｄｍｉｎ=-", "admin=admin", "ADMİN=-", "élodie=élodie", "e\u0301lodie=-", "bob=bob", "carol=carol", "admin,root=-", "\u0430dmin=-"}
	if !slices.Equal(got, want) {
		t.Fatalf("accounts after the upgrade:\n%q\nwant\n%q", got, want)
	}

	// Each account logs in with its own password: canonical names by any
	// spelling, the others by their exact old names.
	for _, tc := range []struct{ typed, owner, upstream string }{
		{"admin", "admin", "admin"},
		{"ADMIN", "admin", "admin"},
		{"ａｄｍｉｎ", "ａｄｍｉｎ", "ａｄｍｉｎ"},
		{"ADMİN", "ADMİN", "ADMİN"},
		{"ÉLODIE", "ÉLODIE", "élodie"},
		{"élodie", "ÉLODIE", "élodie"},
		{"e\u0301lodie", "e\u0301lodie", "e\u0301lodie"},
		{"bob", "Bob", "bob"},
		{"BOB", "Bob", "bob"},
		{"carol", "carol", "carol"},
	} {
		t.Run("login as "+tc.typed, func(t *testing.T) {
			e := e.in(t)
			ssid := e.login(e.client(), tc.typed, oldPassword(tc.owner)).str("ssid")
			if user, id := e.upstreamSees(ssid); user != tc.upstream || id != ids[tc.owner] {
				t.Fatalf("upstream sees %q (%d), want %q (%d)", user, id, tc.upstream, ids[tc.owner])
			}
		})
	}
	for _, name := range []string{"admin,root", "\u0430dmin"} {
		r := e.do(nil, "POST", "/auth/users/login", map[string]any{"username": name, "password": oldPassword(name)})
		e.expect(r, 401, false, "REGISTER_FOR_A_PASSWORD")
	}
	// Logins re-hashed the imported bcrypt hashes: the upgrade left them valid.
	if n := e.scalar("SELECT count(*) FROM authgate.users WHERE password_hash LIKE '$argon2id$%'"); n != int64(7) {
		t.Fatalf("%v re-hashed accounts, want 7", n)
	}

	// Reported at start: one line per conflict and per refused name, and
	// the gauge.
	logText, err := os.ReadFile(e.logFile)
	if err != nil {
		t.Fatal(err)
	}
	var conflicts, refused []map[string]any
	for _, line := range strings.Split(string(logText), "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) != nil || entry["level"] != "warn" {
			continue
		}
		msg, _ := entry["msg"].(string)
		switch {
		case strings.HasPrefix(msg, "username conflict"):
			conflicts = append(conflicts, entry)
		case strings.HasPrefix(msg, "username refused"):
			refused = append(refused, entry)
		}
	}
	if len(conflicts) != 2 || len(refused) != 2 {
		t.Fatalf("%d conflict and %d refused lines in the log:\n%s", len(conflicts), len(refused), logText)
	}
	ids2 := func(names ...string) []any {
		var out []any
		for _, n := range names {
			out = append(out, float64(ids[n]))
		}
		return out
	}
	for i, want := range []struct {
		canonical string
		holder    string
		ids       []any
	}{
		{"admin", "admin", ids2("ａｄｍｉｎ", "ADMİN")},
		{"élodie", "ÉLODIE", ids2("e\u0301lodie")},
	} {
		c := conflicts[i]
		if c["canonical"] != want.canonical || c["holder_id"] != float64(ids[want.holder]) || !slices.Equal(c["user_ids"].([]any), want.ids) {
			t.Errorf("conflict line %v, want %+v", c, want)
		}
	}
	for i, name := range []string{"admin,root", "\u0430dmin"} {
		if refused[i]["user_id"] != float64(ids[name]) || refused[i]["username"] != name {
			t.Errorf("refused line %v, want %q", refused[i], name)
		}
	}
	m := metricValues(t)
	if m["authgate_username_conflicts/taken"] != 3 || m["authgate_username_conflicts/refused"] != 2 {
		t.Fatalf("gauge: taken %v, refused %v", m["authgate_username_conflicts/taken"], m["authgate_username_conflicts/refused"])
	}

	// A session of a refused account made before the upgrade passes no
	// more once an instance starts (here the CLI's).
	store := sessions.New(e.rdb, sessions.Config{Prefix: e.prefix, TTL: time.Hour, MaxPerUser: 10})
	var hash string
	if err := e.db.QueryRow("SELECT userhash FROM authgate.users WHERE id = $1", ids["admin,root"]).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	token, _, err := store.Create(context.Background(), sessions.Session{UserID: ids["admin,root"], Userhash: hash, Username: "admin,root"})
	if err != nil {
		t.Fatal(err)
	}
	if user, _ := e.upstreamSees(token); user != "admin,root" {
		t.Fatalf("old session: %q", user)
	}
	if out, err := e.cli("", "sessions", "carol"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	e.expect(e.do(nil, "GET", "/app", nil, "Authorization", "Bearer "+token), 401, false, "PLEASE_LOGIN")
	if keys := e.rdb.Keys(context.Background(), e.prefix+":{"+hash+"}*").Val(); len(keys) != 0 {
		t.Fatalf("sessions left: %v", keys)
	}
	// The migration ran once: a restart renames nothing.
	if n := e.scalar("SELECT count(*) FROM authgate.schema_migrations"); n != int64(migrationCount(t)) {
		t.Fatalf("%v migrations recorded", n)
	}
}
