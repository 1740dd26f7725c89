package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/testenv"
	"github.com/authgate/authgate/cmd/internal/demo"
)

// caddyBin is the binary of this package, built once by TestMain; buildErr
// says why it could not be built, and fails every test that needs it.
var (
	caddyBin string
	buildErr error
)

func TestMain(m *testing.M) {
	caddyBin, buildErr = buildCaddy()
	testenv.Main(m)
}

// buildCaddy builds this package, the real binary, into a new temporary
// directory. testenv.Main ends the process with os.Exit, so no code of
// ours runs after the tests: a small shell waits for this process to exit
// and removes the directory then.
func buildCaddy() (string, error) {
	dir, err := os.MkdirTemp("", "authgate-e2e-")
	if err != nil {
		return "", err
	}
	guard := exec.Command("sh", "-c", `while kill -0 "$1" 2>/dev/null; do sleep 0.5; done; rm -rf "$2"`,
		"sh", strconv.Itoa(os.Getpid()), dir)
	guard.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // not hit by a terminal's Ctrl-C
	if err := guard.Start(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("starting the clean-up of %s: %w", dir, err)
	}
	bin := filepath.Join(dir, "caddy")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = os.Environ()
	if os.Getenv("GOFLAGS") == "" {
		cmd.Env = append(cmd.Env, "GOFLAGS=-mod=mod")
	}
	if os.Getenv("GOPRIVATE") == "" {
		cmd.Env = append(cmd.Env, "GOPRIVATE=github.com/authgate/authgate")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -o %s .: %w\n%s", bin, err, out)
	}
	return bin, nil
}

// binary returns the path of the built binary, or fails the test.
func binary(t *testing.T) string {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("building the caddy binary: %v", buildErr)
	}
	return caddyBin
}

