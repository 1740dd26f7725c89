package password

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/authgate/authgate/caddymodule/password/internal/argon2"
)

// ErrMalformedHash is wrapped by the errors of Verify for a stored hash that
// is malformed, of an unsupported kind, or too costly to check.
var ErrMalformedHash = errors.New("malformed password hash")

const argon2idPrefix = "$argon2id$"

// limits bound what checking one stored hash may cost. Hashes come from the
// database and from imports: a hostile or broken one must not make a login
// allocate gigabytes or burn minutes of CPU.
type limits struct {
	memory     uint32 // KiB
	time       uint32
	threads    uint8
	bcryptCost int
}

// defaultLimits admit every common configuration (libsodium's "moderate"
// 256 MiB, RFC 9106's and OWASP's recommendations, bcrypt costs up to 16,
// about 5 s on a current core) and nothing far beyond.
var defaultLimits = limits{memory: 256 << 10, time: 16, threads: 64, bcryptCost: 16}

// Sizes accepted in imported argon2id hashes. The PHC format asks for at
// least 8 bytes of salt; a key under 16 bytes would be easier to collide with
// than to guess.
const (
	minSaltLen, maxSaltLen = 8, 64
	minKeyLen, maxKeyLen   = 16, 64
)

// limitsFor returns defaultLimits, raised where needed so that hashes
// written with p (which may exceed them) always verify.
func limitsFor(p Params) limits {
	l := defaultLimits
	l.memory = max(l.memory, p.Memory)
	l.time = max(l.time, p.Time)
	l.threads = max(l.threads, p.Threads)
	return l
}

// IsHash tells whether s is a hash Verify accepts: an argon2id PHC string or
// a bcrypt hash ($2a$, $2b$, $2y$) within the default cost limits. The
// importer uses it to sort htpasswd and PHC lines from anything else.
func IsHash(s string) bool {
	switch {
	case strings.HasPrefix(s, argon2idPrefix):
		_, err := parseArgon2id(s, defaultLimits)
		return err == nil
	case isBcrypt(s):
		return checkBcrypt(s, defaultLimits) == nil
	}
	return false
}

// argon2idHash is a parsed argon2id PHC string.
type argon2idHash struct {
	params    Params
	salt, key []byte
}

// parseArgon2id parses $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>
// strictly (fields in that order, canonical decimals, unpadded standard
// base64, no optional keyid or data parameters) and refuses costs beyond lim.
// Errors name the faulty field but never quote the hash.
func parseArgon2id(s string, lim limits) (argon2idHash, error) {
	fail := func(format string, args ...any) (argon2idHash, error) {
		return argon2idHash{}, fmt.Errorf("%w: argon2id: %s", ErrMalformedHash, fmt.Sprintf(format, args...))
	}
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return fail("want $argon2id$v=..$m=..,t=..,p=..$salt$key")
	}
	if f[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return fail("unsupported version (want v=%d)", argon2.Version)
	}
	kv := strings.Split(f[3], ",")
	if len(kv) != 3 {
		return fail("want exactly the parameters m, t and p")
	}
	m, err1 := decimal(kv[0], "m=", 32)
	t, err2 := decimal(kv[1], "t=", 32)
	p, err3 := decimal(kv[2], "p=", 8)
	if err := errors.Join(err1, err2, err3); err != nil {
		return fail("parameters: %v", err)
	}
	a := argon2idHash{params: Params{Memory: uint32(m), Time: uint32(t), Threads: uint8(p)}}
	switch {
	case t < 1 || p < 1:
		return fail("time and threads must be at least 1")
	case m < 8*p:
		return fail("memory must be at least 8 KiB per thread")
	case m > uint64(lim.memory):
		return fail("memory %d KiB exceeds the limit of %d KiB", m, lim.memory)
	case t > uint64(lim.time):
		return fail("time %d exceeds the limit of %d", t, lim.time)
	case p > uint64(lim.threads):
		return fail("threads %d exceeds the limit of %d", p, lim.threads)
	}
	var err error
	if a.salt, err = base64.RawStdEncoding.Strict().DecodeString(f[4]); err != nil {
		return fail("salt is not unpadded base64")
	}
	if a.key, err = base64.RawStdEncoding.Strict().DecodeString(f[5]); err != nil {
		return fail("key is not unpadded base64")
	}
	if len(a.salt) < minSaltLen || len(a.salt) > maxSaltLen {
		return fail("salt of %d bytes, want %d to %d", len(a.salt), minSaltLen, maxSaltLen)
	}
	if len(a.key) < minKeyLen || len(a.key) > maxKeyLen {
		return fail("key of %d bytes, want %d to %d", len(a.key), minKeyLen, maxKeyLen)
	}
	return a, nil
}

// decimal parses "<name><digits>" where digits is a canonical decimal
// (no sign, no leading zero), as PHC strings require.
func decimal(s, name string, bits int) (uint64, error) {
	digits, ok := strings.CutPrefix(s, name)
	if !ok {
		return 0, fmt.Errorf("want %q", name)
	}
	v, err := strconv.ParseUint(digits, 10, bits)
	if err != nil || strconv.FormatUint(v, 10) != digits {
		return 0, fmt.Errorf("%q wants a decimal below 2^%d", name, bits)
	}
	return v, nil
}

// isBcrypt tells whether s claims to be a bcrypt hash in one of the variants
// accepted: $2a$, $2b$ (OpenBSD) and $2y$ (PHP, Apache htpasswd). They differ
// only in the bugs of old implementations that each prefix marks as fixed;
// x/crypto/bcrypt has none of those bugs and checks all three alike.
func isBcrypt(s string) bool {
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}

// checkBcrypt checks the exact shape $2?$<cost>$<22 salt + 31 hash chars>
// and refuses costs beyond lim: x/crypto/bcrypt itself accepts up to 31,
// which is days of CPU.
func checkBcrypt(s string, lim limits) error {
	const size = 60 // "$2b$" + 2-digit cost + "$" + 53 characters
	if len(s) != size || s[6] != '$' {
		return fmt.Errorf("%w: bcrypt: want $2b$<cost>$ and 53 characters", ErrMalformedHash)
	}
	cost, err := strconv.Atoi(s[4:6])
	if err != nil || s[4] < '0' || s[4] > '9' {
		return fmt.Errorf("%w: bcrypt: cost is not two digits", ErrMalformedHash)
	}
	if cost < 4 || cost > lim.bcryptCost {
		return fmt.Errorf("%w: bcrypt: cost %d outside 4 to %d", ErrMalformedHash, cost, lim.bcryptCost)
	}
	for _, c := range s[7:] {
		if !strings.ContainsRune(bcryptAlphabet, c) {
			return fmt.Errorf("%w: bcrypt: character outside its base64 alphabet", ErrMalformedHash)
		}
	}
	return nil
}

const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
