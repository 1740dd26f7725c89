package factors

import (
	"encoding/base32"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/authgate/authgate/caddymodule/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// RFC 6238's test secret (SHA-1) and two of its vectors, cut to 6 digits.
var rfcSecret = []byte("12345678901234567890")

func TestCodeMatchesRFC6238(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		unix int64
		code string // the last 6 of the RFC's 8 digits
	}{
		{"59", 59, "287082"},
		{"1111111109", 1111111109, "081804"},
		{"2000000000", 2000000000, "279037"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Code(rfcSecret, Step(time.Unix(tc.unix, 0))); got != tc.code {
				t.Fatalf("code %s, want %s", got, tc.code)
			}
			// The same as an app computes it (the library the tests use).
			app, err := totp.GenerateCode(base32.StdEncoding.EncodeToString(rfcSecret), time.Unix(tc.unix, 0))
			if err != nil || app != tc.code {
				t.Fatalf("pquerna/otp says %s, %v", app, err)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_900_000_015, 0) // mid-step
	step := Step(now)
	at := func(d int64) string { return Code(rfcSecret, step+d) }
	for _, tc := range []struct {
		name  string
		typed string
		after int64
		step  int64 // relative to now's
		ok    bool
	}{
		{"now", at(0), 0, 0, true},
		{"one step before", at(-1), 0, -1, true},
		{"one step after", at(1), 0, 1, true},
		{"two steps before", at(-2), 0, 0, false},
		{"two steps after", at(2), 0, 0, false},
		{"with a space, as apps show it", at(0)[:3] + " " + at(0)[3:], 0, 0, true},
		{"now, spent already", at(0), step, 0, false},
		{"one step before one spent", at(-1), step, 0, false},
		{"one step after one spent", at(1), step, 1, true},
		{"five digits", at(0)[:5], 0, 0, false},
		{"seven digits", at(0) + "1", 0, 0, false},
		{"letters", "12a456", 0, 0, false},
		{"empty", "", 0, 0, false},
		{"full-width digits", "１２３４５６", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := Match(rfcSecret, tc.typed, now, tc.after)
			if ok != tc.ok || (ok && got != step+tc.step) {
				t.Fatalf("Match = step %d (now %+d), %v; want now %+d, %v", got, got-step, ok, tc.step, tc.ok)
			}
		})
	}
}

func TestStepBoundaries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		unix int64
		step int64
	}{
		{"zero", 0, 0},
		{"last second of the first step", 29, 0},
		{"first second of the second", 30, 1},
		{"before 1970", -1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Step(time.Unix(tc.unix, 0)); got != tc.step {
				t.Fatalf("Step(%d) = %d, want %d", tc.unix, got, tc.step)
			}
		})
	}
}

func TestKeyURL(t *testing.T) {
	t.Parallel()
	link, err := KeyURL("Example Corp", "alice", rfcSecret)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(link)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/Example Corp:alice" {
		t.Fatalf("URL %s (%v)", link, err)
	}
	q := u.Query()
	want := strings.ReplaceAll(SecretText(rfcSecret), " ", "")
	if q.Get("secret") != want || q.Get("issuer") != "Example Corp" || q.Get("digits") != "6" ||
		q.Get("period") != "30" || q.Get("algorithm") != "SHA1" {
		t.Fatalf("query %v", q)
	}
	if got := SecretText(rfcSecret); got != "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ" {
		t.Fatalf("SecretText %q", got)
	}
}

func TestNormalRecoveryCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, typed, want string
	}{
		{"as shown", "7mq2k-9xh4d", "7mq2k9xh4d"},
		{"upper case and spaces", " 7MQ2K 9XH4D ", "7mq2k9xh4d"},
		{"o for 0, i and l for 1", "o1ilo-00000", "01110" + "00000"},
		{"u is none of ours", "uuuuu-uuuuu", ""},
		{"too short", "7mq2k-9xh4", ""},
		{"too long", "7mq2k-9xh4dd", ""},
		{"not ASCII", "7mq2k-9xh4ð", ""},
		{"oversized", strings.Repeat("a", 65), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := NormalRecoveryCode(tc.typed); got != tc.want {
				t.Fatalf("NormalRecoveryCode(%q) = %q, want %q", tc.typed, got, tc.want)
			}
		})
	}
	seen := map[string]bool{}
	for range 100 {
		code, err := newRecoveryCode()
		if err != nil {
			t.Fatal(err)
		}
		if len(code) != 11 || code[5] != '-' || NormalRecoveryCode(code) == "" || seen[code] {
			t.Fatalf("new code %q (seen: %v)", code, seen[code])
		}
		seen[code] = true
	}
}
