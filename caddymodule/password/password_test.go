package password

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// newHasher returns a Hasher with the default params that counts its
// computations.
func newHasher(t *testing.T, concurrency int) (*Hasher, *atomic.Int32) {
	t.Helper()
	h, err := NewHasher(DefaultParams(), concurrency)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	var n atomic.Int32
	h.Observe = func(d time.Duration) {
		if d <= 0 {
			t.Errorf("Observe(%v), want a positive duration", d)
		}
		n.Add(1)
	}
	return h, &n
}

// phc builds an argon2id PHC string by hand, independently of encodeArgon2id.
func phc(password string, p Params, salt []byte, keyLen uint32) string {
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, keyLen)
	b64 := base64.RawStdEncoding.EncodeToString
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", p.Memory, p.Time, p.Threads, b64(salt), b64(key))
}

func TestParamsValidate(t *testing.T) {
	def := DefaultParams()
	if def != (Params{Memory: 19456, Time: 2, Threads: 1}) {
		t.Fatalf("DefaultParams() = %+v, want OWASP's m=19456 t=2 p=1", def)
	}
	tests := []struct {
		name string
		p    Params
		ok   bool
	}{
		{"default", def, true},
		{"stronger", Params{Memory: 65536, Time: 3, Threads: 4}, true},
		{"max", Params{Memory: 4 << 20, Time: 64, Threads: 64}, true},
		{"memory below floor", Params{Memory: 19455, Time: 2, Threads: 1}, false},
		{"time below floor", Params{Memory: 19456, Time: 1, Threads: 1}, false},
		{"no threads", Params{Memory: 19456, Time: 2, Threads: 0}, false},
		{"zero", Params{}, false},
		{"memory over 4 GiB", Params{Memory: 4<<20 + 1, Time: 2, Threads: 1}, false},
		{"absurd time", Params{Memory: 19456, Time: 65, Threads: 1}, false},
		{"absurd threads", Params{Memory: 19456, Time: 2, Threads: 65}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if (err == nil) != tt.ok {
				t.Errorf("Validate(%+v) = %v, want ok=%v", tt.p, err, tt.ok)
			}
			// NewHasher makes a hash at once: only try the invalid params.
			if !tt.ok {
				if _, err := NewHasher(tt.p, 1); err == nil {
					t.Errorf("NewHasher(%+v) accepted invalid params", tt.p)
				}
			}
		})
	}
}

func TestHashRoundTrip(t *testing.T) {
	h, n := newHasher(t, 2)
	ctx := context.Background()
	const pw = "correct horse battery staple ✓"

	enc, err := h.Hash(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	format := regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !format.MatchString(enc) {
		t.Fatalf("Hash() = %q, want the PHC format with a 16-byte salt and 32-byte key", enc)
	}
	if !IsHash(enc) {
		t.Error("IsHash(Hash()) = false")
	}
	enc2, err := h.Hash(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	if enc == enc2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}

	for _, tt := range []struct {
		password string
		ok       bool
	}{
		{pw, true},
		{pw + " ", false},
		{strings.ToUpper(pw), false},
		{"", false},
	} {
		ok, rehash, err := h.Verify(ctx, tt.password, enc)
		if err != nil || ok != tt.ok || rehash {
			t.Errorf("Verify(%q) = %v, %v, %v; want %v, false, nil", tt.password, ok, rehash, err, tt.ok)
		}
	}
	if got := n.Load(); got != 6 {
		t.Errorf("Observe called %d times, want 6 (2 hashes, 4 verifies)", got)
	}
}

// TestVerifyArgon2id checks hand-made and foreign PHC strings: what
// verifies, and which hashes ask to be replaced.
func TestVerifyArgon2id(t *testing.T) {
	h, _ := newHasher(t, 2)
	salt16 := []byte("0123456789abcdef")
	def := DefaultParams()
	tests := []struct {
		name     string
		password string
		encoded  string
		ok       bool
		rehash   bool
	}{
		{"current params", "secret-pw", phc("secret-pw", def, salt16, 32), true, false},
		{"current params, wrong password", "secret-px", phc("secret-pw", def, salt16, 32), false, false},
		{"more passes", "secret-pw", phc("secret-pw", Params{19456, 3, 1}, salt16, 32), true, true},
		{"more lanes", "secret-pw", phc("secret-pw", Params{19456, 2, 2}, salt16, 32), true, true},
		{"legacy weak params", "secret-pw", phc("secret-pw", Params{4096, 1, 1}, salt16, 32), true, true},
		{"legacy weak params, wrong password", "secret-px", phc("secret-pw", Params{4096, 1, 1}, salt16, 32), false, false},
		{"short salt", "secret-pw", phc("secret-pw", def, []byte("8 bytes!"), 32), true, true},
		{"long key", "secret-pw", phc("secret-pw", def, salt16, 64), true, true},
		// The reference implementation's (github.com/P-H-C/phc-winner-argon2)
		// test vector: an imported hash from another system.
		{"reference vector", "password", "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", true, true},
		{"reference vector, wrong password", "Password", "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := h.Verify(context.Background(), tt.password, tt.encoded)
			if err != nil || ok != tt.ok || rehash != tt.rehash {
				t.Errorf("Verify() = %v, %v, %v; want %v, %v, nil", ok, rehash, err, tt.ok, tt.rehash)
			}
		})
	}
}

