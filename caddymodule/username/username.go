// Package username gives every username one canonical form, so that names
// that look alike are one name, and refuses names that would mislead a
// person or a parser downstream.
//
// The base is PRECIS UsernameCaseMapped (RFC 8265): full-width forms become
// their ordinary forms, upper case becomes lower case, and the result is in
// Unicode NFC, so "ＡＤＭＩＮ", "Admin" and "admin" are one name, as are an
// "é" typed as one character or as "e" and a combining accent. RFC 8265
// lets an application refuse more than the profile does; this package
// refuses:
//
//   - names that mix scripts (letters or marks from more than one script
//     besides Common and Inherited; Japanese Han, Hiragana and Katakana may
//     mix), so that a Cyrillic "а" cannot stand in for a Latin "a";
//   - the characters , ; " < > (lists, quoting and markup to whatever reads
//     the Remote-User header) and : / \ (separators in Basic credentials and
//     paths), control characters and spaces;
//   - a combining mark that NFC could not join to a Latin, Greek or Cyrillic
//     letter (or a digit or punctuation mark): every letter those scripts'
//     languages use has a precomposed form, so a mark left over only serves
//     to imitate another name, such as a stroke drawn through a letter;
//   - more than MaxLength characters, the empty name, and names that are not
//     UTF-8 or hold NUL (ErrBadBytes).
//
// Two mappings go beyond the profile, so that a canonical name is also a
// fixed point of NFKC and Unicode case folding, the comparison most other
// software would make: full case folding after the profile's lower-casing
// ("straße" is "strasse", a final "ς" is "σ"), and a combining dot above
// after a letter that already has a dot (i, j) is dropped, since it draws
// nothing: "ADMİN" (Turkish capital dotted I) is "admin".
package username

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/secure/precis"
	"golang.org/x/text/unicode/norm"
)

// Limits on a name: MaxLength characters (code points) of the canonical
// form, and MaxInputBytes bytes of input before any work is done (a name
// typed with combining marks may be longer than its canonical form).
const (
	MaxLength     = 64
	MaxInputBytes = 1024
)

var (
	// ErrInvalid is wrapped by every error of Canonical.
	ErrInvalid = errors.New("invalid username")
	// ErrBadBytes is wrapped as well when the input holds NUL or is not
	// UTF-8: no name at all, rather than a name that is not allowed.
	ErrBadBytes = errors.New("NUL or invalid UTF-8")
)

// refused are the characters no name may hold, beyond what PRECIS refuses.
const refused = `,;"<>:/\`

// Canonical returns the canonical form of a username, or an error wrapping
// ErrInvalid that says why the name is refused. Canonical(Canonical(s)) is
// Canonical(s).
func Canonical(s string) (string, error) {
	c, err := canonical(s)
	if err != nil {
		return "", err
	}
	// The stored form must canonicalise to itself, or a name that matched
	// at registration could stop matching itself later.
	if again, err := canonical(c); err != nil || again != c {
		return "", invalid("not stable under canonicalisation")
	}
	return c, nil
}

// BadBytes tells whether s holds NUL or is not valid UTF-8: such text is no
// name, password or address, and must never reach a store.
func BadBytes(s string) bool {
	return !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0
}

func canonical(s string) (string, error) {
	switch {
	case len(s) > MaxInputBytes:
		return "", invalid("longer than %d bytes", MaxInputBytes)
	case BadBytes(s):
		return "", fmt.Errorf("%w: %w", ErrInvalid, ErrBadBytes)
	case s == "":
		return "", invalid("empty")
	}
	if first, _ := utf8.DecodeRuneInString(s); unicode.IsSpace(first) {
		return "", invalid("starts with a space")
	}
	if last, _ := utf8.DecodeLastRuneInString(s); unicode.IsSpace(last) {
		return "", invalid("ends with a space")
	}
	p, err := precis.UsernameCaseMapped.String(s)
	if err != nil {
		return "", invalid("%v", err)
	}
	// A Caser keeps state: one per call.
	c := norm.NFC.String(dropDotAbove(norm.NFC.String(cases.Fold().String(p))))
	if err := check(c); err != nil {
		return "", err
	}
	return c, nil
}

// check applies the rules beyond PRECIS to a mapped name.
func check(c string) error {
	if c == "" {
		return invalid("empty")
	}
	if n := utf8.RuneCountInString(c); n > MaxLength {
		return invalid("longer than %d characters", MaxLength)
	}
	if i := strings.IndexAny(c, refused); i >= 0 {
		return invalid("holds %q", c[i])
	}
	var scripts []string
	base := "" // script of the last character that is not a mark
	for i, r := range c {
		if unicode.IsControl(r) || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) {
			return invalid("holds the control or space character %U", r)
		}
		script := scriptOf(r)
		if script == "" {
			return invalid("holds %U, which belongs to no script", r)
		}
		if unicode.In(r, unicode.Mn, unicode.Me) && script == "Inherited" {
			switch base {
			case "", "Latin", "Greek", "Cyrillic", "Common":
				return invalid("holds the combining mark %U at byte %d, which joins no letter", r, i)
			}
			continue
		}
		base = script
		if script != "Common" && script != "Inherited" && !slices.Contains(scripts, script) {
			scripts = append(scripts, script)
		}
	}
	if len(scripts) > 1 && !japanese(scripts) {
		return invalid("mixes the scripts %s", strings.Join(scripts, ", "))
	}
	// What other software compares: nothing left for it to fold.
	if cases.Fold().String(norm.NFKC.String(c)) != c {
		return invalid("changes under NFKC and case folding")
	}
	return nil
}

// dropDotAbove removes a combining dot above (U+0307) right after a soft-
// dotted letter such as i or j: the letter's own dot makes way for it, so
// the two draw exactly the letter alone. Case mapping produces it from the
// Turkish capital İ.
func dropDotAbove(s string) string {
	if !strings.ContainsRune(s, '\u0307') {
		return s
	}
	var b strings.Builder
	prev := rune(-1)
	for _, r := range s {
		if r == '\u0307' && prev >= 0 && unicode.Is(unicode.Soft_Dotted, prev) {
			continue
		}
		b.WriteRune(r)
		prev = r
	}
	return b.String()
}

// scriptOf returns the Unicode script of r, or "" when it has none.
func scriptOf(r rune) string {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' {
			return "Latin"
		}
		return "Common"
	}
	for name, table := range unicode.Scripts {
		if unicode.Is(table, r) {
			return name
		}
	}
	return ""
}

// japanese tells whether scripts are all of those Japanese writes together.
func japanese(scripts []string) bool {
	for _, s := range scripts {
		if s != "Han" && s != "Hiragana" && s != "Katakana" {
			return false
		}
	}
	return true
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
