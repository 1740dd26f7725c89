package factors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/testenv"
)

// The store over a real PostgreSQL: what is kept (never a secret in the
// clear, never a code), and the rules that the database enforces (a step
// spent once, also by concurrent requests; a code used once).

type pg struct {
	db    *sql.DB
	store *Store
	users *accounts.Store
}

func newPG(t *testing.T) *pg {
	t.Helper()
	db, err := sql.Open("postgres", testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	users, err := accounts.New(db, "authgate")
	if err != nil {
		t.Fatal(err)
	}
	if err := users.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	st, err := NewStore(db, "authgate", bytes.Repeat([]byte{1}, KeySize), bytes.Repeat([]byte{2}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return &pg{db: db, store: st, users: users}
}

func (p *pg) user(t *testing.T, name string) int64 {
	t.Helper()
	u, err := p.users.Create(t.Context(), name, "", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

func (p *pg) scalar(t *testing.T, query string, args ...any) any {
	t.Helper()
	var v any
	if err := p.db.QueryRowContext(t.Context(), query, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v
}

func TestTOTPStore(t *testing.T) {
	p := newPG(t)
	ctx := t.Context()
	id := p.user(t, "alice")
	now := time.Unix(1_900_000_015, 0)
	step := Step(now)

	secret, confirmed, err := p.store.PendingTOTP(ctx, id)
	if err != nil || confirmed || len(secret) != SecretSize {
		t.Fatalf("pending: %d bytes, confirmed %v, %v", len(secret), confirmed, err)
	}
	again, _, err := p.store.PendingTOTP(ctx, id)
	if err != nil || !bytes.Equal(again, secret) {
		t.Fatalf("the page opened again shows another secret (%v)", err)
	}
	stored := p.scalar(t, "SELECT secret FROM authgate.totp WHERE user_id = $1", id).([]byte)
	if bytes.Contains(stored, secret) || strings.Contains(string(stored), b32.EncodeToString(secret)) {
		t.Fatal("the secret is stored in the clear")
	}
	reg := NewRegistry(p.store)
	if kinds, err := reg.Kinds(ctx, id); err != nil || len(kinds) != 0 {
		t.Fatalf("an unconfirmed secret counts: %v, %v", kinds, err)
	}
	if ok, err := p.store.CheckTOTP(ctx, id, Code(secret, step), now); ok || err != nil {
		t.Fatalf("an unconfirmed secret logs in: %v, %v", ok, err)
	}

	for _, tc := range []struct {
		name string
		run  func() (bool, error)
		ok   bool
	}{
		{"confirm with a wrong code", func() (bool, error) { return p.store.ConfirmTOTP(ctx, id, "000000", now) }, false},
		{"confirm with the code of now", func() (bool, error) { return p.store.ConfirmTOTP(ctx, id, Code(secret, step), now) }, true},
		{"confirm again", func() (bool, error) { return p.store.ConfirmTOTP(ctx, id, Code(secret, step+1), now) }, false},
		{"the confirming code", func() (bool, error) { return p.store.CheckTOTP(ctx, id, Code(secret, step), now) }, false},
		{"the step before", func() (bool, error) { return p.store.CheckTOTP(ctx, id, Code(secret, step-1), now) }, false},
		{"the step after", func() (bool, error) { return p.store.CheckTOTP(ctx, id, Code(secret, step+1), now) }, true},
		{"the step after, again", func() (bool, error) { return p.store.CheckTOTP(ctx, id, Code(secret, step+1), now) }, false},
		{"two steps on, a minute later", func() (bool, error) {
			return p.store.CheckTOTP(ctx, id, Code(secret, step+3), now.Add(time.Minute))
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ok, err := tc.run(); ok != tc.ok || err != nil {
				t.Fatalf("got %v, %v; want %v", ok, err, tc.ok)
			}
		})
	}
	if last := p.scalar(t, "SELECT last_step FROM authgate.totp WHERE user_id = $1", id); last != step+3 {
		t.Fatalf("last_step %v, want %d", last, step+3)
	}
	if kinds, err := reg.Kinds(ctx, id); err != nil || !slices.Equal(kinds, []string{KindTOTP}) {
		t.Fatalf("kinds %v, %v", kinds, err)
	}
	list, err := reg.List(ctx, id)
	if err != nil || len(list) != 1 || list[0].Kind != KindTOTP || list[0].Created.IsZero() || list[0].LastUsed.IsZero() {
		t.Fatalf("list %+v, %v", list, err)
	}
	if _, confirmed, err := p.store.PendingTOTP(ctx, id); !confirmed || err != nil {
		t.Fatalf("the confirmed secret is pending again (%v)", err)
	}

	// A sealed secret belongs to its user: copied to another, it does not open.
	bob := p.user(t, "bob")
	if _, err := p.db.ExecContext(ctx, "INSERT INTO authgate.totp (user_id, secret, confirmed_at) SELECT $1, secret, now() FROM authgate.totp WHERE user_id = $2", bob, id); err != nil {
		t.Fatal(err)
	}
	if _, err := p.store.CheckTOTP(ctx, bob, Code(secret, step+4), now.Add(2*time.Minute)); !errors.Is(err, errSealed) {
		t.Fatalf("another user's secret: %v", err)
	}

	if removed, err := p.store.RemoveTOTP(ctx, id); !removed || err != nil {
		t.Fatalf("remove: %v, %v", removed, err)
	}
	if n := p.scalar(t, "SELECT count(*) FROM authgate.totp WHERE user_id = $1", id); n != int64(0) {
		t.Fatalf("%v rows left", n)
	}
}

// An enrolment left unconfirmed past PendingLifetime gets a new secret.
func TestStalePendingTOTP(t *testing.T) {
	p := newPG(t)
	id := p.user(t, "carol")
	old, _, err := p.store.PendingTOTP(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.db.ExecContext(t.Context(), "UPDATE authgate.totp SET created_at = now() - interval '2 hours' WHERE user_id = $1", id); err != nil {
		t.Fatal(err)
	}
	fresh, confirmed, err := p.store.PendingTOTP(t.Context(), id)
	if err != nil || confirmed || bytes.Equal(fresh, old) {
		t.Fatalf("a stale enrolment keeps its secret (confirmed %v, %v)", confirmed, err)
	}
}

// Of many requests with one code at once, one gets in.
func TestTOTPCodeOnceUnderConcurrency(t *testing.T) {
	p := newPG(t)
	id := p.user(t, "dave")
	now := time.Unix(1_900_000_015, 0)
	secret, _, err := p.store.PendingTOTP(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := p.store.ConfirmTOTP(t.Context(), id, Code(secret, Step(now)-1), now); !ok || err != nil {
		t.Fatalf("confirm: %v, %v", ok, err)
	}
	code := Code(secret, Step(now))
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 10 {
		wg.Go(func() {
			ok, err := p.store.CheckTOTP(context.Background(), id, code, now)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if accepted != 1 {
		t.Fatalf("the code was accepted %d times", accepted)
	}
}

func TestRecoveryCodes(t *testing.T) {
	p := newPG(t)
	ctx := t.Context()
	id := p.user(t, "erin")
	first, err := p.store.NewRecoveryCodes(ctx, id)
	if err != nil || len(first) != RecoveryCodes {
		t.Fatalf("%d codes, %v", len(first), err)
	}
	rows, err := p.db.QueryContext(ctx, "SELECT hash FROM authgate.recovery_codes WHERE user_id = $1", id)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var h []byte
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		for _, c := range first {
			if len(h) != 32 || bytes.Contains(h, []byte(NormalRecoveryCode(c))) {
				t.Fatalf("stored %x for %s", h, c)
			}
		}
		n++
	}
	rows.Close()
	if n != RecoveryCodes {
		t.Fatalf("%d rows", n)
	}
	second, err := p.store.NewRecoveryCodes(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, code string
		ok         bool
	}{
		{"a code of the old set", first[0], false},
		{"a code of the new set", second[0], true},
		{"the same again", second[0], false},
		{"another, typed in capitals", strings.ToUpper(second[1]), true},
		{"not a code", "hello", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ok, err := p.store.UseRecoveryCode(ctx, id, tc.code); ok != tc.ok || err != nil {
				t.Fatalf("got %v, %v; want %v", ok, err, tc.ok)
			}
		})
	}
	// Another user's codes are not this one's.
	frank := p.user(t, "frank")
	if ok, _ := p.store.UseRecoveryCode(ctx, frank, second[2]); ok {
		t.Fatal("a code works for another user")
	}
	if left, err := p.store.RecoveryLeft(ctx, id); left != RecoveryCodes-2 || err != nil {
		t.Fatalf("%d left, %v", left, err)
	}
	if dropped, err := p.store.DropRecoveryCodes(ctx, id); dropped != RecoveryCodes-2 || err != nil {
		t.Fatalf("dropped %d, %v", dropped, err)
	}
}

// fakeProvider is another kind of second factor (as passkeys are).
type fakeProvider struct{ have map[int64]int }

func (fakeProvider) Kind() string { return "passkey" }

func (f fakeProvider) List(_ context.Context, id int64) ([]Enrolment, error) {
	var out []Enrolment
	for range f.have[id] {
		out = append(out, Enrolment{Kind: "passkey", Name: "laptop"})
	}
	return out, nil
}

func (f fakeProvider) RemoveAll(_ context.Context, id int64) (int, error) {
	n := f.have[id]
	delete(f.have, id)
	return n, nil
}

func TestRegistryWithAnotherKind(t *testing.T) {
	p := newPG(t)
	ctx := t.Context()
	id := p.user(t, "gina")
	reg := NewRegistry(p.store)
	keys := fakeProvider{have: map[int64]int{id: 2}}
	reg.Add(keys)
	if kinds, _ := reg.Kinds(ctx, id); !slices.Equal(kinds, []string{"passkey"}) {
		t.Fatalf("kinds %v", kinds)
	}
	secret, _, _ := p.store.PendingTOTP(ctx, id)
	now := time.Now()
	if ok, err := p.store.ConfirmTOTP(ctx, id, Code(secret, Step(now)), now); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, err := p.store.NewRecoveryCodes(ctx, id); err != nil {
		t.Fatal(err)
	}
	if kinds, _ := reg.Kinds(ctx, id); !slices.Equal(kinds, []string{"totp", "passkey"}) {
		t.Fatalf("kinds %v", kinds)
	}
	list, err := reg.List(ctx, id)
	var got []string
	for _, e := range list {
		got = append(got, e.Kind)
	}
	if err != nil || !slices.Equal(got, []string{"totp", "passkey", "passkey", "recovery"}) || list[3].Remaining != RecoveryCodes {
		t.Fatalf("list %+v, %v", list, err)
	}
	if n, err := reg.RemoveAll(ctx, id); n != 4 || err != nil {
		t.Fatalf("removed %d, %v", n, err)
	}
	if list, _ := reg.List(ctx, id); len(list) != 0 {
		t.Fatalf("left %+v", list)
	}
}

func TestTickets(t *testing.T) {
	rdb := redis.NewClient(mustParse(t, testenv.RedisURL(t)))
	t.Cleanup(func() { rdb.Close() })
	prefix := testenv.Prefix(t)
	tickets := NewTickets(rdb, prefix, TicketTTL)
	ctx := t.Context()

	ticket, err := tickets.Issue(ctx, 42)
	if err != nil || len(ticket) != ticketLen {
		t.Fatalf("ticket %q, %v", ticket, err)
	}
	sum := sha256.Sum256([]byte(ticket))
	key := prefix + ":mfa:" + hex.EncodeToString(sum[:])
	if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > TicketTTL {
		t.Fatalf("ticket key %s lives %s", key, ttl)
	}
	keys, _ := rdb.Keys(ctx, prefix+":*").Result()
	if len(keys) != 1 || strings.Contains(strings.Join(keys, " "), ticket) {
		t.Fatalf("keys %v", keys)
	}
	for _, tc := range []struct {
		name string
		run  func() (int64, error)
		want int64 // 0: ErrInvalidTicket
	}{
		{"peek", func() (int64, error) { return tickets.Peek(ctx, ticket) }, 42},
		{"a ticket of the wrong shape", func() (int64, error) { return tickets.Spend(ctx, "short") }, 0},
		{"an unknown ticket", func() (int64, error) { return tickets.Spend(ctx, strings.Repeat("A", ticketLen)) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tc.run()
			if id != tc.want || (tc.want == 0 && !errors.Is(err, ErrInvalidTicket)) || (tc.want != 0 && err != nil) {
				t.Fatalf("got %d, %v; want %d", id, err, tc.want)
			}
		})
	}
	for i := range MaxTicketTries {
		if id, err := tickets.Spend(ctx, ticket); id != 42 || err != nil {
			t.Fatalf("try %d: %d, %v", i+1, id, err)
		}
	}
	if _, err := tickets.Spend(ctx, ticket); !errors.Is(err, ErrInvalidTicket) {
		t.Fatalf("a try too many: %v", err)
	}
	if rdb.Exists(ctx, key).Val() != 0 {
		t.Fatal("the ticket lives on after its last try")
	}

	ticket, _ = tickets.Issue(ctx, 43)
	if id, err := tickets.Consume(ctx, ticket); id != 43 || err != nil {
		t.Fatalf("consume: %d, %v", id, err)
	}
	if _, err := tickets.Consume(ctx, ticket); !errors.Is(err, ErrInvalidTicket) {
		t.Fatalf("consumed twice: %v", err)
	}
}

func mustParse(t *testing.T, u string) *redis.Options {
	t.Helper()
	o, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
