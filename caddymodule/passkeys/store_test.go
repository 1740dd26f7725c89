package passkeys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/testenv"
)

// newStore migrates a fresh database and returns a passkey store over it,
// and two accounts.
func newStore(t *testing.T) (*Store, *sql.DB, accounts.User, accounts.User) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("postgres", testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	accts, err := accounts.New(db, "authgate")
	if err != nil {
		t.Fatal(err)
	}
	if err := accts.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := accts.Create(ctx, "alice", "", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	if err != nil {
		t.Fatal(err)
	}
	b, err := accts.Create(ctx, "bob", "", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(db, "authgate")
	if err != nil {
		t.Fatal(err)
	}
	return s, db, a, b
}

func TestStore(t *testing.T) {
	ctx := context.Background()
	s, db, alice, bob := newStore(t)
	key := Passkey{UserID: alice.ID, ID: []byte("credential-1"), PublicKey: []byte("cose key"), SignCount: 3,
		Transports: []string{"internal", "hybrid"}, AAGUID: bytes.Repeat([]byte{7}, 16), Flags: 0x1d,
		AttestationFormat: "none", Name: "Laptop"}
	added, err := s.Add(ctx, key, 2)
	if err != nil || added.Created.IsZero() {
		t.Fatalf("Add = %+v, %v", added, err)
	}

	t.Run("the row as stored", func(t *testing.T) {
		var count int64
		var flags int16
		var name string
		err := db.QueryRow(`SELECT sign_count, flags, name FROM authgate.passkeys WHERE user_id = $1 AND credential_id = $2`,
			alice.ID, key.ID).Scan(&count, &flags, &name)
		if err != nil || count != 3 || flags != 0x1d || name != "Laptop" {
			t.Fatalf("row: count %d flags %#x name %q (%v)", count, flags, name, err)
		}
		got, err := s.ByCredentialID(ctx, key.ID)
		if err != nil || got.UserID != alice.ID || !bytes.Equal(got.AAGUID, key.AAGUID) || len(got.Transports) != 2 ||
			got.Flags != 0x1d || !got.LastUsed.IsZero() || !got.Suspended.IsZero() {
			t.Fatalf("ByCredentialID = %+v, %v", got, err)
		}
	})
	t.Run("refusals of Add", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			p    Passkey
			max  int
			want error
		}{
			{"the same credential id for another account", Passkey{UserID: bob.ID, ID: key.ID, PublicKey: []byte("k"), Name: "x"}, 2, ErrExists},
			{"one over the bound", Passkey{UserID: alice.ID, ID: []byte("credential-2"), PublicKey: []byte("k"), Name: "x"}, 1, ErrTooMany},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := s.Add(ctx, tc.p, tc.max); !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
			})
		}
		if n, _ := s.Count(ctx, bob.ID); n != 0 {
			t.Errorf("bob has %d passkeys", n)
		}
	})
	t.Run("the counter moves only forward", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			count uint32
			want  error
		}{
			{"the same count", 3, ErrNotFound},
			{"a lower count", 2, ErrNotFound},
			{"a higher count", 9, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := s.Used(ctx, key.ID, tc.count, 0x05); !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
			})
		}
		got, _ := s.ByCredentialID(ctx, key.ID)
		if got.SignCount != 9 || got.Flags != 0x05 || got.LastUsed.IsZero() {
			t.Errorf("after use: %+v", got)
		}
	})
	t.Run("an authenticator without a counter", func(t *testing.T) {
		zero := Passkey{UserID: bob.ID, ID: []byte("credential-0"), PublicKey: []byte("k"), Name: "Phone"}
		if _, err := s.Add(ctx, zero, 2); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := s.Used(ctx, zero.ID, 0, 0x05); err != nil {
				t.Fatalf("a second use with counter 0: %v", err)
			}
		}
	})
	t.Run("rename and remove only one's own", func(t *testing.T) {
		if err := s.Rename(ctx, bob.ID, key.ID, "Bob's now"); !errors.Is(err, ErrNotFound) {
			t.Errorf("bob renamed alice's passkey: %v", err)
		}
		if _, err := s.Remove(ctx, bob.ID, key.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("bob removed alice's passkey: %v", err)
		}
		if err := s.Rename(ctx, alice.ID, key.ID, "Work laptop"); err != nil {
			t.Fatal(err)
		}
		list, err := s.List(ctx, alice.ID)
		if err != nil || len(list) != 1 || list[0].Name != "Work laptop" {
			t.Fatalf("List = %+v, %v", list, err)
		}
	})
	t.Run("a suspended passkey", func(t *testing.T) {
		if err := s.Suspend(ctx, key.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.Suspend(ctx, key.ID); err != nil {
			t.Fatalf("suspending twice: %v", err)
		}
		if err := s.Used(ctx, key.ID, 100, 0x05); !errors.Is(err, ErrNotFound) {
			t.Errorf("a suspended passkey was used: %v", err)
		}
		if n, _ := s.Count(ctx, alice.ID); n != 0 {
			t.Errorf("Count = %d: a suspended passkey counts as a factor", n)
		}
		if got, _ := s.ByCredentialID(ctx, key.ID); got.Suspended.IsZero() {
			t.Errorf("not marked suspended: %+v", got)
		}
	})
	t.Run("as a kind of second factor", func(t *testing.T) {
		kind := Provider{Store: s}
		if kind.Kind() != "webauthn" {
			t.Errorf("kind %q", kind.Kind())
		}
		// alice's only passkey is suspended: no second factor; bob's is one.
		for _, tc := range []struct {
			name string
			id   int64
			want int
		}{{"a suspended passkey", alice.ID, 0}, {"a usable passkey", bob.ID, 1}} {
			t.Run(tc.name, func(t *testing.T) {
				list, err := kind.List(ctx, tc.id)
				if err != nil || len(list) != tc.want || (tc.want == 1 && (list[0].Kind != "webauthn" || list[0].Name != "Phone" || list[0].LastUsed.IsZero())) {
					t.Fatalf("List = %+v, %v", list, err)
				}
			})
		}
	})
	t.Run("remove", func(t *testing.T) {
		name, err := s.Remove(ctx, alice.ID, key.ID)
		if err != nil || name != "Work laptop" {
			t.Fatalf("Remove = %q, %v", name, err)
		}
		if _, err := s.ByCredentialID(ctx, key.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("still there: %v", err)
		}
		if n, err := s.RemoveAll(ctx, bob.ID); err != nil || n != 1 {
			t.Fatalf("RemoveAll = %d, %v", n, err)
		}
		var left int
		if err := db.QueryRow(`SELECT count(*) FROM authgate.passkeys`).Scan(&left); err != nil || left != 0 {
			t.Fatalf("%d rows left (%v)", left, err)
		}
	})
}

