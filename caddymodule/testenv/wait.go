package testenv

import (
	"testing"
	"time"
)

// Patience bounds every wait of a test for a condition: long enough that
// only a hung test reaches it, on a slow machine whose cores are busy with
// other work. Tests wait for what they need, never for a time.
const Patience = 60 * time.Second

// WaitFor polls cond until it holds, and fails the test if it still does not
// after Patience.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(Patience); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after %s", what, Patience)
		}
	}
}