func TestVerifyBcrypt(t *testing.T) {
	h, _ := newHasher(t, 2)
	const pw = "hunter2-but-longer"
	b, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "$2a$04$") {
		t.Fatalf("unexpected bcrypt prefix in %q", b)
	}
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		enc := prefix + string(b[4:])
		t.Run(prefix, func(t *testing.T) {
			if !IsHash(enc) {
				t.Error("IsHash = false")
			}
			ok, rehash, err := h.Verify(context.Background(), pw, enc)
			if err != nil || !ok || !rehash {
				t.Errorf("Verify(right password) = %v, %v, %v; want true, true, nil", ok, rehash, err)
			}
			ok, rehash, err = h.Verify(context.Background(), pw+"!", enc)
			if err != nil || ok || rehash {
				t.Errorf("Verify(wrong password) = %v, %v, %v; want false, false, nil", ok, rehash, err)
			}
		})
	}
}

// TestVerifyMalformed feeds hashes that must be refused before any
// computation: broken ones, and hostile ones whose costs would exhaust the
// machine.
func TestVerifyMalformed(t *testing.T) {
	h, n := newHasher(t, 2)
	n.Store(0)
	good := phc("pw", DefaultParams(), []byte("0123456789abcdef"), 32)
	f := strings.Split(good, "$") // "", "argon2id", "v=19", "m=..", salt, key
	salt, key := f[4], f[5]
	argon := func(version, params, salt, key string) string {
		return "$argon2id$" + version + "$" + params + "$" + salt + "$" + key
	}
	b, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	bc := string(b) // $2a$04$<53 chars>
	b64 := base64.RawStdEncoding.EncodeToString

	tests := []struct {
		name    string
		encoded string
	}{
		{"empty", ""},
		{"plain text", "hunter2"},
		{"htpasswd SHA", "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="},
		{"htpasswd MD5", "$apr1$salt$abcdefghijklmnopqrstuv"},
		{"argon2i", "$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key},
		{"argon2d", "$argon2d$v=19$m=19456,t=2,p=1$" + salt + "$" + key},
		{"argon2id without version", "$argon2id$m=19456,t=2,p=1$" + salt + "$" + key},
		{"argon2id version 16", argon("v=16", "m=19456,t=2,p=1", salt, key)},
		{"argon2id trailing field", good + "$"},
		{"argon2id leading space", " " + good},
		{"argon2id params out of order", argon("v=19", "t=2,m=19456,p=1", salt, key)},
		{"argon2id missing param", argon("v=19", "m=19456,t=2", salt, key)},
		{"argon2id extra param", argon("v=19", "m=19456,t=2,p=1,keyid=x", salt, key)},
		{"argon2id leading zero", argon("v=19", "m=019456,t=2,p=1", salt, key)},
		{"argon2id signed", argon("v=19", "m=+19456,t=2,p=1", salt, key)},
		{"argon2id not a number", argon("v=19", "m=lots,t=2,p=1", salt, key)},
		{"argon2id memory overflows uint32", argon("v=19", "m=4294967296,t=2,p=1", salt, key)},
		{"argon2id zero time", argon("v=19", "m=19456,t=0,p=1", salt, key)},
		{"argon2id zero threads", argon("v=19", "m=19456,t=2,p=0", salt, key)},
		{"argon2id memory under 8 KiB per thread", argon("v=19", "m=31,t=2,p=4", salt, key)},
		{"hostile memory (4 GiB)", argon("v=19", "m=4194304,t=2,p=1", salt, key)},
		{"hostile memory (just over the limit)", argon("v=19", "m=262145,t=2,p=1", salt, key)},
		{"hostile time", argon("v=19", "m=19456,t=1000000,p=1", salt, key)},
		{"hostile threads", argon("v=19", "m=19456,t=2,p=255", salt, key)},
		{"argon2id short salt", argon("v=19", "m=19456,t=2,p=1", b64([]byte("7 bytes")), key)},
		{"argon2id long salt", argon("v=19", "m=19456,t=2,p=1", b64(make([]byte, 65)), key)},
		{"argon2id short key", argon("v=19", "m=19456,t=2,p=1", salt, b64(make([]byte, 15)))},
		{"argon2id hostile key length", argon("v=19", "m=19456,t=2,p=1", salt, b64(make([]byte, 1<<20)))},
		{"argon2id padded base64", argon("v=19", "m=19456,t=2,p=1", salt, key+"=")},
		{"argon2id bad base64", argon("v=19", "m=19456,t=2,p=1", salt, "!!"+key[2:])},
		{"argon2id empty salt", argon("v=19", "m=19456,t=2,p=1", "", key)},
		{"bcrypt 2x", "$2x$" + bc[4:]},
		{"bcrypt 2", "$2$" + bc[4:]},
		{"bcrypt truncated", bc[:59]},
		{"bcrypt too long", bc + "a"},
		{"bcrypt cost 3", "$2a$03$" + bc[7:]},
		{"bcrypt hostile cost 31", "$2a$31$" + bc[7:]},
		{"bcrypt cost just over the limit", "$2a$17$" + bc[7:]},
		{"bcrypt signed cost", "$2a$+9$" + bc[7:]},
		{"bcrypt no separator", "$2a$04x" + bc[7:]},
		{"bcrypt bad character", bc[:59] + "!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := h.Verify(context.Background(), "pw", tt.encoded)
			if !errors.Is(err, ErrMalformedHash) || ok || rehash {
				t.Errorf("Verify() = %v, %v, %v; want false, false, ErrMalformedHash", ok, rehash, err)
			}
			if IsHash(tt.encoded) {
				t.Error("IsHash = true")
			}
			if err != nil && len(tt.encoded) > 20 && strings.Contains(err.Error(), tt.encoded[len(tt.encoded)-20:]) {
				t.Errorf("error %q quotes the hash", err)
			}
		})
	}
	if got := n.Load(); got != 0 {
		t.Errorf("%d computations ran for malformed hashes, want 0", got)
	}

	// The controls: the unmodified hashes pass, so each case above fails for
	// its own defect.
	for _, enc := range []string{good, bc, argon("v=19", "m=262144,t=16,p=64", salt, key), "$2a$16$" + bc[7:]} {
		if !IsHash(enc) {
			t.Errorf("IsHash(%q) = false, want true", enc)
		}
	}
	if ok, _, err := h.Verify(context.Background(), "pw", good); !ok || err != nil {
		t.Errorf("Verify(control argon2id) = %v, %v", ok, err)
	}
	if ok, _, err := h.Verify(context.Background(), "pw", bc); !ok || err != nil {
		t.Errorf("Verify(control bcrypt) = %v, %v", ok, err)
	}
}

