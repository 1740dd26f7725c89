package accounts

import (
	"database/sql"
	"errors"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/authgate/authgate/caddymodule/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// SetEmail changes the one account's row, and the value is data, never SQL.
func TestSetEmail(t *testing.T) {
	db, err := sql.Open("postgres", testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s, err := New(db, "authgate")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	bob, err := s.Create(t.Context(), "bob", "bob@example.com", "hash")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		id    int64 // 0: a new account's
		email string
		want  error
		null  bool // the column is NULL afterwards
	}{
		{name: "an address", email: "alice@example.org"},
		{name: "removed", email: "", null: true},
		{name: "quotes are data", email: `a'b"); DROP TABLE authgate.users; --@example.org`},
		{name: "no such account", id: 1 << 40, email: "x@example.org", want: ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := s.Create(t.Context(), "u"+tc.name[:2], "before@example.org", "hash")
			if err != nil {
				t.Fatal(err)
			}
			id := tc.id
			if id == 0 {
				id = u.ID
			}
			if err := s.SetEmail(t.Context(), id, tc.email); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("SetEmail: %v, want %v", err, tc.want)
			}
			var email sql.NullString
			var updated time.Time
			if err := db.QueryRow(`SELECT email, updated_at FROM authgate.users WHERE id = $1`, u.ID).Scan(&email, &updated); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.want != nil:
				if email.String != "before@example.org" || !updated.Equal(u.UpdatedAt) {
					t.Errorf("an account not named changed: %v, %v", email, updated)
				}
			case tc.null && email.Valid, !tc.null && email.String != tc.email:
				t.Errorf("stored %v, want %q", email, tc.email)
			case updated.Before(u.UpdatedAt) || updated.Equal(u.UpdatedAt):
				t.Errorf("updated_at %v, not after %v", updated, u.UpdatedAt)
			}
			got, err := s.ByID(t.Context(), bob.ID)
			if err != nil || got.Email != "bob@example.com" || !got.UpdatedAt.Equal(bob.UpdatedAt) {
				t.Errorf("another account changed: %+v, %v", got, err)
			}
		})
	}
}
