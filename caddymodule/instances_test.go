package caddymodule

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/testenv"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// caddyBinary builds cmd/caddy once per test process: a second instance must
// be a process of its own, as in production.
func caddyBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "authgate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "caddy")
		cmd := exec.Command("go", "build", "-o", binary, "github.com/authgate/authgate/cmd/caddy")
		cmd.Env = append(os.Environ(), "GOPRIVATE=github.com/authgate/authgate", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// secondInstance runs the real binary against the env's stores, as another
// Caddy sharing the same PostgreSQL and Redis, and returns its base URL and
// the file its log goes to. Its gate answers with the user's name.
func (e *env) secondInstance(site string) (base, logFile string) {
	e.t.Helper()
	return e.instance(site, `respond "{http.auth.user.id}" 200`)
}

// proxyInstance is secondInstance with a gate in front of the env's own
// upstream, as a second instance behind a load balancer has.
func (e *env) proxyInstance(site string) (base, logFile string) {
	e.t.Helper()
	return e.instance(site, "reverse_proxy "+e.upstreamAddr)
}

// instance runs the real binary with the site's authgate lines and the
// handler after it.
func (e *env) instance(site, handler string) (base, logFile string) {
	e.t.Helper()
	bin := caddyBinary(e.t)
	port := testenv.FreePort(e.t)
	dir := e.t.TempDir()
	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
	authgate {
		postgres %s
		%s
		redis_prefix %s
		mail_dir %s
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	authgate {
		%s
	}
	%s
}
`, e.pg, e.redis.Directive(), e.prefix, e.mailDir, port, site, handler)
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	logFile = filepath.Join(dir, "caddy.log")
	log, _ := os.Create(logFile)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		log.Close()
	})
	base = fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(testenv.Patience)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			return base, logFile
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logFile)
			e.t.Fatalf("second instance did not start: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logged counts the lines of a log file that contain text.
func logged(t testing.TB, file, text string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), text)
}

// whoOn asks an instance's gate who the bearer of ssid is ("" when refused).
func whoOn(t *testing.T, base, ssid string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/app", nil)
	req.Header.Set("Authorization", "Bearer "+ssid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// Sessions ended on one instance are refused by another on its very next
// request, although the other keeps validated sessions in memory.
func TestRevocationAcrossInstances(t *testing.T) {
	e := newEnv(t, options{site: "account_api /api/user"})
	b, bLog := e.secondInstance("account_api /api/user")
	e.register("nina", "nina-password", "nina@example.com")

	// Logout on A.
	ssid := e.login(e.client(), "nina", "nina-password").str("ssid")
	for range 3 { // the first fills B's cache, the others are served from it
		if status, who := whoOn(t, b, ssid); status != 200 || who != "nina" {
			t.Fatalf("B before logout: %d %q", status, who)
		}
	}
	e.expect(e.do(nil, "POST", "/auth/users/logout", nil, "Authorization", "Bearer "+ssid), 200, true, "LOGOUT_OK")
	if status, _ := whoOn(t, b, ssid); status != 401 {
		t.Fatalf("B after logout on A: %d", status)
	}

	// Password change on A ends the other sessions on B.
	c := e.client()
	keep := e.login(c, "nina", "nina-password").str("ssid")
	other := e.login(e.client(), "nina", "nina-password").str("ssid")
	for _, s := range []string{keep, other, keep, other} {
		if status, _ := whoOn(t, b, s); status != 200 {
			t.Fatalf("B before the password change: %d", status)
		}
	}
	r := e.do(c, "PUT", "/api/user/password", `{"password":"nina-new-password"}`)
	e.expectREST(r, 200, true, "Password changed")
	if status, _ := whoOn(t, b, other); status != 401 {
		t.Fatalf("B after password change on A, other session: %d", status)
	}
	if status, who := whoOn(t, b, keep); status != 200 || who != "nina" {
		t.Fatalf("B after password change on A, the changing session: %d %q", status, who)
	}

	// A dropped subscription drops the cache: a session ended without any
	// announcement (as if the message were lost) is refused all the same.
	if status, _ := whoOn(t, e.base, keep); status != 200 { // in A's cache too
		t.Fatalf("A before the kill: %d", status)
	}
	ctx := context.Background()
	const cacheOn = `session cache on`
	aOn, bOn := logged(t, e.logFile, cacheOn), logged(t, bLog, cacheOn)
	if err := e.rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	// Each watcher drops its cache when it sees its subscription end, and
	// starts empty once it has subscribed again: wait until both have.
	testenv.WaitFor(t, "both watchers to subscribe again", func() bool {
		return logged(t, e.logFile, cacheOn) > aOn && logged(t, bLog, cacheOn) > bOn
	})
	if stored := e.storedSessions(); len(stored) != 1 {
		t.Fatalf("sessions %v", stored)
	}
	key, field, _ := sessions.Where(e.prefix, keep)
	e.rdb.HDel(ctx, key, field) // no announcement
	if status, _ := whoOn(t, b, keep); status != 401 {
		t.Fatalf("B served a session deleted while its subscription was down: %d", status)
	}
	if status, _ := whoOn(t, e.base, keep); status != 401 {
		t.Fatalf("A served a session deleted while its subscription was down: %d", status)
	}
}
