package factors

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"

	"github.com/authgate/authgate/caddymodule/store"
)

// PendingLifetime is how long an enrolment awaiting its first code keeps
// its secret: a page opened again within it shows the same QR code (one
// scanned already still works); later, a new one.
const PendingLifetime = time.Hour

// KeySize is the size of both keys a Store needs.
const KeySize = 32

// Store keeps the TOTP secrets and the recovery codes in PostgreSQL. It is
// safe for concurrent use.
type Store struct {
	db          *sql.DB
	aead        cipher.AEAD
	recoveryKey []byte
	q           queries
}

type queries struct {
	pendingInsert, pendingSelect, confirmSelect, confirm, checkSelect, check, enrolment, removeTOTP string
	recoveryDrop, recoveryInsert, recoveryUse, recoveryLeft                                         string
}

// NewStore returns a store over db in schema (migrated by accounts.Store).
// totpKey (KeySize bytes) seals the TOTP secrets, recoveryKey keys the
// hashes of the recovery codes: both server secrets (accounts.Store.Secret).
func NewStore(db *sql.DB, schema string, totpKey, recoveryKey []byte) (*Store, error) {
	if len(totpKey) != KeySize || len(recoveryKey) != KeySize {
		return nil, fmt.Errorf("factors: keys of %d bytes needed", KeySize)
	}
	block, err := aes.NewCipher(totpKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	t := pq.QuoteIdentifier(schema) + ".totp"
	r := pq.QuoteIdentifier(schema) + ".recovery_codes"
	return &Store{db: db, aead: aead, recoveryKey: recoveryKey, q: queries{
		// A stale enrolment never confirmed gets a fresh secret; a
		// confirmed one is never replaced here.
		pendingInsert: "INSERT INTO " + t + " (user_id, secret) VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE " +
			"SET secret = EXCLUDED.secret, created_at = now(), last_step = 0, used_at = NULL " +
			"WHERE " + t + ".confirmed_at IS NULL AND " + t + ".created_at < now() - make_interval(secs => $3)",
		pendingSelect: "SELECT secret, confirmed_at IS NOT NULL FROM " + t + " WHERE user_id = $1",
		confirmSelect: "SELECT secret FROM " + t + " WHERE user_id = $1 AND confirmed_at IS NULL",
		// Only the very secret the code was checked against is confirmed.
		confirm: "UPDATE " + t + " SET confirmed_at = now(), last_step = $2 " +
			"WHERE user_id = $1 AND confirmed_at IS NULL AND secret = $3",
		checkSelect: "SELECT secret, last_step FROM " + t + " WHERE user_id = $1 AND confirmed_at IS NOT NULL",
		// Of concurrent requests with one code, the row lock lets one
		// through: the others find last_step moved on.
		check: "UPDATE " + t + " SET last_step = $2, used_at = now() " +
			"WHERE user_id = $1 AND confirmed_at IS NOT NULL AND last_step < $2",
		enrolment:  "SELECT confirmed_at, used_at FROM " + t + " WHERE user_id = $1 AND confirmed_at IS NOT NULL",
		removeTOTP: "DELETE FROM " + t + " WHERE user_id = $1 RETURNING confirmed_at IS NOT NULL",

		recoveryDrop:   "DELETE FROM " + r + " WHERE user_id = $1",
		recoveryInsert: "INSERT INTO " + r + " (user_id, hash) SELECT $1, unnest($2::bytea[])",
		recoveryUse:    "DELETE FROM " + r + " WHERE user_id = $1 AND hash = $2",
		recoveryLeft:   "SELECT count(*), min(created_at) FROM " + r + " WHERE user_id = $1",
	}}, nil
}

// PendingTOTP returns the user's TOTP secret and whether it is confirmed.
// A user without one, or whose unconfirmed one is older than
// PendingLifetime, gets a new one, to be confirmed by ConfirmTOTP.
func (s *Store) PendingTOTP(ctx context.Context, userID int64) ([]byte, bool, error) {
	fresh, err := NewSecret()
	if err != nil {
		return nil, false, err
	}
	sealed, err := s.seal(userID, fresh)
	if err != nil {
		return nil, false, err
	}
	if _, err := s.db.ExecContext(ctx, s.q.pendingInsert, userID, sealed, PendingLifetime.Seconds()); err != nil {
		return nil, false, fmt.Errorf("storing a TOTP secret: %w", store.PostgresErr(err))
	}
	var confirmed bool
	if err := s.db.QueryRowContext(ctx, s.q.pendingSelect, userID).Scan(&sealed, &confirmed); err != nil {
		return nil, false, fmt.Errorf("reading the TOTP secret: %w", store.PostgresErr(err))
	}
	secret, err := s.open(userID, sealed)
	return secret, confirmed, err
}

// ConfirmTOTP confirms the user's pending TOTP when code is one of its
// codes now, and reports whether it did. The code is spent: it does not
// log in afterwards.
func (s *Store) ConfirmTOTP(ctx context.Context, userID int64, code string, now time.Time) (bool, error) {
	var sealed []byte
	err := s.db.QueryRowContext(ctx, s.q.confirmSelect, userID).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the TOTP secret: %w", store.PostgresErr(err))
	}
	secret, err := s.open(userID, sealed)
	if err != nil {
		return false, err
	}
	step, ok := Match(secret, code, now, -1<<62)
	if !ok {
		return false, nil
	}
	return s.exec(ctx, "confirming TOTP", s.q.confirm, userID, step, sealed)
}

