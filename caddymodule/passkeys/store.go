package passkeys

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/store"
)

// Passkey is one stored credential of an account. Its public key is what
// it proves with, nothing secret: the private key never leaves the
// authenticator.
type Passkey struct {
	UserID int64
	// ID is the credential id the authenticator names it by.
	ID         []byte
	PublicKey  []byte
	SignCount  uint32
	Transports []string
	AAGUID     []byte
	// Flags are webauthn.CredentialFlags in their one-byte form.
	Flags             byte
	AttestationFormat string
	Name              string
	Created           time.Time
	// LastUsed is zero when it never signed in.
	LastUsed time.Time
	// Suspended is when a sign-in showed its signature counter going
	// backwards (zero: never); it is refused from then on.
	Suspended time.Time
}

// Store keeps passkeys in PostgreSQL, in the accounts schema (migration
// 004 of package accounts makes the table). It is safe for concurrent use.
type Store struct {
	db *sql.DB
	q  storeQueries
}

type storeQueries struct {
	list, byID, add, rename, remove, removeAll, used, suspend, count string
}

// NewStore returns a store over db in the given accounts schema.
func NewStore(db *sql.DB, schema string) (*Store, error) {
	if !accounts.ValidSchema(schema) {
		return nil, fmt.Errorf("invalid schema name %q", schema)
	}
	t := pq.QuoteIdentifier(schema) + ".passkeys"
	cols := "user_id, credential_id, public_key, sign_count, transports, coalesce(aaguid, ''::bytea), flags, attestation_format, " +
		"name, created_at, last_used_at, suspended_at"
	return &Store{db: db, q: storeQueries{
		list: "SELECT " + cols + " FROM " + t + " WHERE user_id = $1 ORDER BY created_at, id",
		byID: "SELECT " + cols + " FROM " + t + " WHERE credential_id = $1",
		// The bound on an account's passkeys is checked in the insert
		// itself; two concurrent additions may both pass it, which costs
		// one passkey over the bound at most per race, not a flood.
		add: "INSERT INTO " + t + " (user_id, credential_id, public_key, sign_count, transports, aaguid, flags, attestation_format, name) " +
			"SELECT $1, $2, $3, $4, $5, nullif($6, ''::bytea), $7, $8, $9 " +
			"WHERE (SELECT count(*) FROM " + t + " WHERE user_id = $1) < $10 " +
			"ON CONFLICT (credential_id) DO NOTHING RETURNING created_at",
		rename:    "UPDATE " + t + " SET name = $3 WHERE user_id = $1 AND credential_id = $2",
		remove:    "DELETE FROM " + t + " WHERE user_id = $1 AND credential_id = $2 RETURNING name",
		removeAll: "DELETE FROM " + t + " WHERE user_id = $1",
		// The counter only moves forward, in the same statement that
		// checks it, so that two sign-ins racing with one counter value
		// (a copied authenticator) cannot both pass. 0 then 0 is an
		// authenticator that keeps no counter.
		used: "UPDATE " + t + " SET sign_count = $2, flags = $3, last_used_at = now() " +
			"WHERE credential_id = $1 AND suspended_at IS NULL AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0))",
		suspend: "UPDATE " + t + " SET suspended_at = now() WHERE credential_id = $1 AND suspended_at IS NULL",
		count:   "SELECT count(*) FROM " + t + " WHERE user_id = $1 AND suspended_at IS NULL",
	}}, nil
}

// Errors of the store.
var (
	// ErrNotFound: no such passkey (of that account).
	ErrNotFound = errors.New("no such passkey")
	// ErrExists: the credential id is registered already, to this
	// account or another.
	ErrExists = errors.New("passkey already registered")
	// ErrTooMany: the account has as many passkeys as it may.
	ErrTooMany = errors.New("too many passkeys")
)

// List returns the account's passkeys, oldest first.
func (s *Store) List(ctx context.Context, userID int64) ([]Passkey, error) {
	rows, err := s.db.QueryContext(ctx, s.q.list, userID)
	if err != nil {
		return nil, fmt.Errorf("listing passkeys: %w", store.PostgresErr(err))
	}
	defer rows.Close()
	var out []Passkey
	for rows.Next() {
		p, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing passkeys: %w", store.PostgresErr(err))
	}
	return out, nil
}