func TestLimitsFollowOwnParams(t *testing.T) {
	if l := limitsFor(DefaultParams()); l != defaultLimits {
		t.Errorf("limitsFor(default) = %+v, want %+v", l, defaultLimits)
	}
	big := Params{Memory: 1 << 20, Time: 32, Threads: 64}
	l := limitsFor(big)
	if l.memory != big.Memory || l.time != big.Time || l.threads != defaultLimits.threads {
		t.Errorf("limitsFor(%+v) = %+v: the hasher's own hashes would not verify", big, l)
	}
	// A hash with the hasher's own, larger params parses under its limits only.
	enc := encodeArgon2id(big, make([]byte, saltLen), make([]byte, keyLen))
	if _, err := parseArgon2id(enc, l); err != nil {
		t.Errorf("own hash refused: %v", err)
	}
	if _, err := parseArgon2id(enc, defaultLimits); err == nil {
		t.Error("1 GiB hash accepted under the default limits")
	}
}

func TestBurn(t *testing.T) {
	h, n := newHasher(t, 1)
	// The dummy is a current-params hash, so Burn costs what verifying a
	// real user's current hash costs.
	a, err := parseArgon2id(h.dummy, h.limits)
	if err != nil {
		t.Fatal(err)
	}
	if a.params != h.Params() || len(a.salt) != saltLen || len(a.key) != keyLen {
		t.Errorf("dummy hash %+v is not a current-params hash", a.params)
	}
	if err := h.Burn(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("Burn ran %d computations, want 1", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Burn(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Burn(cancelled) = %v, want context.Canceled", err)
	}
}

func TestCheckStrength(t *testing.T) {
	tests := []struct {
		name, username, password string
		ok                       bool
	}{
		{"8 ASCII characters", "alice", "abcdefgh", true},
		{"7 characters", "alice", "abcdefg", false},
		{"empty", "alice", "", false},
		{"8 multibyte characters", "alice", "пароль12", true},
		{"7 multibyte characters, 14 bytes", "alice", "пароль1", false},
		{"spaces count", "alice", "        ", true},
		{"1024 characters", "alice", strings.Repeat("é", 1024), true},
		{"1025 characters", "alice", strings.Repeat("a", 1025), false},
		{"equals username", "alice.smith", "alice.smith", false},
		{"equals username, other case", "Alice.Smith", "aLICE.sMITH", false},
		{"equals username, padded", " alice.smith ", "alice.smith  ", false},
		{"equals username, non-ASCII case", "ÉLODIE-ÅSA", "élodie-åsa", false},
		{"contains username", "alice.smith", "alice.smith1", true},
		{"empty username", "", "abcdefgh", true},
		{"invalid UTF-8", "alice", "abcdefg\xff", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckStrength(tt.username, tt.password)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckStrength() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrTooWeak) {
				t.Errorf("error %v does not wrap ErrTooWeak", err)
			}
			if err != nil && len(tt.password) > 3 && strings.Contains(err.Error(), tt.password) {
				t.Errorf("error %q quotes the password", err)
			}
		})
	}
}

