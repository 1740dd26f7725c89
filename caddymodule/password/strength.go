package password

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Password length bounds, in characters (Unicode code points), as ASVS
// counts them. The maximum only keeps absurd inputs out; it is far above any
// passphrase.
const (
	MinLength = 8
	MaxLength = 1024
)

// ErrTooWeak is wrapped by every CheckStrength error.
var ErrTooWeak = errors.New("password too weak")

// CheckStrength applies the password policy: MinLength to MaxLength
// characters of valid UTF-8, and not the username (case and surrounding
// spaces ignored). It imposes no composition rules, which ASVS advises
// against. The error wraps ErrTooWeak and says why, without quoting the
// password.
func CheckStrength(username, password string) error {
	if !utf8.ValidString(password) {
		return fmt.Errorf("%w: not valid UTF-8", ErrTooWeak)
	}
	switch n := utf8.RuneCountInString(password); {
	case n < MinLength:
		return fmt.Errorf("%w: shorter than %d characters", ErrTooWeak, MinLength)
	case n > MaxLength:
		return fmt.Errorf("%w: longer than %d characters", ErrTooWeak, MaxLength)
	}
	if u := strings.TrimSpace(username); u != "" && strings.EqualFold(u, strings.TrimSpace(password)) {
		return fmt.Errorf("%w: same as the username", ErrTooWeak)
	}
	return nil
}
