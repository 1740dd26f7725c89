package passkeys

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/store"
)

// ErrNoCeremony: the ceremony is unknown, over (its challenge answered
// once already) or expired. The cases are not told apart.
var ErrNoCeremony = errors.New("no such passkey ceremony, or it expired or was used")

// Binding names a ceremony: what it is for and whom it belongs to. A
// ceremony's challenge is answered at most once, and only by whom it is
// bound to: the signed-in user's session (adding a passkey), the browser
// holding a random ticket (signing in with one), or the pending login of
// a user who gave the password (the second factor).
type Binding struct {
	// Kind is "register", "login" or "second".
	Kind string
	// Userhash is the account's, when the ceremony has one ("" for a
	// discoverable sign-in, which learns the account only at the end).
	Userhash string
	// Ticket is the secret that binds it: a session id or a ticket from
	// crypto/rand; only its hash is stored.
	Ticket string
}

// Ceremonies keeps the state of ceremonies under way in Redis, short-lived
// and single use:
//
//	<prefix>:{<userhash>}:passkey:<kind>:<sha256 hex of the ticket>   when bound to an account
//	<prefix>:passkey:<kind>:<sha256 hex of the ticket>                a discoverable sign-in
type Ceremonies struct {
	rdb    redis.UniversalClient
	prefix string
	ttl    time.Duration
}

// NewCeremonies returns a ceremony store whose entries live ttl.
func NewCeremonies(rdb redis.UniversalClient, prefix string, ttl time.Duration) *Ceremonies {
	return &Ceremonies{rdb: rdb, prefix: prefix, ttl: ttl}
}

// Save stores the state of a new ceremony, replacing any of the same
// binding.
func (c *Ceremonies) Save(ctx context.Context, b Binding, state []byte) error {
	if err := c.rdb.Set(ctx, c.key(b), state, c.ttl).Err(); err != nil {
		return fmt.Errorf("storing passkey ceremony: %w", store.RedisErr(err))
	}
	return nil
}

// Take returns the state of the ceremony and ends it, in one step: of
// two concurrent answers, one gets it.
func (c *Ceremonies) Take(ctx context.Context, b Binding) ([]byte, error) {
	state, err := c.rdb.GetDel(ctx, c.key(b)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNoCeremony
	}
	if err != nil {
		return nil, fmt.Errorf("reading passkey ceremony: %w", store.RedisErr(err))
	}
	return state, nil
}

func (c *Ceremonies) key(b Binding) string {
	sum := sha256.Sum256([]byte(b.Ticket))
	tail := ":passkey:" + b.Kind + ":" + hex.EncodeToString(sum[:])
	if b.Userhash != "" {
		return c.prefix + ":{" + b.Userhash + "}" + tail
	}
	return c.prefix + tail
}
