package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	_ "github.com/lib/pq" // the database/sql driver "postgres"
)

// Postgres is a PostgreSQL server on 127.0.0.1 whose cluster has a
// superuser and a database both named authgate, with trust authentication.
// It runs in its own process group, so Pause also freezes its backends.
type Postgres struct {
	server
}

// StartPostgres starts PostgreSQL on a free loopback port with its cluster
// in dir, running initdb first unless dir already holds a cluster (so a data
// directory survives restarts). As root it runs PostgreSQL as the postgres
// user, which then must be able to reach dir: missing search permission for
// others is added to dir's ancestors.
func StartPostgres(dir string) (*Postgres, error) { return StartPostgresOn(dir, 0) }

// StartPostgresOn is StartPostgres on the given port; 0 picks a free one.
func StartPostgresOn(dir string, port int) (*Postgres, error) {
	bin, err := postgresBin()
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("postgres data directory: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("postgres data directory: %w", err)
		}
		if err := makeTraversable(filepath.Dir(dir)); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		if err := initdb(bin, dir, cred); err != nil {
			return nil, err
		}
	}
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}

	p := &Postgres{server{
		name:    "postgres",
		port:    port,
		logPath: filepath.Join(dir, "postgres.log"),
		stopSig: syscall.SIGINT, // "fast" shutdown; SIGTERM would wait for clients to leave
		command: func() *exec.Cmd {
			return postgresCommand(cred, dir, filepath.Join(bin, "postgres"),
				"-D", dir,
				"-p", strconv.Itoa(port),
				"-c", "listen_addresses=127.0.0.1",
				"-c", "unix_socket_directories="+dir, // the default, /var/run/postgresql, may not exist or be ours
				// Throwaway data: durability only costs time.
				"-c", "fsync=off",
				"-c", "synchronous_commit=off",
				"-c", "full_page_writes=off",
				// Test packages run in parallel, each with its own pools.
				"-c", "max_connections=300",
			)
		},
	}}
	p.ready = func(ctx context.Context) error { return ping(ctx, p.dsn("postgres")) }
	if err := p.Start(); err != nil {
		return nil, err
	}
	if err := p.createDatabase(); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// URL returns the server's database authgate as a lib/pq URL.
func (p *Postgres) URL() string { return p.dsn("authgate") }

func (p *Postgres) dsn(database string) string {
	return fmt.Sprintf("postgres://authgate@127.0.0.1:%d/%s?sslmode=disable", p.port, database)
}

// createDatabase creates the database authgate unless a reused cluster
// has it already.
func (p *Postgres) createDatabase() error {
	db, err := sql.Open("postgres", p.dsn("postgres"))
	if err != nil {
		return err
	}
	defer db.Close()
	var exists bool
	if err := db.QueryRow(`SELECT EXISTS (SELECT FROM pg_database WHERE datname = 'authgate')`).Scan(&exists); err != nil {
		return fmt.Errorf("postgres: look for database authgate: %w", err)
	}
	if !exists {
		if _, err := db.Exec(`CREATE DATABASE authgate`); err != nil {
			return fmt.Errorf("postgres: create database authgate: %w", err)
		}
	}
	return nil
}

// ping connects to dsn and runs a query; a server that is starting up
// accepts connections before it can serve them.
func ping(ctx context.Context, dsn string) error {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.QueryRowContext(ctx, "SELECT 1").Err()
}

func initdb(bin, dir string, cred *syscall.Credential) error {
	cmd := postgresCommand(cred, dir, filepath.Join(bin, "initdb"),
		"-D", dir,
		"--username=authgate",
		"--auth=trust", // only reachable from loopback and a socket inside dir
		"--encoding=UTF8",
		"--locale=C",
		"--no-sync",
	)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", dir, err, out)
	}
	return nil
}

// postgresCommand returns a command running in dir as cred's user (nil: our
// own).
func postgresCommand(cred *syscall.Credential, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd
}

// postgresBin returns the directory of the newest PostgreSQL server
// binaries. Debian keeps them off PATH, in /usr/lib/postgresql/<version>/bin.
func postgresBin() (string, error) {
	paths, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	best, bestVersion := "", 0.0
	for _, path := range paths {
		bin := filepath.Dir(path)
		// Float, so that 9.6 sorts before 10.
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(bin)), 64)
		if err == nil && v > bestVersion {
			best, bestVersion = bin, v
		}
	}
	if best != "" {
		return best, nil
	}
	path, err := lookPath("postgres", "postgresql")
	if err != nil {
		return "", err
	}
	return filepath.Dir(path), nil
}

// postgresCredential returns the user to run PostgreSQL as: nil (ourselves)
// unless we are root, which PostgreSQL refuses to run as; then the postgres
// user that Debian's package creates.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL cannot run as root and there is no postgres user (%w); install it with: %s", err, aptInstall("postgresql"))
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user: gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// makeTraversable adds search permission for others to dir and each of its
// ancestors that lacks it, so that the postgres user can reach a data
// directory made by root (t.TempDir's parent, for one, is mode 0700). Search
// permission alone lets no one list or read anything.
func makeTraversable(dir string) error {
	for {
		info, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if info.Mode()&0o001 == 0 {
			if err := os.Chmod(dir, info.Mode()|0o001); err != nil {
				return fmt.Errorf("let the postgres user reach its data directory: %w", err)
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}
