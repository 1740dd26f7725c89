package argon2

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	xargon2 "golang.org/x/crypto/argon2"
)

// The copy must compute exactly what x/crypto computes, whatever sizes one
// Memory has served before: random costs, keys of every length blake2bHash
// treats differently, and one Memory that grows and shrinks between calls.
func TestIDKeyMatchesXCrypto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var m Memory
	defer m.Release()
	for i := range 200 {
		password := make([]byte, rng.IntN(80))
		salt := make([]byte, 8+rng.IntN(56))
		for _, b := range [][]byte{password, salt} {
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
		}
		time := 1 + rng.Uint32N(4)
		memory := rng.Uint32N(2048)
		threads := uint8(1 + rng.IntN(4))
		keyLen := []uint32{4, 16, 32, 64, 65, 100, 129}[rng.IntN(7)]

		got := m.IDKey(password, salt, time, memory, threads, keyLen)
		want := xargon2.IDKey(password, salt, time, memory, threads, keyLen)
		if !bytes.Equal(got, want) {
			t.Fatalf("call %d (t=%d m=%d p=%d len=%d): key %x, x/crypto %x", i, time, memory, threads, keyLen, got, want)
		}
		for j, b := range m.blocks {
			if b != (block{}) {
				t.Fatalf("call %d: block %d of %d not wiped", i, j, len(m.blocks))
			}
		}
	}
}

// The default costs of package password, at full size, against the key the
// reference implementation computes (Debian's argon2 command:
// echo -n password | argon2 somesalt -id -t 2 -k 19456 -p 1 -l 32 -r), so
// the copy is not only compared with the package it was copied from.
func TestIDKeyKnownAnswer(t *testing.T) {
	var m Memory
	defer m.Release()
	for range 2 { // the second call reuses the memory of the first
		key := m.IDKey([]byte("password"), []byte("somesalt"), 2, 19456, 1, 32)
		if got, want := hex.EncodeToString(key), knownKey; got != want {
			t.Fatalf("key %s, want %s", got, want)
		}
	}
	if m.Size() != 19456 {
		t.Fatalf("Size %d KiB, want 19456", m.Size())
	}
}

const knownKey = "3cbd356a63f2794bb11bb1f4bc8af95fea87919bd69c79860465c562f87ccf61"

// Pause is called every PauseEvery blocks of every pass, from the
// computing goroutine, and changes nothing of the result; a Memory whose
// Pause is unset computes the same.
func TestPause(t *testing.T) {
	var m Memory
	defer m.Release()
	calls := 0
	m.Pause = func() { calls++ }
	key := m.IDKey([]byte("password"), []byte("somesalt"), 2, 19456, 1, 32)
	if got := hex.EncodeToString(key); got != knownKey {
		t.Fatalf("key %s with Pause, want %s", got, knownKey)
	}
	// 19456 blocks = 19 × 1024, in each of 2 passes.
	if want := 2 * 19456 / PauseEvery; calls != want {
		t.Errorf("Pause called %d times, want %d", calls, want)
	}
	m.Pause = nil
	if got := hex.EncodeToString(m.IDKey([]byte("password"), []byte("somesalt"), 2, 19456, 1, 32)); got != knownKey {
		t.Fatalf("key %s without Pause, want %s", got, knownKey)
	}
	if calls != 2*19456/PauseEvery {
		t.Errorf("Pause called after it was unset")
	}
}

func BenchmarkIDKey(b *testing.B) {
	var m Memory
	defer m.Release()
	for b.Loop() {
		m.IDKey([]byte("password"), []byte("somesalt"), 2, 19456, 1, 32)
	}
}

func BenchmarkXCryptoIDKey(b *testing.B) {
	for b.Loop() {
		xargon2.IDKey([]byte("password"), []byte("somesalt"), 2, 19456, 1, 32)
	}
}

// Two hashes at once, each with its own Memory: what the cores achieve
// together (compare with -cpu 1).
func BenchmarkIDKeyParallel(b *testing.B) {
	b.RunParallel(func(pb *testing.PB) {
		var m Memory
		defer m.Release()
		for pb.Next() {
			m.IDKey([]byte("password"), []byte("somesalt"), 2, 19456, 1, 32)
		}
	})
}

func BenchmarkXCryptoIDKeyParallel(b *testing.B) {
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			xargon2.IDKey([]byte("password"), []byte("somesalt"), 2, 19456, 1, 32)
		}
	})
}
