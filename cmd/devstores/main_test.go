package main

import (
	"context"
	"database/sql"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/redis/go-redis/v9"
)

func TestRunStartsAndStopsStores(t *testing.T) {
	for _, v := range []string{"AUTHGATE_POSTGRES", "AUTHGATE_REDIS", "AUTHGATE_MAIL_DIR"} {
		t.Setenv(v, "")
	}
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "env")
	script := `printf '%s\n%s\n%s\n' "$AUTHGATE_POSTGRES" "$AUTHGATE_REDIS" "$AUTHGATE_MAIL_DIR" > "$0"; exit 3`
	if got := run([]string{"-dir", dir, "--", "sh", "-c", script, out}, io.Discard); got != 3 {
		t.Errorf("exit status %d, want the command's 3", got)
	}

	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(env) != 3 || !strings.HasPrefix(env[0], "postgres://") || !strings.HasPrefix(env[1], "redis://") {
		t.Fatalf("command saw %q", env)
	}
	if want := filepath.Join(dir, "mail"); env[2] != want {
		t.Errorf("AUTHGATE_MAIL_DIR=%s, want %s", env[2], want)
	}
	if _, err := os.Stat(filepath.Join(dir, "postgres", "PG_VERSION")); err != nil {
		t.Errorf("no cluster kept in -dir: %v", err)
	}

	// Both servers are gone.
	db, err := sql.Open("postgres", env[0]+"&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Ping() == nil {
		t.Error("postgres still runs")
	}
	opt, err := redis.ParseURL(env[1])
	if err != nil {
		t.Fatal(err)
	}
	opt.MaxRetries = -1
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if rdb.Ping(context.Background()).Err() == nil {
		t.Error("redis still runs")
	}
}

func TestRunForwardsSignals(t *testing.T) {
	// Given stores: none is started.
	t.Setenv("AUTHGATE_POSTGRES", "postgres://given")
	t.Setenv("AUTHGATE_REDIS", "redis://given")
	ready := filepath.Join(t.TempDir(), "ready")
	script := `[ "$AUTHGATE_POSTGRES" = postgres://given ] || exit 1
trap 'exit 5' TERM
touch "$0"
sleep 30 & wait`
	go func() {
		for t.Context().Err() == nil {
			if _, err := os.Stat(ready); err == nil {
				syscall.Kill(os.Getpid(), syscall.SIGTERM)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if got := run([]string{"--", "sh", "-c", script, ready}, io.Discard); got != 5 {
		t.Errorf("exit status %d, want 5 from the command's SIGTERM trap", got)
	}
}
