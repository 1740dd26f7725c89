package factors

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/store"
)

// TicketTTL is how long a login waits for its second factor.
const TicketTTL = 5 * time.Minute

// MaxTicketTries is how many codes one ticket may be tried with; the last
// wrong one ends it, and the login starts again from the password.
const MaxTicketTries = 5

// ticketLen is the length of a ticket: 32 random bytes, base64url.
const ticketLen = 43

// ErrInvalidTicket is a ticket that names no pending login: unknown,
// expired, spent or tried too often. The cases are not told apart.
var ErrInvalidTicket = errors.New("no such pending login")

// Tickets keeps the logins that wait for their second factor in Redis: the
// password was right, no session has started, and the client holds a
// ticket that names the step. Redis holds only its hash:
//
//	<prefix>:mfa:<sha256 hex of the ticket>   hash {uid, tries}, expiring after the TTL
//
// A ticket is 256 random bits, so a plain hash cannot be reversed.
type Tickets struct {
	rdb    redis.UniversalClient
	prefix string
	ttl    time.Duration
}

// NewTickets returns a ticket store; ttl is the lifetime of a ticket.
func NewTickets(rdb redis.UniversalClient, prefix string, ttl time.Duration) *Tickets {
	return &Tickets{rdb: rdb, prefix: prefix, ttl: ttl}
}

func (t *Tickets) key(ticket string) (string, bool) {
	if len(ticket) != ticketLen {
		return "", false
	}
	if _, err := base64.RawURLEncoding.DecodeString(ticket); err != nil {
		return "", false
	}
	sum := sha256.Sum256([]byte(ticket))
	return t.prefix + ":mfa:" + hex.EncodeToString(sum[:]), true
}

// Issue starts a pending login of the user and returns its ticket.
func (t *Tickets) Issue(ctx context.Context, userID int64) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	ticket := base64.RawURLEncoding.EncodeToString(b)
	key, _ := t.key(ticket)
	_, err := t.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "uid", userID, "tries", 0)
		p.PExpire(ctx, key, t.ttl)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("storing a login ticket: %w", store.RedisErr(err))
	}
	return ticket, nil
}

// spendScript counts one try of a ticket before the caller checks the
// code, so that concurrent tries cannot exceed the limit; the try over the
// limit ends the ticket.
var spendScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if tries > tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) return false end
return redis.call('HGET', KEYS[1], 'uid')
`)

// Spend counts one try of the ticket and returns the user it is for.
func (t *Tickets) Spend(ctx context.Context, ticket string) (int64, error) {
	key, ok := t.key(ticket)
	if !ok {
		return 0, ErrInvalidTicket
	}
	return uid(spendScript.Run(ctx, t.rdb, []string{key}, MaxTicketTries).Result())
}

// Peek returns the user a ticket is for, without spending a try (for a
// factor that sets up its own check first, such as a passkey's challenge).
func (t *Tickets) Peek(ctx context.Context, ticket string) (int64, error) {
	key, ok := t.key(ticket)
	if !ok {
		return 0, ErrInvalidTicket
	}
	return uid(t.rdb.HGet(ctx, key, "uid").Result())
}

// consumeScript ends a ticket and returns its user; of two requests that
// finish one login, only one gets it.
var consumeScript = redis.NewScript(`
local uid = redis.call('HGET', KEYS[1], 'uid')
if not uid then return false end
redis.call('DEL', KEYS[1])
return uid
`)

// Consume ends the ticket, once the second factor is proven, and returns
// the user it was for.
func (t *Tickets) Consume(ctx context.Context, ticket string) (int64, error) {
	key, ok := t.key(ticket)
	if !ok {
		return 0, ErrInvalidTicket
	}
	return uid(consumeScript.Run(ctx, t.rdb, []string{key}).Result())
}

// uid reads the user id a ticket's command answered.
func uid[T any](v T, err error) (int64, error) {
	if errors.Is(err, redis.Nil) {
		return 0, ErrInvalidTicket
	}
	if err != nil {
		return 0, fmt.Errorf("reading a login ticket: %w", store.RedisErr(err))
	}
	s, ok := any(v).(string)
	if !ok {
		return 0, fmt.Errorf("reading a login ticket: the script answered %T", v)
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("reading a login ticket: user id %q", s)
	}
	return id, nil
}
