// Package password hashes and verifies account passwords.
//
// New hashes are argon2id PHC strings at no less than OWASP's floor
// (19 MiB, 2 passes, 1 lane). Verify also accepts argon2id and bcrypt hashes
// imported from other systems and reports when a hash should be replaced, so
// old hashes upgrade themselves at the user's next successful login.
//
// Every hash computation runs under a concurrency bound. argon2 needs its
// whole memory cost for each call, so without the bound a login flood would
// exhaust memory; with it, excess requests queue, and leave the queue as soon
// as their client goes away. The computations run on a few workers of the
// Hasher's own that keep their argon2 memory (pool.go), and give way to the
// gate's requests in the Go scheduler (admission.go).
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/authgate/authgate/caddymodule/password/internal/argon2"
)

// Params are argon2id costs.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes over the memory
	Threads uint8  // lanes
}

// The floor is OWASP's minimum argon2id configuration (Password Storage
// Cheat Sheet). The ceiling only catches configuration mistakes, such as a
// memory cost written in bytes instead of KiB.
const (
	minMemory  = 19456 // 19 MiB
	minTime    = 2
	minThreads = 1

	maxMemory  = 4 << 20 // 4 GiB
	maxTime    = 64
	maxThreads = 64
)

// The shape of the hashes this package writes.
const (
	saltLen = 16
	keyLen  = 32
)

// DefaultParams returns OWASP's floor: m=19456 KiB, t=2, p=1. It is cheap
// enough for interactive logins on small machines.
func DefaultParams() Params {
	return Params{Memory: minMemory, Time: minTime, Threads: minThreads}
}

// Validate refuses costs below OWASP's floor and absurdly high ones.
func (p Params) Validate() error {
	switch {
	case p.Memory < minMemory:
		return fmt.Errorf("argon2id memory %d KiB is below the minimum of %d KiB", p.Memory, minMemory)
	case p.Memory > maxMemory:
		return fmt.Errorf("argon2id memory %d KiB is above the maximum of %d KiB (4 GiB)", p.Memory, maxMemory)
	case p.Time < minTime:
		return fmt.Errorf("argon2id time %d is below the minimum of %d", p.Time, minTime)
	case p.Time > maxTime:
		return fmt.Errorf("argon2id time %d is above the maximum of %d", p.Time, maxTime)
	case p.Threads < minThreads:
		return fmt.Errorf("argon2id threads %d is below the minimum of %d", p.Threads, minThreads)
	case p.Threads > maxThreads:
		return fmt.Errorf("argon2id threads %d is above the maximum of %d", p.Threads, maxThreads)
	}
	return nil
}

// Hasher hashes and verifies passwords under a concurrency bound. It is safe
// for concurrent use. Close it when done: its workers run until then.
type Hasher struct {
	// Observe, when set, receives how long each hash computation took
	// (Hash, Verify and Burn; time spent queueing or paused for the gate
	// excluded), for a latency metric. Set it before the Hasher is shared.
	Observe func(time.Duration)

	params Params
	limits limits
	dummy  string // current-params hash of a random password, for Burn

	jobs      chan job // to the workers
	quit      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // the workers
}

// NewHasher returns a Hasher that writes hashes with p and has concurrency
// workers, so that at most that many computations are under way at once.
// concurrency <= 0 or above GOMAXPROCS means GOMAXPROCS (one per core the
// process may use): argon2 and bcrypt are CPU-bound, and more would only
// hold more memory. However many Hashers there are, the process computes
// at most GOMAXPROCS hashes at once, one less while the gate serves
// requests (admission.go). Peak memory is about concurrency × p.Memory KiB.
//
// The workers run until Close.
func NewHasher(p Params, concurrency int) (*Hasher, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("password hasher: %w", err)
	}
	if procs := runtime.GOMAXPROCS(0); concurrency <= 0 || concurrency > procs {
		concurrency = procs
	}
	h := &Hasher{
		params: p,
		limits: limitsFor(p),
	}
	h.startWorkers(concurrency)
	dummy, err := h.Hash(context.Background(), rand.Text())
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("password hasher: dummy hash: %w", err)
	}
	h.dummy = dummy
	return h, nil
}

