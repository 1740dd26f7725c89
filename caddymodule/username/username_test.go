package username

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

func TestCanonical(t *testing.T) {
	tests := []struct {
		name, in, want string // want "" means refused
		badBytes       bool
	}{
		// One name, however it is typed.
		{"ASCII lower case", "admin", "admin", false},
		{"ASCII capitals", "Admin", "admin", false},
		{"full-width capitals", "ＡＤＭＩＮ", "admin", false},
		{"full-width lower case", "ａｄｍｉｎ", "admin", false},
		{"accented capitals", "ÉLODIE", "élodie", false},
		{"precomposed é", "\u00e9lodie", "élodie", false},
		{"decomposed é", "e\u0301lodie", "élodie", false},
		{"decomposed É", "E\u0301LODIE", "élodie", false},
		// A combining accent after "admin" composes with the n (NFC) into ń:
		// another letter, another name, and one that does not look like
		// "admin"; nothing is left over to refuse.
		{"admin and a combining acute", "admin\u0301", "admiń", false},
		{"Turkish dotted capital I", "ADMİN", "admin", false},
		{"i and a combining dot above", "admi\u0307n", "admin", false},
		{"sharp s folds to ss", "Straße", "strasse", false},
		{"capital sharp s", "STRAẞE", "strasse", false},
		{"final sigma folds", "νίκος", "νίκοσ", false},
		{"Greek capitals", "ΝΊΚΟΣ", "νίκοσ", false},
		{"half-width katakana", "ｶﾞ", "ガ", false},
		{"Japanese mix", "日本語ひらがなカタカナ", "日本語ひらがなカタカナ", false},
		{"Cyrillic alone", "Иван", "иван", false},
		{"digits and punctuation", "a.b_c-1@example", "a.b_c-1@example", false},
		{"64 characters", strings.Repeat("é", 64), strings.Repeat("é", 64), false},
		{"64 characters typed decomposed", strings.Repeat("e\u0301", 64), strings.Repeat("é", 64), false},

		// Refused.
		{"Cyrillic a in a Latin name", "\u0430dmin", "", false},
		{"Greek omicron in a Latin name", "r\u03bfot", "", false},
		{"Latin and Hangul", "admin한", "", false},
		{"Arabic-Indic digit in a Latin name", "admin\u0661", "", false},
		{"comma", "admin,root", "", false},
		{"full-width comma", "admin，root", "", false},
		{"semicolon", "admin;root", "", false},
		{"double quote", `admin"`, "", false},
		{"angle brackets", "<b>admin</b>", "", false},
		{"colon", "admin:x", "", false},
		{"slash", "admin/x", "", false},
		{"backslash", `admin\x`, "", false},
		{"leading space", " admin", "", false},
		{"trailing space", "admin ", "", false},
		{"inner space", "ad min", "", false},
		{"no-break space", "admin\u00a0", "", false},
		{"tab", "admin\t", "", false},
		{"newline", "admin\nroot", "", false},
		{"DEL", "admin\x7f", "", false},
		{"zero width joiner", "ad\u200dmin", "", false},
		{"soft hyphen", "ad\u00admin", "", false},
		{"right-to-left override", "admin\u202e", "", false},
		{"combining overlay on a Latin letter", "admin\u0336", "", false},
		{"combining mark first", "\u0301admin", "", false},
		{"combining keycap on a digit", "1\u20e3", "", false},
		{"ligature fi", "ﬁle", "", false},
		{"circled letter", "ⓐdmin", "", false},
		{"superscript two", "admin²", "", false},
		{"empty", "", "", false},
		{"65 characters", strings.Repeat("a", 65), "", false},
		{"too many bytes", strings.Repeat("e\u0301", MaxInputBytes/3+1), "", false},
		{"NUL", "admin\x00", "", true},
		{"NUL alone", "\x00", "", true},
		{"invalid UTF-8", "admin\xff", "", true},
		{"truncated UTF-8", "adm\xc3", "", true},
		{"UTF-8 encoded surrogate", "admin\xed\xa0\x80", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonical(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("Canonical(%q) = %q, want refused", tt.in, got)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("error %v does not wrap ErrInvalid", err)
				}
				if errors.Is(err, ErrBadBytes) != tt.badBytes {
					t.Errorf("error %v: wraps ErrBadBytes = %v, want %v", err, !tt.badBytes, tt.badBytes)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Canonical(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			if again, err := Canonical(got); err != nil || again != got {
				t.Fatalf("Canonical(%q) = %q, %v: not idempotent", got, again, err)
			}
		})
	}
}

func TestBadBytes(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		bad      bool
	}{
		{"ASCII", "admin", false},
		{"empty", "", false},
		{"multibyte", "élodie ☃", false},
		{"NUL", "a\x00b", true},
		{"invalid byte", "a\xffb", true},
		{"overlong encoding", "\xc0\xaf", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := BadBytes(tt.in); got != tt.bad {
				t.Fatalf("BadBytes(%q) = %v", tt.in, got)
			}
		})
	}
}

// FuzzCanonical checks the properties every canonical name has, whatever
// the input: Canonical never panics, is idempotent, yields a fixed point of
// NFKC and Unicode case folding (so no two canonical names differ only in
// what those would erase), and never yields a refused character.
func FuzzCanonical(f *testing.F) {
	for _, seed := range []string{
		"admin", "Admin", "ＡＤＭＩＮ", "ａｄｍｉｎ", "ÉLODIE", "\u00e9lodie", "e\u0301lodie",
		"\u0430dmin", "admin\u0301", "admin,root", "ADMİN", "Straße", "ΝΊΚΟΣ", "ｶﾞ",
		"日本語ひらがなカタカナ", "admin\x00", "admin\xff", " admin", "admin\u0336", "ꭰꭱ",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Canonical(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Canonical(%q): error %v does not wrap ErrInvalid", in, err)
			}
			if errors.Is(err, ErrBadBytes) != BadBytes(in) && len(in) <= MaxInputBytes {
				t.Fatalf("Canonical(%q): ErrBadBytes is %v, BadBytes is %v", in, errors.Is(err, ErrBadBytes), BadBytes(in))
			}
			return
		}
		if again, err := Canonical(c); err != nil || again != c {
			t.Fatalf("Canonical(%q) = %q, but Canonical(%q) = %q, %v", in, c, c, again, err)
		}
		if folded := cases.Fold().String(norm.NFKC.String(c)); folded != c {
			t.Fatalf("Canonical(%q) = %q, which NFKC and case folding make %q", in, c, folded)
		}
		if c == "" || BadBytes(c) || utf8.RuneCountInString(c) > MaxLength {
			t.Fatalf("Canonical(%q) = %q", in, c)
		}
		if strings.ContainsAny(c, refused+" \t\r\n") {
			t.Fatalf("Canonical(%q) = %q holds a refused character", in, c)
		}
		for _, r := range c {
			if r < 0x20 || 0x7f <= r && r < 0xa0 {
				t.Fatalf("Canonical(%q) = %q holds the control character %U", in, c, r)
			}
		}
	})
}
