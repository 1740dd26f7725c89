package sessions

// What the account page needs of the store: end one session by the ID that
// List gives, and carry a new email address into the user's live sessions.
// Kept apart from sessions.go so that a new key layout can replace them
// whole.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/store"
)

// idLen is the length of a session ID: the hex SHA-256 of the token's
// secret.
const idLen = 64

// endScript ends one session and announces it, only if it was live: a
// forged ID costs the other instances nothing. KEYS[1] session key,
// KEYS[2] index; ARGV[1] id, ARGV[2] invalidation channel, ARGV[3]
// announcement. Returns the number ended (0 or 1) and how many instances
// heard the announcement.
var endScript = redis.NewScript(`
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local heard = 0
if n > 0 then heard = redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return {n, heard}
`)

// End ends the user's session whose ID (as List gives it) is id, and
// returns ErrNotFound when the user has no such live session. The ID is
// looked up under userhash alone, so an ID of another user's session ends
// nothing. Like Delete, it returns only once every instance's cache has
// forgotten the session.
func (s *Store) End(ctx context.Context, userhash, id string) error {
	// Both come near a Redis key: only their exact shapes may.
	if !lowerHex(userhash, userhashLen) || !lowerHex(id, idLen) {
		return ErrNotFound
	}
	if s.cache != nil {
		s.cache.dropUser(userhash)
	}
	note := newAnnouncement(userhash)
	res, err := endScript.Run(ctx, s.rdb, []string{s.sessionKey(userhash, id), s.indexKey(userhash)},
		id, s.channel(), note.payload()).Int64Slice()
	if err != nil {
		return fmt.Errorf("ending session: %w", store.RedisErr(err))
	}
	if len(res) != 2 {
		return fmt.Errorf("ending session: the script answered %v, not [ended, heard]", res)
	}
	s.awaitHeard(ctx, note, int(res[1]))
	if res[0] == 0 {
		return ErrNotFound
	}
	return nil
}

// SetEmail puts email into every live session of the user, so that the
// gate passes the new address upstream at once, and makes every instance's
// cache forget the sessions that carried the old one. A session that ends
// meanwhile stays ended.
func (s *Store) SetEmail(ctx context.Context, userhash, email string) error {
	if !lowerHex(userhash, userhashLen) {
		return fmt.Errorf("userhash of %d characters", len(userhash))
	}
	ids, err := s.rdb.ZRange(ctx, s.indexKey(userhash), 0, -1).Result()
	if err != nil {
		return fmt.Errorf("changing the sessions' email: %w", store.RedisErr(err))
	}
	gets := make([]*redis.StringCmd, len(ids))
	if len(ids) > 0 {
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				gets[i] = p.Get(ctx, s.sessionKey(userhash, id))
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("changing the sessions' email: %w", store.RedisErr(err))
		}
	}
	if s.cache != nil {
		s.cache.dropUser(userhash)
	}
	note := newAnnouncement(userhash)
	var heard *redis.IntCmd
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			var sess Session
			if gets[i].Err() != nil || json.Unmarshal([]byte(gets[i].Val()), &sess) != nil {
				continue // ended since the index was read
			}
			sess.Email = email
			record, err := json.Marshal(sess)
			if err != nil {
				return err
			}
			// XX: a session ended since it was read is not brought back;
			// KEEPTTL: nor does it live longer.
			p.SetArgs(ctx, s.sessionKey(userhash, id), record, redis.SetArgs{Mode: "XX", KeepTTL: true})
		}
		heard = p.Publish(ctx, s.channel(), note.payload())
		return nil
	})
	// SET XX answers nil for a key that is gone: not a failure.
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("changing the sessions' email: %w", store.RedisErr(err))
	}
	s.awaitHeard(ctx, note, int(heard.Val()))
	return nil
}

// lowerHex tells whether s is n lower-case hex digits.
func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