func TestCeremonies(t *testing.T) {
	ctx := context.Background()
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	prefix := testenv.Prefix(t)
	c := NewCeremonies(rdb, prefix, CeremonyTTL)
	hash := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }

	for _, tc := range []struct {
		name string
		b    Binding
		key  string
	}{
		{"bound to a user", Binding{Kind: "register", Userhash: "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", Ticket: "session id"},
			prefix + ":{a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1}:passkey:register:" + hash("session id")},
		{"bound to a ticket", Binding{Kind: "login", Ticket: "ticket"}, prefix + ":passkey:login:" + hash("ticket")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Save(ctx, tc.b, []byte("state")); err != nil {
				t.Fatal(err)
			}
			ttl, err := rdb.PTTL(ctx, tc.key).Result()
			if err != nil || ttl <= 0 || ttl > CeremonyTTL {
				t.Fatalf("key %s: TTL %v (%v), want up to %v", tc.key, ttl, err, CeremonyTTL)
			}
			// Of concurrent answers, one gets the state.
			var wg sync.WaitGroup
			var mu sync.Mutex
			got := 0
			for range 8 {
				wg.Go(func() {
					state, err := c.Take(ctx, tc.b)
					if err == nil && string(state) == "state" {
						mu.Lock()
						got++
						mu.Unlock()
					} else if !errors.Is(err, ErrNoCeremony) {
						t.Errorf("Take: %v", err)
					}
				})
			}
			wg.Wait()
			if got != 1 {
				t.Fatalf("%d takers got the state, want 1", got)
			}
			if n, _ := rdb.Exists(ctx, tc.key).Result(); n != 0 {
				t.Errorf("key %s still there", tc.key)
			}
		})
	}
	t.Run("an expired ceremony", func(t *testing.T) {
		b := Binding{Kind: "login", Ticket: "soon gone"}
		if err := NewCeremonies(rdb, prefix, time.Millisecond).Save(ctx, b, []byte("state")); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, "the ceremony to expire", func() bool {
			n, _ := rdb.Exists(ctx, prefix+":passkey:login:"+hash("soon gone")).Result()
			return n == 0
		})
		if _, err := c.Take(ctx, b); !errors.Is(err, ErrNoCeremony) {
			t.Fatalf("got %v, want ErrNoCeremony", err)
		}
	})
}
