package caddymodule

import (
	"errors"
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

// Caddy's reload runs the old config's Cleanup without waiting for its
// requests: the hashing workers and the stores of a config stay until its
// last account request has been answered, so that a login under way
// across a reload is answered as it would have been without it.
func TestCleanupWaitsForAccountRequests(t *testing.T) {
	for _, tc := range []struct {
		name     string
		underWay int
	}{
		{name: "none under way: at once", underWay: 0},
		{name: "one under way: when it ends", underWay: 1},
		{name: "two under way: when both have", underWay: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := password.NewHasher(password.DefaultParams(), 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = h.Close() })
			released := 0
			a := &App{hasher: h}
			a.stores.release = []func(){func() { released++ }}
			var done []func()
			for range tc.underWay {
				done = append(done, a.serving())
			}
			if err := a.Cleanup(); err != nil {
				t.Fatal(err)
			}
			for i, end := range done {
				if _, err := h.Hash(t.Context(), "a fine long password"); err != nil {
					t.Fatalf("request %d under way: hashing after Cleanup: %v", i+1, err)
				}
				if released != 0 {
					t.Fatalf("request %d under way: the stores released", i+1)
				}
				end()
			}
			if _, err := h.Hash(t.Context(), "a fine long password"); !errors.Is(err, password.ErrClosed) {
				t.Errorf("hashing with no request left: %v, want ErrClosed", err)
			}
			if released != 1 {
				t.Errorf("the stores released %d times, want once", released)
			}
		})
	}
}
