package factors

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"strings"
)

// RecoveryCodes is how many recovery codes a user gets at a time.
const RecoveryCodes = 10

// A recovery code is 10 characters of Crockford's base32 (50 random bits),
// shown as two groups of five: "7mq2k-9xh4d". The alphabet has no i, l, o
// or u, so that what is read off paper is typed right; typed ones are
// forgiven (i and l read as 1, o as 0), as are case, spaces and dashes.
const (
	recoveryLen      = 10
	recoveryAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"
)

// newRecoveryCode returns a new random recovery code as it is shown.
func newRecoveryCode() (string, error) {
	b := make([]byte, recoveryLen)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = recoveryAlphabet[b[i]&31] // 256 is a multiple of 32: uniform
	}
	return string(b[:5]) + "-" + string(b[5:]), nil
}

// NormalRecoveryCode returns a recovery code as typed in the form it is
// hashed in, or "" when it cannot be one.
func NormalRecoveryCode(typed string) string {
	if len(typed) > 64 {
		return ""
	}
	var b strings.Builder
	for _, r := range strings.ToLower(typed) {
		switch {
		case r == ' ' || r == '-' || r == '\t':
			continue
		case r == 'i' || r == 'l':
			r = '1'
		case r == 'o':
			r = '0'
		}
		if r > 0x7f || !strings.ContainsRune(recoveryAlphabet, r) {
			return ""
		}
		b.WriteRune(r)
	}
	if b.Len() != recoveryLen {
		return ""
	}
	return b.String()
}

// recoveryHash is what is stored of a recovery code: HMAC-SHA256 under a
// server key, over the user id and the code. The codes carry 50 random
// bits, so a fast hash is enough: a slow one such as argon2 guards
// guessable passwords, and here would cost ten hashes at every enrolment
// and, salted, a hash per stored code at every try, where a keyed hash is
// looked up by value in one query. The key means a copy of the table alone
// cannot even be searched, and the user id that a row cannot be moved to
// another account.
func recoveryHash(key []byte, userID int64, normal string) []byte {
	m := hmac.New(sha256.New, key)
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], uint64(userID))
	m.Write(id[:])
	m.Write([]byte(normal))
	return m.Sum(nil)
}
