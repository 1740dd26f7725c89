package password

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn"
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

// DefaultMinScore is the zxcvbn score a password needs by default (see
// CheckGuessable): 2, at least a million guesses. It refuses the passwords
// that top the breached lists and their usual variants (12345678, password,
// Password1, qwertyuiop, letmein!, monkey123), where online guessing, even
// throttled, finds them first; it lets through 8 random lower-case letters
// (about 10^8 guesses, which 3 would refuse) and ordinary passphrases.
const DefaultMinScore = 2

// GuessWindow is how many characters of a password CheckGuessable reads.
// zxcvbn's work grows steeply with length, above all with many distinct
// l33t characters (16 of them cost about 3 ms, 24 up to tens of ms, 1024
// minutes): reading a prefix bounds it, and a prefix that is hard to guess
// makes the whole password so. A long password is judged by its beginning.
const GuessWindow = 16

// CheckGuessable refuses a password that zxcvbn scores below minScore
// (0 to 4; 0 refuses nothing): one found in its frequency lists of common
// passwords, names and words (embedded in the program), or made of them
// with keyboard walks, dates, sequences, repeats, l33t spellings or
// userInputs (the username and the email address). It reads the first
// GuessWindow characters. The error wraps ErrTooWeak and quotes nothing.
func CheckGuessable(password string, minScore int, userInputs ...string) error {
	if minScore <= 0 {
		return nil
	}
	var inputs []string
	for _, in := range userInputs {
		if in != "" {
			// Cut like the password, so that one starting with a long
			// input still matches it.
			inputs = append(inputs, in, prefix(in))
		}
	}
	if zxcvbn.PasswordStrength(prefix(password), inputs).Score < minScore {
		return fmt.Errorf("%w: a common password, or too easily guessed", ErrTooWeak)
	}
	return nil
}

// prefix returns the first GuessWindow characters of s.
func prefix(s string) string {
	n := 0
	for i := range s {
		if n == GuessWindow {
			return s[:i]
		}
		n++
	}
	return s
}
