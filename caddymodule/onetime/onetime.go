// Package onetime issues and checks the single-use secrets of password
// recovery: the 6-digit OTP of the users dialect (with its request id) and
// the 56-hex-character reset token of the REST dialect.
//
// Redis holds only keyed hashes of them:
//
//	<prefix>:{<userhash>}:otp        hash {reqid, mac, tries}, expiring after the OTP lifetime
//	<prefix>:reset:<sha256 hex>      "<user id>:<issued, Unix ns>", expiring after the same lifetime
//
// An OTP has a million values, so a plain hash of it would be reversed at
// once by anyone who can read Redis; the HMAC key lives in PostgreSQL.
package onetime

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/caddymodule/store"
	"github.com/authgate/authgate/caddymodule/username"
)

// ErrInvalid is returned for a wrong, expired, used or over-guessed secret.
// The cases are not told apart, so a guesser learns nothing.
var ErrInvalid = errors.New("invalid or expired code")

// MaxGuesses is how many times one OTP may be tried; the last wrong guess
// kills it.
const MaxGuesses = 5

// ResetTokenLen is the length of a reset token in hex characters.
const ResetTokenLen = 56

// Store issues and checks one-time secrets.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	key    []byte
	ttl    time.Duration
}

// New returns a store; key is the HMAC key, ttl the lifetime of a secret.
func New(rdb redis.UniversalClient, prefix string, key []byte, ttl time.Duration) *Store {
	return &Store{rdb: rdb, prefix: prefix, key: key, ttl: ttl}
}

// TTL is the lifetime of the secrets this store issues.
func (s *Store) TTL() time.Duration { return s.ttl }

// IssueOTP makes a new OTP for the user, replacing any earlier one, and
// returns its request id and the code to mail.
func (s *Store) IssueOTP(ctx context.Context, userhash string) (reqid, code string, err error) {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return "", "", err
	}
	code = fmt.Sprintf("%06d", n.Int64())
	if reqid, err = newReqid(); err != nil {
		return "", "", err
	}
	key := s.otpKey(userhash)
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		p.HSet(ctx, key, "reqid", reqid, "mac", s.mac(userhash, reqid, code), "tries", 0)
		p.PExpire(ctx, key, s.ttl)
		return nil
	})
	if err != nil {
		return "", "", fmt.Errorf("storing OTP: %w", store.RedisErr(err))
	}
	return reqid, code, nil
}

func newReqid() (string, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	return hex.EncodeToString(id), nil
}

// Decoy returns what a recovery page shows, in place of an account's
// userhash and a new OTP's request id, for a name that gets no code (no
// such account, or no email address), so that the page looks the same
// either way: a userhash of the same shape, the same for the name at every
// request as a real one is, and a fresh request id. Nothing is stored; a
// code sent with them is simply wrong.
func (s *Store) Decoy(name string) (userhash, reqid string, err error) {
	// In canonical form, as accounts compare names: "Bob" and "ｂｏｂ" are
	// one name, and must get one decoy as they would get one account.
	if c, err := username.Canonical(name); err == nil {
		name = c
	}
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("decoy userhash\x00" + name))
	reqid, err = newReqid()
	return hex.EncodeToString(m.Sum(nil)[:16]), reqid, err
}

// guessScript spends one guess before the caller compares, so that
// concurrent guesses cannot exceed the limit; the guess that reaches the
// limit deletes the OTP.
var guessScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if tries > tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) return false end
return redis.call('HMGET', KEYS[1], 'reqid', 'mac')
`)

// CheckOTP spends one guess at the user's OTP. On a match the OTP is used up;
// only one of several concurrent right guesses succeeds.
func (s *Store) CheckOTP(ctx context.Context, userhash, reqid, code string) error {
	key := s.otpKey(userhash)
	vals, err := guessScript.Run(ctx, s.rdb, []string{key}, MaxGuesses).StringSlice()
	if errors.Is(err, redis.Nil) {
		return ErrInvalid
	}
	if err != nil {
		return fmt.Errorf("checking OTP: %w", store.RedisErr(err))
	}
	if len(vals) != 2 {
		return fmt.Errorf("checking OTP: the script answered %d values, not [reqid, mac]", len(vals))
	}
	reqOK := subtle.ConstantTimeCompare([]byte(vals[0]), []byte(reqid))
	macOK := subtle.ConstantTimeCompare([]byte(vals[1]), []byte(s.mac(userhash, reqid, code)))
	if reqOK&macOK != 1 {
		return ErrInvalid
	}
	deleted, err := s.rdb.Del(ctx, key).Result()
	if err != nil {
		return fmt.Errorf("using OTP: %w", store.RedisErr(err))
	}
	if deleted == 0 {
		return ErrInvalid
	}
	return nil
}

// DropOTP ends the user's OTP, if any.
func (s *Store) DropOTP(ctx context.Context, userhash string) error {
	if err := s.rdb.Del(ctx, s.otpKey(userhash)).Err(); err != nil {
		return fmt.Errorf("dropping OTP: %w", store.RedisErr(err))
	}
	return nil
}

// IssueResetToken makes a reset token for the user id.
func (s *Store) IssueResetToken(ctx context.Context, userID int64) (string, error) {
	b := make([]byte, ResetTokenLen/2)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b)
	value := strconv.FormatInt(userID, 10) + ":" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := s.rdb.Set(ctx, s.resetKey(token), value, s.ttl).Err(); err != nil {
		return "", fmt.Errorf("storing reset token: %w", store.RedisErr(err))
	}
	return token, nil
}

// ConsumeResetToken uses up the token and returns the user id it was for.
// Only one of several concurrent calls with the same token succeeds.
func (s *Store) ConsumeResetToken(ctx context.Context, token string) (int64, error) {
	if !validResetToken(token) {
		return 0, ErrInvalid
	}
	val, err := s.rdb.GetDel(ctx, s.resetKey(token)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, ErrInvalid
	}
	if err != nil {
		return 0, fmt.Errorf("using reset token: %w", store.RedisErr(err))
	}
	id, _, err := parseReset(val)
	return id, err
}

func parseReset(val string) (int64, time.Time, error) {
	idText, issuedText, _ := strings.Cut(val, ":")
	id, err1 := strconv.ParseInt(idText, 10, 64)
	issued, err2 := strconv.ParseInt(issuedText, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, time.Time{}, ErrInvalid
	}
	return id, time.Unix(0, issued), nil
}

// ResetTokenUser returns the user id of a live token and when it was
// issued, without using it, so that the new password can be checked before
// the token is spent, and a token older than the password refused.
func (s *Store) ResetTokenUser(ctx context.Context, token string) (int64, time.Time, error) {
	if !validResetToken(token) {
		return 0, time.Time{}, ErrInvalid
	}
	val, err := s.rdb.Get(ctx, s.resetKey(token)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, time.Time{}, ErrInvalid
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("reading reset token: %w", store.RedisErr(err))
	}
	return parseReset(val)
}

func validResetToken(token string) bool {
	if len(token) != ResetTokenLen {
		return false
	}
	_, err := hex.DecodeString(token)
	return err == nil
}

func (s *Store) mac(userhash, reqid, code string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("otp\x00" + userhash + "\x00" + reqid + "\x00" + code))
	return hex.EncodeToString(m.Sum(nil))
}

func (s *Store) otpKey(userhash string) string {
	return s.prefix + ":{" + userhash + "}:otp"
}

func (s *Store) resetKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return s.prefix + ":reset:" + hex.EncodeToString(sum[:])
}