// CheckTOTP reports whether code is a code of the user's confirmed TOTP
// now (within Skew), of a later time step than any accepted before; if so
// that step is spent, so that the code never works again.
func (s *Store) CheckTOTP(ctx context.Context, userID int64, code string, now time.Time) (bool, error) {
	var sealed []byte
	var last int64
	err := s.db.QueryRowContext(ctx, s.q.checkSelect, userID).Scan(&sealed, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the TOTP secret: %w", store.PostgresErr(err))
	}
	secret, err := s.open(userID, sealed)
	if err != nil {
		return false, err
	}
	step, ok := Match(secret, code, now, last)
	if !ok {
		return false, nil
	}
	return s.exec(ctx, "spending a TOTP code", s.q.check, userID, step)
}

// RemoveTOTP removes the user's TOTP, confirmed or not, and reports
// whether a confirmed one was removed.
func (s *Store) RemoveTOTP(ctx context.Context, userID int64) (bool, error) {
	var confirmed bool
	err := s.db.QueryRowContext(ctx, s.q.removeTOTP, userID).Scan(&confirmed)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("removing TOTP: %w", store.PostgresErr(err))
	}
	return confirmed, nil
}

func (s *Store) totpEnrolment(ctx context.Context, userID int64) (Enrolment, bool, error) {
	var confirmed time.Time
	var used sql.NullTime
	err := s.db.QueryRowContext(ctx, s.q.enrolment, userID).Scan(&confirmed, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return Enrolment{}, false, nil
	}
	if err != nil {
		return Enrolment{}, false, fmt.Errorf("reading TOTP: %w", store.PostgresErr(err))
	}
	return Enrolment{Kind: KindTOTP, Created: confirmed, LastUsed: used.Time}, true, nil
}

// NewRecoveryCodes replaces the user's recovery codes with RecoveryCodes
// new ones and returns them, as they are to be shown: the only time they
// exist outside the user's hands.
func (s *Store) NewRecoveryCodes(ctx context.Context, userID int64) ([]string, error) {
	codes := make([]string, RecoveryCodes)
	hashes := make([][]byte, RecoveryCodes)
	for i := range codes {
		code, err := newRecoveryCode()
		if err != nil {
			return nil, err
		}
		codes[i], hashes[i] = code, recoveryHash(s.recoveryKey, userID, NormalRecoveryCode(code))
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("storing recovery codes: %w", store.PostgresErr(err))
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, s.q.recoveryDrop, userID); err != nil {
		return nil, fmt.Errorf("dropping recovery codes: %w", store.PostgresErr(err))
	}
	if _, err := tx.ExecContext(ctx, s.q.recoveryInsert, userID, pq.ByteaArray(hashes)); err != nil {
		return nil, fmt.Errorf("storing recovery codes: %w", store.PostgresErr(err))
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("storing recovery codes: %w", store.PostgresErr(err))
	}
	return codes, nil
}

// UseRecoveryCode spends the user's recovery code typed, and reports
// whether there was such a code. The lookup is by keyed hash, so no stored
// value is compared with anything the client chose.
func (s *Store) UseRecoveryCode(ctx context.Context, userID int64, typed string) (bool, error) {
	normal := NormalRecoveryCode(typed)
	if normal == "" {
		return false, nil
	}
	return s.exec(ctx, "spending a recovery code", s.q.recoveryUse, userID, recoveryHash(s.recoveryKey, userID, normal))
}

// RecoveryLeft returns how many recovery codes the user has left.
func (s *Store) RecoveryLeft(ctx context.Context, userID int64) (int, error) {
	n, _, err := s.recoveryLeft(ctx, userID)
	return n, err
}

func (s *Store) recoveryLeft(ctx context.Context, userID int64) (int, time.Time, error) {
	var n int
	var made sql.NullTime
	if err := s.db.QueryRowContext(ctx, s.q.recoveryLeft, userID).Scan(&n, &made); err != nil {
		return 0, time.Time{}, fmt.Errorf("counting recovery codes: %w", store.PostgresErr(err))
	}
	return n, made.Time, nil
}

// DropRecoveryCodes removes the user's recovery codes and returns how many
// there were.
func (s *Store) DropRecoveryCodes(ctx context.Context, userID int64) (int, error) {
	res, err := s.db.ExecContext(ctx, s.q.recoveryDrop, userID)
	if err != nil {
		return 0, fmt.Errorf("dropping recovery codes: %w", store.PostgresErr(err))
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// exec runs an update and reports whether it changed a row.
func (s *Store) exec(ctx context.Context, what, query string, args ...any) (bool, error) {
	res, err := s.db.ExecContext(ctx, query, args...)
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, store.PostgresErr(err))
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// associated is the data a user's sealed secret is bound to.
func associated(userID int64) []byte {
	ad := []byte("authgate totp\x00........")
	binary.BigEndian.PutUint64(ad[len(ad)-8:], uint64(userID))
	return ad
}

// seal encrypts a TOTP secret as nonce || ciphertext.
func (s *Store) seal(userID int64, secret []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(secret)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, secret, associated(userID)), nil
}

// errSealed is a stored secret that does not open: another key, another
// user's row, or damage.
var errSealed = errors.New("factors: a stored TOTP secret does not open with this server's key")

func (s *Store) open(userID int64, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errSealed
	}
	secret, err := s.aead.Open(nil, sealed[:n], sealed[n:], associated(userID))
	if err != nil {
		return nil, errSealed
	}
	return secret, nil
}
