// Package device signs and checks device cookies (OWASP, "Slow Down Online
// Guessing Attacks with Device Cookies"): a browser or client that has
// logged in to an account gets one, and its later failed logins to that
// account count on its own allowance, so that guesses from elsewhere cannot
// lock the owner out.
//
// A cookie value is
//
//	v1.<user key>.<device id>.<expiry>.<mac>
//
// user key: the throttle's keyed hash of the username (32 hex), so that the
// cookie is checked before any database query; device id: 16 bytes from
// crypto/rand (32 hex); expiry: Unix seconds; mac: HMAC-SHA256 of everything
// before it (base64url), under a key derived from the server secret for this
// purpose alone.
package device

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Lifetime of a device cookie. The owner gets a fresh one at every login, so
// it lapses only for someone who has not logged in for half a year, and
// then costs them nothing but their own allowance; it stays well under the
// 400 days to which browsers cap cookie lifetimes.
const Lifetime = 180 * 24 * time.Hour

const (
	version = "v1"
	// purpose labels the key derived from the server secret, so that no MAC
	// made for another use can pass for a device cookie.
	purpose = "authgate device cookie v1"
	// maxLen bounds what is parsed: a value is about 130 bytes.
	maxLen = 256
)

// Signer makes and checks device cookies. It is safe for concurrent use.
type Signer struct {
	key []byte
	now func() time.Time
}

// New returns a signer whose key is derived from the server secret.
func New(secret []byte) *Signer {
	key, err := hkdf.Key(sha256.New, secret, nil, purpose, sha256.Size)
	if err != nil {
		panic("device: deriving key: " + err.Error()) // only for absurd lengths
	}
	return &Signer{key: key, now: time.Now}
}

// Issue returns a new cookie value, with a new device id, for the user key,
// and when it expires.
func (s *Signer) Issue(userKey string) (string, time.Time) {
	id := make([]byte, 16)
	_, _ = rand.Read(id) // never fails (crypto/rand)
	expires := s.now().Add(Lifetime).Truncate(time.Second)
	return s.Sign(userKey, hex.EncodeToString(id), expires), expires
}

// Sign returns the cookie value of a payload. Issue is the way to make a new
// cookie; Sign is for tests that need a particular one (an expired one).
func (s *Signer) Sign(userKey, id string, expires time.Time) string {
	payload := version + "." + userKey + "." + id + "." + strconv.FormatInt(expires.Unix(), 10)
	return payload + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload))
}

// Verify returns the device id of value when this server signed it for
// userKey and it has not expired. Anything else (absent, forged, expired,
// for another user, of an unknown version) is no device at all.
func (s *Signer) Verify(value, userKey string) (string, bool) {
	if len(value) > maxLen {
		return "", false
	}
	cut := strings.LastIndexByte(value, '.')
	if cut < 0 {
		return "", false
	}
	payload := value[:cut]
	got, err := base64.RawURLEncoding.Strict().DecodeString(value[cut+1:])
	if err != nil || !hmac.Equal(got, s.mac(payload)) {
		return "", false
	}
	// Signed by us, so well formed; the fields are checked all the same,
	// since the id goes into a Redis key.
	parts := strings.Split(payload, ".")
	if len(parts) != 4 || parts[0] != version || !isHex32(parts[1]) || !isHex32(parts[2]) {
		return "", false
	}
	if subtle.ConstantTimeCompare([]byte(parts[1]), []byte(userKey)) != 1 {
		return "", false
	}
	expires, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil || s.now().Unix() >= expires {
		return "", false
	}
	return parts[2], true
}

func (s *Signer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

func isHex32(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
