package factors

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// The TOTP parameters: those every authenticator app supports (and many
// support no other): HMAC-SHA1, 6 digits, 30-second steps. SHA-1 is sound
// in HMAC; the strength is the 160-bit secret.
const (
	Period     = 30
	Digits     = 6
	SecretSize = 20 // bytes: 160 bits, as RFC 4226 recommends
	// Skew is how many steps a code may be off the server's clock, either
	// way: a phone's clock a little off, or a code typed as it turned.
	Skew = 1
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewSecret returns a new random TOTP secret.
func NewSecret() ([]byte, error) {
	secret := make([]byte, SecretSize)
	_, err := rand.Read(secret)
	return secret, err
}

// SecretText is the secret as people type it into an app: base32, in groups
// of four.
func SecretText(secret []byte) string {
	s := b32.EncodeToString(secret)
	var b strings.Builder
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s[i:min(i+4, len(s))])
	}
	return b.String()
}

// KeyURL is the otpauth:// URL of the secret that a QR code carries to an
// app (the Key URI format of Google Authenticator, which all apps read).
func KeyURL(issuer, account string, secret []byte) (string, error) {
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: issuer, AccountName: account, Secret: secret,
		Period: Period, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return "", err
	}
	return key.URL(), nil
}

// Step is the time step of t.
func Step(t time.Time) int64 {
	s := t.Unix()
	if s < 0 {
		return (s - Period + 1) / Period
	}
	return s / Period
}

// Code returns the code of the secret at the time step.
func Code(secret []byte, step int64) string {
	code, err := hotp.GenerateCodeCustom(b32.EncodeToString(secret), uint64(step), hotp.ValidateOpts{
		Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil { // only for a secret that is not base32, which ours always is
		panic("factors: " + err.Error())
	}
	return code
}

// NormalCode returns a code as typed (spaces and dashes, as some apps show
// it, taken out) when it has the form of one, 6 digits, and "" otherwise.
func NormalCode(typed string) string {
	if len(typed) > 16 {
		return ""
	}
	code := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, typed)
	if len(code) != Digits {
		return ""
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return ""
		}
	}
	return code
}

// Match returns the newest time step within Skew of now whose code is the
// one typed, and whether there is one later than the step after: a code of
// that step or an earlier one was accepted already, and must never work
// again (RFC 6238, section 5.2). Every candidate is computed and compared
// in constant time whatever matches, so the time taken tells nothing of
// the code.
func Match(secret []byte, typed string, now time.Time, after int64) (int64, bool) {
	code := NormalCode(typed)
	if code == "" {
		return 0, false
	}
	current := Step(now)
	var found int64
	ok := false
	for step := current - Skew; step <= current+Skew; step++ {
		if subtle.ConstantTimeCompare([]byte(Code(secret, step)), []byte(code)) == 1 && step > after {
			found, ok = step, true
		}
	}
	return found, ok
}
