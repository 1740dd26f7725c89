package device

import (
	"strings"
	"testing"
	"time"
)

const (
	alice = "0123456789abcdef0123456789abcdef"
	bob   = "fedcba9876543210fedcba9876543210"
	devID = "00112233445566778899aabbccddeeff"
)

func TestIssueVerify(t *testing.T) {
	s := New([]byte("server secret"))
	v1, exp := s.Issue(alice)
	v2, _ := s.Issue(alice)
	if want := time.Now().Add(Lifetime); exp.Before(want.Add(-time.Minute)) || exp.After(want.Add(time.Minute)) {
		t.Fatalf("expires %s, want about %s", exp, want)
	}
	id1, ok1 := s.Verify(v1, alice)
	id2, ok2 := s.Verify(v2, alice)
	if !ok1 || !ok2 || !isHex32(id1) || id1 == id2 {
		t.Fatalf("ids %q %v, %q %v", id1, ok1, id2, ok2)
	}
	if len(v1) > maxLen/2 || strings.ContainsAny(v1, " ;,\"\\") {
		t.Fatalf("value %q is no plain cookie value", v1)
	}
	if strings.Contains(v1, "server secret") {
		t.Fatal("value holds the secret")
	}
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := New([]byte("server secret"))
	s.now = func() time.Time { return now }
	other := New([]byte("another secret"))
	valid := s.Sign(alice, devID, now.Add(time.Hour))
	flip := func(i int) string {
		b := []byte(valid)
		b[i] ^= 0x01
		return string(b)
	}
	for _, tc := range []struct {
		name    string
		value   string
		userKey string
		ok      bool
	}{
		{"valid", valid, alice, true},
		{"valid a second before expiry", s.Sign(alice, devID, now.Add(time.Second)), alice, true},
		{"another user's", valid, bob, false},
		{"another user's, signed for them", s.Sign(bob, devID, now.Add(time.Hour)), alice, false},
		{"expired", s.Sign(alice, devID, now.Add(-time.Second)), alice, false},
		{"expiring now", s.Sign(alice, devID, now), alice, false},
		{"signed under another key", other.Sign(alice, devID, now.Add(time.Hour)), alice, false},
		{"flipped byte in version", flip(0), alice, false},
		{"flipped byte in user key", flip(4), alice, false},
		{"flipped byte in device id", flip(40), alice, false},
		{"flipped byte in expiry", flip(70), alice, false},
		{"flipped byte in mac", flip(len(valid) - 5), alice, false},
		{"flipped low bit of the mac's last character", flip(len(valid) - 1), alice, false},
		{"mac cut off", valid[:strings.LastIndexByte(valid, '.')], alice, false},
		{"mac cut short", valid[:len(valid)-2], alice, false},
		{"mac padded", valid + "=", alice, false},
		{"empty", "", alice, false},
		{"no dots", "v1", alice, false},
		{"oversized", valid + strings.Repeat("A", maxLen), alice, false},
		{"other version", strings.Replace(s.Sign(alice, devID, now.Add(time.Hour)), "v1.", "v2.", 1), alice, false},
		{"upper-case id, signed", s.Sign(alice, strings.ToUpper(devID), now.Add(time.Hour)), alice, false},
		{"id with a key separator, signed", s.Sign(alice, "0011223344556677:899aabbccddeeff", now.Add(time.Hour)), alice, false},
		{"extra field, signed", s.Sign(alice, devID+".x", now.Add(time.Hour)), alice, false},
		{"empty user key", valid, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, ok := s.Verify(tc.value, tc.userKey)
			if ok != tc.ok {
				t.Fatalf("Verify(%q) = %q, %v; want ok %v", tc.value, id, ok, tc.ok)
			}
			if ok && id != devID {
				t.Fatalf("id %q, want %q", id, devID)
			}
			if !ok && id != "" {
				t.Fatalf("refused, yet id %q", id)
			}
		})
	}
}

// The key is derived for this purpose: a MAC of the same payload under the
// raw secret does not pass.
func TestKeyIsDerived(t *testing.T) {
	secret := []byte("server secret")
	s := New(secret)
	raw := &Signer{key: secret, now: time.Now}
	forged := raw.Sign(alice, devID, time.Now().Add(time.Hour))
	if _, ok := s.Verify(forged, alice); ok {
		t.Fatal("a MAC under the raw secret passed")
	}
}
