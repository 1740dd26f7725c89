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
	"github.com/authgate/authgate/caddymodule/username"
)

// User is one account. PasswordHash never leaves the server. Username is
// the name the account goes by (Remote-User), its Canonical form, except for
// an account that kept its exact name (Canonical is then empty; see
// Unreconciled).
type User struct {
	ID           int64
	Userhash     string
	Username     string
	Canonical    string
	Email        string
	PasswordHash string
	CreatedAt    time.Time
	// UpdatedAt is when the password or the email address last changed (or
	// the account was made).
	UpdatedAt time.Time
}

var (
	// ErrNotFound is returned when no account matches.
	ErrNotFound = errors.New("no such account")
	// ErrExists is returned when the canonical username is taken.
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
	uncanonical, holders, canonicalise                                   string
}

// New returns a store over db using the given schema. Call Migrate before use.
func New(db *sql.DB, schema string) (*Store, error) {
	if !ValidSchema(schema) {
		return nil, fmt.Errorf("invalid schema name %q", schema)
	}
	t := pq.QuoteIdentifier(schema) + ".users"
	cols := "id, userhash, username, coalesce(canonical, ''), coalesce(email, ''), password_hash, created_at, updated_at"
	return &Store{db: db, schema: schema, q: queries{
		insert: "INSERT INTO " + t + " (userhash, username, canonical, email, password_hash) VALUES ($1, $2, $2, nullif($3, ''), $4) " +
			"ON CONFLICT DO NOTHING RETURNING " + cols,
		// An account that kept its exact name (see Unreconciled) wins when the
		// name is typed exactly as it is: that is how it logged in before.
		byName: "SELECT " + cols + " FROM " + t + " WHERE canonical = $1 OR (canonical IS NULL AND username = $2) " +
			"ORDER BY canonical IS NULL DESC LIMIT 1",
		byID:        "SELECT " + cols + " FROM " + t + " WHERE id = $1",
		byHash:      "SELECT " + cols + " FROM " + t + " WHERE userhash = $1",
		setPassword: "UPDATE " + t + " SET password_hash = $2, updated_at = now() WHERE id = $1",
		count:       "SELECT count(*) FROM " + t,
		secret:      "SELECT value FROM " + pq.QuoteIdentifier(schema) + ".secrets WHERE name = $1",
		saveSecret: "INSERT INTO " + pq.QuoteIdentifier(schema) + ".secrets (name, value) VALUES ($1, $2) " +
			"ON CONFLICT (name) DO NOTHING",

		uncanonical: "SELECT id, userhash, username FROM " + t + " WHERE canonical IS NULL ORDER BY created_at, id",
		holders:     "SELECT canonical, id FROM " + t + " WHERE canonical = ANY($1)",
		canonicalise: "UPDATE " + t + " SET username = n.name, canonical = n.name " +
			"FROM unnest($1::bigint[], $2::text[]) AS n(id, name) WHERE " + t + ".id = n.id",
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
	// Once, when migration 2 adds the column: later, a name that became
	// free must not pass to another account by itself (its upstream data
	// would go with it); an operator decides.
	if current < 2 {
		if err := s.canonicalise(ctx, tx); err != nil {
			return fmt.Errorf("canonical usernames: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing migrations: %w", store.PostgresErr(err))
	}
	return nil
}

// canonicalise gives the existing accounts their canonical names, oldest
// first: an account gets its name's canonical form as name when no other
// holds it. Where several share one, the account already named exactly so
// keeps it (the upstream knows it by that name), else the oldest; the others
// keep their exact names, as do accounts whose names are now refused (see
// Unreconciled).
func (s *Store) canonicalise(ctx context.Context, tx *sql.Tx) error {
	groups, _, err := s.pending(ctx, tx)
	if err != nil {
		return err
	}
	var ids []int64
	var names []string
	for _, g := range groups {
		if g.holder != 0 {
			continue
		}
		winner := g.rows[0]
		for _, r := range g.rows {
			if r.name == g.canonical {
				winner = r
			}
		}
		ids, names = append(ids, winner.id), append(names, g.canonical)
	}
	if len(ids) == 0 {
		return nil
	}
	_, err = tx.ExecContext(ctx, s.q.canonicalise, pq.Array(ids), pq.Array(names))
	return err
}

// Conflict is a set of accounts that kept their exact names because the
// account HolderID holds their canonical form.
type Conflict struct {
	Canonical string
	HolderID  int64
	IDs       []int64
}

// Refused is an account whose name has no canonical form (it was made
// before names were checked as they are now). It cannot log in until an
// operator renames it.
type Refused struct {
	ID       int64
	Userhash string
	Username string
	Reason   string
}

// Unreconciled returns the accounts without a canonical name, for the
// operator to settle: those whose canonical form another account holds, and
// those whose name is refused.
func (s *Store) Unreconciled(ctx context.Context) ([]Conflict, []Refused, error) {
	groups, refused, err := s.pending(ctx, s.db)
	if err != nil {
		return nil, nil, err
	}
	var conflicts []Conflict
	for _, g := range groups {
		c := Conflict{Canonical: g.canonical, HolderID: g.holder}
		for _, r := range g.rows {
			c.IDs = append(c.IDs, r.id)
		}
		conflicts = append(conflicts, c)
	}
	return conflicts, refused, nil
}

type pendingRow struct {
	id         int64
	hash, name string
}

// pendingGroup is the accounts without a canonical name that share one
// canonical form, oldest first, and the account holding it (0: none).
type pendingGroup struct {
	canonical string
	holder    int64
	rows      []pendingRow
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// pending reads the accounts without a canonical name and works out theirs.
func (s *Store) pending(ctx context.Context, q querier) ([]*pendingGroup, []Refused, error) {
	rows, err := q.QueryContext(ctx, s.q.uncanonical)
	if err != nil {
		return nil, nil, store.PostgresErr(err)
	}
	var groups []*pendingGroup
	byName := map[string]*pendingGroup{}
	var refused []Refused
	for rows.Next() {
		var r pendingRow
		if err := rows.Scan(&r.id, &r.hash, &r.name); err != nil {
			rows.Close()
			return nil, nil, store.PostgresErr(err)
		}
		c, err := username.Canonical(r.name)
		if err != nil {
			refused = append(refused, Refused{ID: r.id, Userhash: r.hash, Username: r.name, Reason: err.Error()})
			continue
		}
		g := byName[c]
		if g == nil {
			g = &pendingGroup{canonical: c}
			byName[c] = g
			groups = append(groups, g)
		}
		g.rows = append(g.rows, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, store.PostgresErr(err)
	}
	if len(groups) == 0 {
		return nil, refused, nil
	}
	names := make([]string, 0, len(groups))
	for _, g := range groups {
		names = append(names, g.canonical)
	}
	held, err := q.QueryContext(ctx, s.q.holders, pq.Array(names))
	if err != nil {
		return nil, nil, store.PostgresErr(err)
	}
	defer held.Close()
	for held.Next() {
		var name string
		var id int64
		if err := held.Scan(&name, &id); err != nil {
			return nil, nil, store.PostgresErr(err)
		}
		byName[name].holder = id
	}
	if err := held.Err(); err != nil {
		return nil, nil, store.PostgresErr(err)
	}
	return groups, refused, nil
}

// Create inserts a new account named canonical, a username.Canonical form.
// It returns ErrExists when the name is taken, also when a concurrent Create
// of the same name won the race.
func (s *Store) Create(ctx context.Context, canonical, email, passwordHash string) (User, error) {
	userhash, err := newUserhash()
	if err != nil {
		return User{}, err
	}
	u, err := s.one(ctx, s.q.insert, userhash, canonical, email, passwordHash)
	if errors.Is(err, ErrNotFound) {
		return User{}, ErrExists
	}
	return u, err
}

// ByName finds the account named canonical (a username.Canonical form), or
// else an account that kept its exact name typed, canonical's conflicting
// older spelling (see Unreconciled), which wins when typed exactly.
func (s *Store) ByName(ctx context.Context, canonical, typed string) (User, error) {
	return s.one(ctx, s.q.byName, canonical, typed)
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
		&u.ID, &u.Userhash, &u.Username, &u.Canonical, &u.Email, &u.PasswordHash, &u.CreatedAt, &u.UpdatedAt)
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