// ByCredentialID returns the passkey with the credential id, whoever's it
// is, or ErrNotFound.
func (s *Store) ByCredentialID(ctx context.Context, id []byte) (Passkey, error) {
	p, err := scan(s.db.QueryRowContext(ctx, s.q.byID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Passkey{}, ErrNotFound
	}
	return p, err
}

type scanner interface{ Scan(dest ...any) error }

func scan(row scanner) (Passkey, error) {
	var p Passkey
	var count int64
	var flags int16
	var used, suspended sql.NullTime
	err := row.Scan(&p.UserID, &p.ID, &p.PublicKey, &count, pq.Array(&p.Transports), &p.AAGUID, &flags,
		&p.AttestationFormat, &p.Name, &p.Created, &used, &suspended)
	if errors.Is(err, sql.ErrNoRows) {
		return Passkey{}, err
	}
	if err != nil {
		return Passkey{}, fmt.Errorf("reading passkey: %w", store.PostgresErr(err))
	}
	p.SignCount, p.Flags = uint32(count), byte(flags)
	p.LastUsed, p.Suspended = used.Time, suspended.Time
	return p, nil
}

// Add stores a new passkey, unless the account has max already
// (ErrTooMany) or the credential id is taken (ErrExists). It returns the
// passkey as stored.
func (s *Store) Add(ctx context.Context, p Passkey, max int) (Passkey, error) {
	transports := p.Transports
	if transports == nil {
		transports = []string{}
	}
	err := s.db.QueryRowContext(ctx, s.q.add, p.UserID, p.ID, p.PublicKey, int64(p.SignCount), pq.Array(transports),
		p.AAGUID, int16(p.Flags), p.AttestationFormat, p.Name, max).Scan(&p.Created)
	if errors.Is(err, sql.ErrNoRows) {
		// Either the bound or the credential id stopped it: tell which.
		if _, err := s.ByCredentialID(ctx, p.ID); err == nil {
			return Passkey{}, ErrExists
		}
		return Passkey{}, ErrTooMany
	}
	if err != nil {
		return Passkey{}, fmt.Errorf("adding passkey: %w", store.PostgresErr(err))
	}
	return p, nil
}

// Rename names the account's passkey anew.
func (s *Store) Rename(ctx context.Context, userID int64, id []byte, name string) error {
	return s.exec(ctx, "renaming passkey", s.q.rename, userID, id, name)
}

// Remove deletes the account's passkey and returns its name.
func (s *Store) Remove(ctx context.Context, userID int64, id []byte) (string, error) {
	var name string
	err := s.db.QueryRowContext(ctx, s.q.remove, userID, id).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("removing passkey: %w", store.PostgresErr(err))
	}
	return name, nil
}

// RemoveAll deletes every passkey of the account and returns how many.
func (s *Store) RemoveAll(ctx context.Context, userID int64) (int, error) {
	res, err := s.db.ExecContext(ctx, s.q.removeAll, userID)
	if err != nil {
		return 0, fmt.Errorf("removing passkeys: %w", store.PostgresErr(err))
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// Used records a sign-in with the passkey: its new counter and flags, and
// the time. It returns ErrNotFound, changing nothing, when the passkey is
// gone or suspended, or the counter did not move forward.
func (s *Store) Used(ctx context.Context, id []byte, signCount uint32, flags byte) error {
	return s.exec(ctx, "recording passkey use", s.q.used, id, int64(signCount), int16(flags))
}

// Suspend refuses the passkey from now on.
func (s *Store) Suspend(ctx context.Context, id []byte) error {
	err := s.exec(ctx, "suspending passkey", s.q.suspend, id)
	if errors.Is(err, ErrNotFound) {
		return nil // suspended already, or removed meanwhile
	}
	return err
}

// Count returns how many usable (not suspended) passkeys the account has.
func (s *Store) Count(ctx context.Context, userID int64) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, s.q.count, userID).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting passkeys: %w", store.PostgresErr(err))
	}
	return n, nil
}

func (s *Store) exec(ctx context.Context, what, query string, args ...any) error {
	res, err := s.db.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, store.PostgresErr(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}
