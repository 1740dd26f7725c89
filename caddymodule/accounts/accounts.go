// Package accounts keeps user accounts in PostgreSQL, in a schema of their
// own that it creates and migrates at start.
package accounts

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/authgate/authgate/caddymodule/store"
)

// User is one account. PasswordHash never leaves the server.
type User struct {
	ID           int64
	Userhash     string
	Username     string
	Email        string
	PasswordHash string
	CreatedAt    time.Time
	// UpdatedAt is when the password last changed (or the account was made).
	UpdatedAt time.Time
}

var (
	// ErrNotFound is returned when no account matches.
	ErrNotFound = errors.New("no such account")
	// ErrExists is returned when the username is taken (in any letter case).
	ErrExists = errors.New("account exists")
)

//go:embed migrations/*.sql
var migrations embed.FS

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidSchema tells whether name is usable as the accounts schema. Names are
// kept to plain lower-case identifiers so they need no quoting surprises.
func ValidSchema(name string) bool { return schemaName.MatchString(name) }

// Store reads and writes accounts. It is safe for concurrent use.
type Store struct {
	db     *sql.DB
	schema string
	q      queries
}

type queries struct {
	insert, byName, byID, byHash, setPassword, secret, saveSecret, count string
}

// New returns a store over db using the given schema. Call Migrate before use.
func New(db *sql.DB, schema string) (*Store, error) {
	if !ValidSchema(schema) {
		return nil, fmt.Errorf("invalid schema name %q", schema)
	}
	t := pq.QuoteIdentifier(schema) + ".users"
	cols := "id, userhash, username, coalesce(email, ''), password_hash, created_at, updated_at"
	return &Store{db: db, schema: schema, q: queries{
		insert: "INSERT INTO " + t + " (userhash, username, email, password_hash) VALUES ($1, $2, nullif($3, ''), $4) " +
			"ON CONFLICT DO NOTHING RETURNING " + cols,
		byName:      "SELECT " + cols + " FROM " + t + " WHERE lower(username) = lower($1)",
		byID:        "SELECT " + cols + " FROM " + t + " WHERE id = $1",
		byHash:      "SELECT " + cols + " FROM " + t + " WHERE userhash = $1",
		setPassword: "UPDATE " + t + " SET password_hash = $2, updated_at = now() WHERE id = $1",
		count:       "SELECT count(*) FROM " + t,
		secret:      "SELECT value FROM " + pq.QuoteIdentifier(schema) + ".secrets WHERE name = $1",
		saveSecret: "INSERT INTO " + pq.QuoteIdentifier(schema) + ".secrets (name, value) VALUES ($1, $2) " +
			"ON CONFLICT (name) DO NOTHING",
	}}, nil
}

// Migrate creates the schema and applies the migrations it lacks. It holds a
// transaction-scoped advisory lock, so instances starting at once take turns
// and the later ones find the work done.
func (s *Store) Migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrating: %w", store.PostgresErr(err))
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "authgate.migrate."+s.schema); err != nil {
		return fmt.Errorf("migration lock: %w", store.PostgresErr(err))
	}
	schema := pq.QuoteIdentifier(s.schema)
	if _, err := tx.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema); err != nil {
		return fmt.Errorf("creating schema %s: %w", s.schema, err)
	}
	if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+schema+
		".schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return fmt.Errorf("creating migrations table: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM "+schema+".schema_migrations").Scan(&current); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	// Unqualified names in the migration files resolve into our schema.
	if _, err := tx.ExecContext(ctx, "SET LOCAL search_path TO "+schema); err != nil {
		return err
	}
	for _, name := range names {
		version, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(name, "migrations/"), "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: bad name", name)
		}
		if version <= current {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", version); err != nil {
			return fmt.Errorf("recording migration %s: %w", name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing migrations: %w", store.PostgresErr(err))
	}
	return nil
}

// Create inserts a new account. It returns ErrExists when the name is taken,
// also when a concurrent Create of the same name won the race.
func (s *Store) Create(ctx context.Context, username, email, passwordHash string) (User, error) {
	userhash, err := newUserhash()
	if err != nil {
		return User{}, err
	}
	u, err := s.one(ctx, s.q.insert, userhash, username, email, passwordHash)
	if errors.Is(err, ErrNotFound) {
		return User{}, ErrExists
	}
	return u, err
}

// ByUsername finds an account by name, ignoring letter case.
func (s *Store) ByUsername(ctx context.Context, username string) (User, error) {
	return s.one(ctx, s.q.byName, username)
}

// ByID finds an account by its numeric id.
func (s *Store) ByID(ctx context.Context, id int64) (User, error) {
	return s.one(ctx, s.q.byID, id)
}

// ByUserhash finds an account by its opaque userhash.
func (s *Store) ByUserhash(ctx context.Context, userhash string) (User, error) {
	return s.one(ctx, s.q.byHash, userhash)
}

// SetPassword replaces the stored hash of an account.
func (s *Store) SetPassword(ctx context.Context, id int64, passwordHash string) error {
	res, err := s.db.ExecContext(ctx, s.q.setPassword, id, passwordHash)
	if err != nil {
		return fmt.Errorf("updating password: %w", store.PostgresErr(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// Count returns how many accounts exist.
func (s *Store) Count(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.q.count).Scan(&n)
	return n, store.PostgresErr(err)
}

// Secret returns the named server secret, making a random one of size bytes
// the first time. Every instance sharing the database gets the same value.
func (s *Store) Secret(ctx context.Context, name string, size int) ([]byte, error) {
	fresh := make([]byte, size)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	if _, err := s.db.ExecContext(ctx, s.q.saveSecret, name, fresh); err != nil {
		return nil, fmt.Errorf("saving secret %s: %w", name, store.PostgresErr(err))
	}
	var value []byte
	if err := s.db.QueryRowContext(ctx, s.q.secret, name).Scan(&value); err != nil {
		return nil, fmt.Errorf("reading secret %s: %w", name, store.PostgresErr(err))
	}
	return value, nil
}

func (s *Store) one(ctx context.Context, query string, args ...any) (User, error) {
	var u User
	err := s.db.QueryRowContext(ctx, query, args...).Scan(
		&u.ID, &u.Userhash, &u.Username, &u.Email, &u.PasswordHash, &u.CreatedAt, &u.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("querying accounts: %w", store.PostgresErr(err))
	}
	return u, nil
}

// newUserhash makes the opaque, stable handle of a new account: random, so
// that it reveals nothing about the username, and hex, so that it can sit
// inside a Redis hash tag.
func newUserhash() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