// runCLI runs the binary with args and extra environment, and returns its
// combined output; a non-zero exit fails the test.
func runCLI(t *testing.T, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("caddy %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestCLI(t *testing.T) {
	modules := strings.Fields(runCLI(t, nil, "list-modules"))
	for _, want := range []string{"authgate", "http.handlers.authgate"} {
		if !slices.Contains(modules, want) {
			t.Errorf("list-modules does not list %q", want)
		}
	}

	// Stores that are certainly not there (port 1 refuses): adapt and
	// validate must not need them.
	env := []string{
		"AUTHGATE_POSTGRES=postgres://authgate@127.0.0.1:1/authgate?sslmode=disable",
		"AUTHGATE_REDIS=redis://127.0.0.1:1/0",
		"AUTHGATE_MAIL_DIR=" + filepath.Join(t.TempDir(), "mail"),
	}
	const example = "../../Caddyfile.example"

	adapted := runCLI(t, env, "adapt", "--config", example)
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal([]byte(adapted), &cfg); err != nil {
		t.Fatalf("adapt printed no JSON config: %v\n%s", err, adapted)
	}
	if _, ok := cfg.Apps["authgate"]; !ok {
		t.Errorf("adapted config has no authgate app: %s", adapted)
	}
	if !strings.Contains(string(cfg.Apps["http"]), `"handler":"authgate"`) {
		t.Errorf("adapted config places no authgate handler: %s", cfg.Apps["http"])
	}

	out := runCLI(t, env, "validate", "--config", example)
	if !strings.Contains(out, "Valid configuration") {
		t.Errorf("validate did not say the configuration is valid:\n%s", out)
	}
}

// gate is the caddy binary running authgate in front of the demo app, over
// a fresh PostgreSQL database and its own Redis key prefix.
type gate struct {
	t       *testing.T
	base    string // http://127.0.0.1:port
	pg      string // the database's URL
	redis   testenv.Topology
	prefix  string // of every Redis key
	users   string // where the users dialect is: /auth, or the site's users_api
	mailDir string
	config  string // the Caddyfile, for the CLI
	log     string // the file caddy's output goes to
	db      *sql.DB
	rdb     redis.UniversalClient
}

// gateOption changes what startGate starts.
type gateOption func(*gateSetup)

type gateSetup struct {
	upstream http.Handler // default: the demo app
	site     string       // the site's authgate block; default: public /healthz
	usersAPI string       // users_api of the site, if any
	global   string       // more lines of the authgate global option
	redis    *testenv.Topology
	besides  *gate
	host     string // the site's host name; default: 127.0.0.1
}

// withUpstream puts h behind the gate instead of the demo app.
func withUpstream(h http.Handler) gateOption {
	return func(s *gateSetup) { s.upstream = h }
}

// withGlobal adds lines to the authgate global option.
func withGlobal(lines string) gateOption {
	return func(s *gateSetup) { s.global = lines }
}

// withRedis keeps the sessions in the Redis deployment tp; default: the
// shared single server.
func withRedis(tp testenv.Topology) gateOption {
	return func(s *gateSetup) { s.redis = &tp }
}

// besides makes the gate another instance beside other, as behind a load
// balancer: the same database, Redis deployment, key prefix and mail folder.
func besides(other *gate) gateOption {
	return func(s *gateSetup) { s.besides = other }
}

// withSite sets the lines of the site's authgate block.
func withSite(lines string) gateOption {
	return func(s *gateSetup) { s.site = lines }
}

// withUsersAPI mounts the users dialect at path (users_api), where the
// gate's helpers then call it.
func withUsersAPI(path string) gateOption {
	return func(s *gateSetup) { s.usersAPI = path }
}

// withHost names the site host (still served on 127.0.0.1): a site with a
// host name, such as passkeys need; localhost also counts as a secure
// context to browsers over plain HTTP.
func withHost(host string) gateOption {
	return func(s *gateSetup) { s.host = host }
}

// startGate starts the binary with a Caddyfile of its own, waits until it
// answers, and stops it when the test ends.
func startGate(t *testing.T, opts ...gateOption) *gate {
	t.Helper()
	setup := gateSetup{upstream: demo.Handler(), site: "public /healthz", host: "127.0.0.1"}
	for _, o := range opts {
		o(&setup)
	}
	bin := binary(t)
	g := &gate{t: t, users: "/auth"}
	if setup.usersAPI != "" {
		g.users = setup.usersAPI
		setup.site += "\n\t\tusers_api " + setup.usersAPI
	}
	dir := t.TempDir()
	if o := setup.besides; o != nil {
		g.pg, g.redis, g.prefix, g.mailDir = o.pg, o.redis, o.prefix, o.mailDir
	} else {
		g.pg = testenv.PostgresURL(t) // first: its database is dropped last
		g.redis = testenv.Topology{Name: "single", URL: testenv.RedisURL(t)}
		if setup.redis != nil {
			g.redis = *setup.redis
		}
		g.prefix = testenv.Prefix(t)
		g.mailDir = filepath.Join(dir, "mail")
	}

	upstream := httptest.NewServer(setup.upstream) // on 127.0.0.1
	t.Cleanup(upstream.Close)

	port := testenv.FreePort(t)
	g.base = fmt.Sprintf("http://%s:%d", setup.host, port)
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	authgate {
		postgres %q
		%s
		redis_prefix %q
		mail_dir %q
		%s
	}
}

%s {
	bind 127.0.0.1
	authgate {
		%s
	}
	reverse_proxy %s
}
`, g.pg, g.redis.Directive(), g.prefix, g.mailDir, setup.global, g.base, setup.site, upstream.Listener.Addr())
	config := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(config, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	g.config = config

	logPath := filepath.Join(dir, "caddy.log")
	g.log = logPath
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child has its own copy
	cmd := exec.Command(bin, "run", "--config", config, "--adapter", "caddyfile")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(testenv.Patience):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("caddy did not stop within %s of SIGINT", testenv.Patience)
		}
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			if len(log) > 8000 {
				log = log[len(log)-8000:]
			}
			t.Logf("caddy log (end):\n%s\nCaddyfile:\n%s", log, caddyfile)
		}
	})

	// Wait until authgate answers: Caddy serves as soon as its HTTP app
	// runs, and authgate's pages answer 503 until its stores are connected.
	// A timeout per try, so that a try that went astray is retried.
	client := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(testenv.Patience)
	for {
		resp, err := client.Get(g.base + g.users + "/users/settings/registrationstatus")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = errors.New(resp.Status)
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("caddy exited at start: %v\n%s", cmd.ProcessState, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("authgate does not answer on %s after %s: %v", g.base, testenv.Patience, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if g.db, err = sql.Open("postgres", g.pg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.db.Close() })
	g.rdb = testenv.RedisClient(t, g.redis)
	return g
}

// api posts a form to the users API and returns data.message of its
// success: "success" is true, or for a login the string "true".
func (g *gate) api(endpoint string, form url.Values) json.RawMessage {
	g.t.Helper()
	resp, err := http.PostForm(g.base+g.users+"/users/"+endpoint, form)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var env struct {
		Success any `json:"success"`
		Data    struct {
			Message json.RawMessage `json:"message"`
		} `json:"data"`
	}
	success := any(true)
	if endpoint == "login" {
		success = "true"
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Success != success || resp.StatusCode != http.StatusOK {
		g.t.Fatalf("users/%s: %s %s", endpoint, resp.Status, body)
	}
	return env.Data.Message
}

// register creates an account through the users API.
func (g *gate) register(username, password, email string) {
	g.t.Helper()
	msg := g.api("register", url.Values{"username": {username}, "password": {password}, "email": {email}})
	if string(msg) != `"USER_INSERT_OK"` {
		g.t.Fatalf("users/register %s: %s", username, msg)
	}
}

// login logs in through the users API and returns the session token.
func (g *gate) login(username, password string) string {
	g.t.Helper()
	var m struct {
		SSID string `json:"ssid"`
	}
	if err := json.Unmarshal(g.api("login", url.Values{"username": {username}, "password": {password}}), &m); err != nil || m.SSID == "" {
		g.t.Fatalf("users/login %s: no ssid (%v)", username, err)
	}
	return m.SSID
}

// sessionKey names where Redis keeps the session of token (see
// sessions.Where), for messages.
func (g *gate) sessionKey(token string) string {
	g.t.Helper()
	key, field, ok := sessions.Where(g.prefix, token)
	if !ok {
		g.t.Fatalf("session token %q is not <userhash>.<secret>", token)
	}
	return fmt.Sprintf("%s, field %x", key, field)
}

// sessionExists reports whether Redis holds the session of token.
func (g *gate) sessionExists(token string) bool {
	g.t.Helper()
	key, field, ok := sessions.Where(g.prefix, token)
	if !ok {
		g.t.Fatalf("session token %q is not <userhash>.<secret>", token)
	}
	n, err := g.rdb.HExists(context.Background(), key, field).Result()
	if err != nil {
		g.t.Fatal(err)
	}
	return n
}

// storedSession returns what Redis holds for the session of token (the
// zero Session when nothing).
func (g *gate) storedSession(token string) sessions.Session {
	g.t.Helper()
	_, field, ok := sessions.Where(g.prefix, token)
	if !ok {
		g.t.Fatalf("session token %q is not <userhash>.<secret>", token)
	}
	stored, err := sessions.Stored(context.Background(), g.rdb, g.prefix)
	if err != nil {
		g.t.Fatal(err)
	}
	for _, s := range stored {
		if s.ID == hex.EncodeToString([]byte(field)) {
			return s
		}
	}
	return sessions.Session{}
}

// sessionKeys lists the ids of every session Redis holds under the gate's
// prefix.
func (g *gate) sessionKeys() []string {
	g.t.Helper()
	stored, err := sessions.Stored(context.Background(), g.rdb, g.prefix)
	if err != nil {
		g.t.Fatal(err)
	}
	var ids []string
	for _, s := range stored {
		ids = append(ids, s.ID)
	}
	return ids
}

// passwordHash returns the stored hash of username's password.
func (g *gate) passwordHash(username string) string {
	g.t.Helper()
	var hash string
	err := g.db.QueryRow(`SELECT password_hash FROM authgate.users WHERE username = $1`, username).Scan(&hash)
	if err != nil {
		g.t.Fatalf("reading the account %s: %v", username, err)
	}
	return hash
}

// newestMail waits for the newest mail in the mail directory (hidden files
// are mails being written) and returns its To header and decoded body.
func (g *gate) newestMail() (to, body string) {
	g.t.Helper()
	var name string
	for deadline := time.Now().Add(testenv.Patience); ; time.Sleep(20 * time.Millisecond) {
		entries, _ := os.ReadDir(g.mailDir)
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") && e.Name() > name {
				name = e.Name() // names start with the time
			}
		}
		if name != "" {
			break
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("no mail in %s after %s", g.mailDir, testenv.Patience)
		}
	}
	f, err := os.Open(filepath.Join(g.mailDir, name))
	if err != nil {
		g.t.Fatal(err)
	}
	defer f.Close()
	msg, err := mail.ReadMessage(f)
	if err != nil {
		g.t.Fatalf("mail %s: %v", name, err)
	}
	if cte := msg.Header.Get("Content-Transfer-Encoding"); !strings.EqualFold(cte, "quoted-printable") {
		g.t.Fatalf("mail %s: Content-Transfer-Encoding %q, want quoted-printable", name, cte)
	}
	decoded, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		g.t.Fatalf("mail %s: decoding the body: %v", name, err)
	}
	return msg.Header.Get("To"), string(decoded)
}

var sixDigits = regexp.MustCompile(`\b[0-9]{6}\b`)

// otpFrom returns the one 6-digit code of a mail body.
func otpFrom(t *testing.T, body string) string {
	t.Helper()
	codes := sixDigits.FindAllString(body, -1)
	if len(codes) != 1 {
		t.Fatalf("want one 6-digit code in the mail, found %q in:\n%s", codes, body)
	}
	return codes[0]
}

// readable fails the test unless the page text holds every one of want.
func readable(t *testing.T, page string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Errorf("the page does not say %q; it shows:\n%s", w, page)
		}
	}
}

// foreignSite serves the page of another site, with a login form that posts to
// action.
func foreignSite(t *testing.T, action, username, password string) *httptest.Server {
	var page bytes.Buffer
	fmt.Fprintf(&page, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Another site</title></head>
<body>
<form method="post" action="%s">
<input type="hidden" name="username" value="%s">
<input type="hidden" name="password" value="%s">
<input type="hidden" name="redirect" value="/hello">
<button id="send" type="submit">Win a prize</button>
</form>
</body></html>
`, html.EscapeString(action), html.EscapeString(username), html.EscapeString(password))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page.Bytes())
	}))
	t.Cleanup(srv.Close)
	return srv
}
