package password

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The hashing threads run under SCHED_IDLE, so that request work gets the
// CPU first.
func TestHashThreadsRunAtIdlePriority(t *testing.T) {
	h, _ := newHasher(t, 1)
	if _, err := h.Hash(context.Background(), "some password"); err != nil {
		t.Fatal(err)
	}
	stats, _ := filepath.Glob("/proc/self/task/*/stat")
	idle := 0
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses: the
		// scheduling policy is field 41 of the line, the 39th after ") ".
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(fields) > 38 && fields[38] == "5" { // SCHED_IDLE
			idle++
		}
	}
	if idle != PoolSize {
		t.Fatalf("%d threads under SCHED_IDLE, want %d", idle, PoolSize)
	}
}
