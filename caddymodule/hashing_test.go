package caddymodule

import (
	"runtime"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/authgate/authgate/caddymodule/password"
)

// The password hashing workers belong to the authgate app: they start with
// it and stop at its Cleanup, which waits for them; the app the CLI opens
// stops its own when the command ends. The process's GOMAXPROCS stays as
// the host set it.
func TestHashWorkersBelongToTheApp(t *testing.T) {
	procs, before := runtime.GOMAXPROCS(0), password.Workers()
	e := newEnv(t, options{global: "hash_concurrency 1"})
	if got := password.Workers(); got != before+1 {
		t.Fatalf("%d hashing workers with the app started, want %d", got, before+1)
	}
	e.register("hasher", "a fine long password", "hasher@example.com")
	e.login(e.client(), "hasher", "a fine long password")
	if hash := e.passwordHash("hasher"); !strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("stored hash %q", hash)
	}
	if n := e.sessionCount(); n != 1 {
		t.Fatalf("%d sessions in Redis, want 1", n)
	}

	out, err := e.cli("", "sessions", "hasher")
	if err != nil || !strings.Contains(out, "1 live session(s) of hasher") {
		t.Fatalf("sessions: %v\n%s", err, out)
	}
	if got := password.Workers(); got != before+1 {
		t.Errorf("%d hashing workers after the CLI command, want %d: its app's outlived it", got, before+1)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS %d with the app started, was %d", got, procs)
	}

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := password.Workers(); got != before {
		t.Errorf("%d hashing workers after the config stopped, want %d", got, before)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS %d after the app stopped, was %d", got, procs)
	}
}