func TestCheckGuessable(t *testing.T) {
	tests := []struct {
		name, password string
		inputs         []string
		ok             bool
	}{
		// Refused by the default score.
		{"digits in a row", "12345678", nil, false},
		{"password", "password", nil, false},
		{"capital and digit", "Password1", nil, false},
		{"keyboard row", "qwertyuiop", nil, false},
		{"common with a symbol", "letmein!", nil, false},
		{"word and digits", "monkey123", nil, false},
		{"l33t spelling", "p@ssw0rd", nil, false},
		{"repeated word", "abcabcabcabc", nil, false},
		{"a date", "19/12/1987", nil, false},
		{"the username and a digit", "frederika1", []string{"frederika", "fred@example.com"}, false},
		{"the email address", "fred@example.com", []string{"frederika", "fred@example.com"}, false},
		{"the email's local part twice", "fredfredfred", []string{"frederika", "fred@example.com", "fred"}, false},
		{"a long email address", "frederika.longname@example.com", []string{"frederika", "frederika.longname@example.com"}, false},
		// Passed.
		{"8 random letters", "kjhgqpwz", nil, true},
		{"8 other random letters", "zqxjvbmw", nil, true},
		{"passphrase", "correct horse battery staple", nil, true},
		{"short passphrase", "purple elephant dances", nil, true},
		{"sentence", "my dog likes cheese", nil, true},
		{"random mix", "tr0ub4dor&3", nil, true},
		{"non-Latin", "пароль мой кот", nil, true},
		// Only the first GuessWindow characters are read.
		{"weak start, strong end", "passwordpassword" + "kjhgqpwz-zqxjvbmw", nil, false},
		{"strong start, weak end", "kjhgqpwz-zqxjvbmw" + strings.Repeat("a", 1000), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckGuessable(tt.password, DefaultMinScore, tt.inputs...)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckGuessable() = %v, want ok=%v", err, tt.ok)
			}
			// One message for all: it tells nothing of the password.
			if err != nil && (!errors.Is(err, ErrTooWeak) || err.Error() != "password too weak: a common password, or too easily guessed") {
				t.Errorf("error %q", err)
			}
		})
	}
	t.Run("score 0 refuses nothing", func(t *testing.T) {
		if err := CheckGuessable("password", 0); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("score 4 refuses 8 random letters", func(t *testing.T) {
		if err := CheckGuessable("kjhgqpwz", 4); err == nil {
			t.Fatal("accepted")
		}
	})
}

// The costliest passwords for zxcvbn are long ones with many distinct l33t
// characters; CheckGuessable reads GuessWindow characters of them. Run with
// -bench CheckGuessable to see what a 1024-character one costs.
func BenchmarkCheckGuessable(b *testing.B) {
	leet := strings.Repeat("4@({[<691!|7$5+0%2380", 50)[:1024]
	for name, pw := range map[string]string{
		"1024 l33t characters":   leet,
		"1024 printable":         strings.Repeat(`Kx9!q#Vz&2mP;tR@w7^Lc*Y(e)4N_u+H=jB{8}[G]|s\"`, 23)[:1024],
		"1024 digits and dates":  strings.Repeat("19/12/1987-0.5_", 70)[:1024],
		"16 distinct l33t chars": "4@({[<691!|7$5+0",
	} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				_ = CheckGuessable(pw, DefaultMinScore, "someone", "someone@example.com")
			}
		})
	}
}
