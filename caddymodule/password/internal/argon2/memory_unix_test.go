//go:build unix

package argon2

import (
	"runtime"
	"testing"
)

// The working memory lives outside the Go heap, and Release returns it.
func TestMemoryOutsideTheHeap(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var m Memory
	m.IDKey([]byte("password"), []byte("somesalt"), 1, 19456, 1, 32)
	runtime.ReadMemStats(&after)
	if !m.mapped || m.Size() != 19456 {
		t.Fatalf("Size %d KiB, mapped %v: want 19456 KiB, mapped", m.Size(), m.mapped)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Errorf("the Go heap grew by %d bytes for a hash", grew)
	}
	m.Release()
	if m.mapped || m.Size() != 0 {
		t.Fatalf("after Release: Size %d KiB, mapped %v: want nothing", m.Size(), m.mapped)
	}
	// Still usable after Release.
	if key := m.IDKey([]byte("password"), []byte("somesalt"), 2, 19456, 1, 32); len(key) != 32 {
		t.Fatalf("key of %d bytes after Release", len(key))
	}
	m.Release()
}