// Params returns the costs h writes new hashes with.
func (h *Hasher) Params() Params { return h.params }

// Hash returns an argon2id PHC string of password with h's params, a
// 16-byte random salt and a 32-byte key, e.g.
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key> (unpadded standard base64).
// Hash does not judge the password; see CheckStrength.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: salt: %w", err)
	}
	var key []byte
	err := h.run(ctx, func(mem *argon2.Memory) {
		key = mem.IDKey([]byte(password), salt, h.params.Time, h.params.Memory, h.params.Threads, keyLen)
	})
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return encodeArgon2id(h.params, salt, key), nil
}

// Verify reports whether password matches encoded, an argon2id PHC string
// or a bcrypt hash ($2a$, $2b$, $2y$). rehash is true when the password
// matched but encoded is not what Hash would write today (bcrypt, or argon2id
// with other costs or shape): the caller should then store a fresh Hash.
//
// err is non-nil only when encoded is malformed, unsupported or too costly
// to check (errors.Is ErrMalformedHash), or when ctx ends while waiting for
// a slot; a wrong password is ok == false with a nil err.
//
// bcrypt, by design, only looks at the first 72 bytes of a password; such
// hashes are replaced by argon2id at the next login anyway.
func (h *Hasher) Verify(ctx context.Context, password, encoded string) (ok, rehash bool, err error) {
	switch {
	case strings.HasPrefix(encoded, argon2idPrefix):
		a, err := parseArgon2id(encoded, h.limits)
		if err != nil {
			return false, false, err
		}
		var key []byte
		err = h.run(ctx, func(mem *argon2.Memory) {
			key = mem.IDKey([]byte(password), a.salt, a.params.Time, a.params.Memory, a.params.Threads, uint32(len(a.key)))
		})
		if err != nil {
			return false, false, fmt.Errorf("verify password: %w", err)
		}
		if subtle.ConstantTimeCompare(key, a.key) != 1 {
			return false, false, nil
		}
		current := a.params == h.params && len(a.salt) == saltLen && len(a.key) == keyLen
		return true, !current, nil

	case isBcrypt(encoded):
		if err := checkBcrypt(encoded, h.limits); err != nil {
			return false, false, err
		}
		var cmp error
		err := h.run(ctx, func(*argon2.Memory) {
			// Compares in constant time (crypto/subtle) internally.
			cmp = bcrypt.CompareHashAndPassword([]byte(encoded), []byte(password))
		})
		switch {
		case err != nil:
			return false, false, fmt.Errorf("verify password: %w", err)
		case errors.Is(cmp, bcrypt.ErrMismatchedHashAndPassword):
			return false, false, nil
		case cmp != nil:
			return false, false, fmt.Errorf("%w: bcrypt: %v", ErrMalformedHash, cmp)
		}
		return true, true, nil
	}
	return false, false, fmt.Errorf("%w: not argon2id or bcrypt", ErrMalformedHash)
}

// Burn costs what a Verify against a hash with h's params costs, and checks
// nothing. Call it when a login names an unknown user, so that answer takes
// as long as a wrong password and does not reveal which usernames exist.
func (h *Hasher) Burn(ctx context.Context) error {
	// The dummy's password is random and never leaves NewHasher, so this
	// cannot match; the result is irrelevant, only the work counts.
	_, _, err := h.Verify(ctx, "burn", h.dummy)
	return err
}

// run calls f on one of h's workers once the process may compute one more
// hash (admission.go). It waits until ctx ends, so a request whose client
// has left leaves the queue without costing a computation.
func (h *Hasher) run(ctx context.Context, f func(*argon2.Memory)) error {
	// select picks at random among ready cases: check ctx first so an
	// already ended request never takes a free worker.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("waiting for a hashing slot: %w", err)
	}
	took, err := h.submit(ctx, f)
	if err != nil {
		return fmt.Errorf("waiting for a hashing slot: %w", err)
	}
	if h.Observe != nil {
		h.Observe(took)
	}
	return nil
}

func encodeArgon2id(p Params, salt, key []byte) string {
	return fmt.Sprintf("%sv=%d$m=%d,t=%d,p=%d$%s$%s", argon2idPrefix, argon2.Version,
		p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}
