package accounts

import (
	"context"
	"fmt"

	"github.com/lib/pq"

	"github.com/authgate/authgate/caddymodule/store"
)

// SetEmail replaces the email address of an account ("" removes it). Like a
// password change it moves updated_at, so that a reset link mailed to the
// old address before the change no longer works (see auth's ResetWithToken).
func (s *Store) SetEmail(ctx context.Context, id int64, email string) error {
	query := "UPDATE " + pq.QuoteIdentifier(s.schema) + ".users SET email = nullif($2, ''), updated_at = now() WHERE id = $1"
	res, err := s.db.ExecContext(ctx, query, id, email)
	if err != nil {
		return fmt.Errorf("updating email: %w", store.PostgresErr(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}
