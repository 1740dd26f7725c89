package password

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The hashing threads run niced, so that request work gets the CPU first.
func TestHashThreadsAreNiced(t *testing.T) {
	h, _ := newHasher(t, 1)
	if _, err := h.Hash(context.Background(), "some password"); err != nil {
		t.Fatal(err)
	}
	stats, _ := filepath.Glob("/proc/self/task/*/stat")
	niced := 0
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses: the
		// nice value is field 19 of the line, the 17th after ") ".
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(fields) > 16 && fields[16] == "19" {
			niced++
		}
	}
	if niced != PoolSize {
		t.Fatalf("%d niced threads, want %d", niced, PoolSize)
	}
}
