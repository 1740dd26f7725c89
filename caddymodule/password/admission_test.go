package password

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	memargon2 "github.com/authgate/authgate/caddymodule/password/internal/argon2"
)

// gateFor makes the gate count as busy for window after each request, for
// the rest of the test, and quiet now.
func gateFor(t *testing.T, window time.Duration) {
	old := gateWindow
	gateWindow = window
	gateSeen.Store(0)
	t.Cleanup(func() {
		gateWindow = old
		gateSeen.Store(0)
	})
}

// Hashes take every P while the gate is quiet, and leave it one while it
// serves; at least one hash may always compute.
func TestLimitLeavesAPToTheGate(t *testing.T) {
	gateFor(t, time.Hour)
	procs := runtime.GOMAXPROCS(0)
	if got := limit(); got != procs {
		t.Errorf("limit with the gate quiet = %d, want GOMAXPROCS = %d", got, procs)
	}
	GateActive()
	if got, want := limit(), max(1, procs-1); got != want {
		t.Errorf("limit with the gate busy = %d, want %d", got, want)
	}
	gateSeen.Store(0)
	if got := limit(); got != procs {
		t.Errorf("limit once the gate is quiet again = %d, want %d", got, procs)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS %d, was %d", got, procs)
	}
}

// entrant enters a in a goroutine of its own and reports when it is in.
func entrant(a *admission, stop <-chan struct{}) <-chan bool {
	in := make(chan bool, 1)
	go func() { in <- a.enter(stop, false) }()
	return in
}

// state returns how many computations a counts and how many wait.
func (a *admission) state() (running, waiting int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running, len(a.queue)
}

func TestAdmission(t *testing.T) {
	t.Run("waiters go in order of arrival", func(t *testing.T) {
		var lim atomic.Int32
		lim.Store(1)
		a := &admission{limit: func() int { return int(lim.Load()) }}
		if !a.enter(nil, false) {
			t.Fatal("enter refused below the limit")
		}
		second := entrant(a, nil)
		eventually(t, "second queued", func() bool { _, w := a.state(); return w == 1 })
		third := entrant(a, nil)
		eventually(t, "third queued", func() bool { _, w := a.state(); return w == 2 })
		a.leave()
		if !await(t, second, "second") {
			t.Fatal("second refused")
		}
		if r, w := a.state(); r != 1 || w != 1 {
			t.Fatalf("%d running, %d waiting; want 1 and 1 (the third)", r, w)
		}
		a.leave()
		if !await(t, third, "third") {
			t.Fatal("third refused")
		}
		a.leave()
	})

	t.Run("a rising limit admits waiters", func(t *testing.T) {
		var lim atomic.Int32
		lim.Store(1)
		a := &admission{limit: func() int { return int(lim.Load()) }}
		a.enter(nil, false)
		second := entrant(a, nil)
		eventually(t, "second queued", func() bool { _, w := a.state(); return w == 1 })
		lim.Store(2)
		a.mu.Lock()
		a.wakeLocked() // as the gate going quiet does, by the waiter's timer
		a.mu.Unlock()
		if !await(t, second, "second") {
			t.Fatal("second refused")
		}
		if r, w := a.state(); r != 2 || w != 0 {
			t.Fatalf("%d running, %d waiting; want 2 and 0", r, w)
		}
	})

	t.Run("the gate going quiet admits waiters by itself", func(t *testing.T) {
		gateFor(t, 50*time.Millisecond)
		// limit's shape without GOMAXPROCS: 2 Ps, one left to a busy gate.
		a := &admission{limit: func() int {
			if _, busy := gateQuietAt(); busy {
				return 1
			}
			return 2
		}}
		GateActive()
		a.enter(nil, false)
		// Over the limit while the gate is busy; admitted once it has
		// been quiet for gateWindow, without anything else happening.
		if !await(t, entrant(a, nil), "waiter after the gate went quiet") {
			t.Fatal("refused")
		}
		if r, w := a.state(); r != 2 || w != 0 {
			t.Fatalf("%d running, %d waiting; want 2 and 0", r, w)
		}
	})

	t.Run("a computation over the limit pauses ahead of the queue", func(t *testing.T) {
		var lim atomic.Int32
		lim.Store(2)
		a := &admission{limit: func() int { return int(lim.Load()) }}
		a.enter(nil, false) // first
		a.enter(nil, false) // second
		if d := a.checkpoint(); d != 0 {
			t.Fatalf("checkpoint within the limit paused %s", d)
		}
		lim.Store(1)
		waiter := entrant(a, nil) // not started yet
		eventually(t, "waiter queued", func() bool { _, w := a.state(); return w == 1 })
		paused := make(chan time.Duration, 1)
		go func() { paused <- a.checkpoint() }() // the second, over the limit now
		eventually(t, "second paused", func() bool { r, w := a.state(); return r == 1 && w == 2 })
		a.leave() // the first ends: the paused one goes on, not the waiter
		if d := await(t, paused, "paused computation"); d <= 0 {
			t.Errorf("checkpoint paused %s, want a positive time", d)
		}
		if r, w := a.state(); r != 1 || w != 1 {
			t.Fatalf("%d running, %d waiting; want 1 and 1 (the waiter)", r, w)
		}
		a.leave()
		if !await(t, waiter, "waiter") {
			t.Fatal("waiter refused")
		}
	})

	t.Run("a waiter whose stop closes leaves the queue", func(t *testing.T) {
		a := &admission{limit: func() int { return 1 }}
		a.enter(nil, false)
		stop := make(chan struct{})
		in := entrant(a, stop)
		eventually(t, "queued", func() bool { _, w := a.state(); return w == 1 })
		close(stop)
		if await(t, in, "stopped waiter") {
			t.Fatal("admitted after stop")
		}
		if r, w := a.state(); r != 1 || w != 0 {
			t.Fatalf("%d running, %d waiting; want 1 and 0", r, w)
		}
	})
}

// A hash under way when the gate gets busy pauses at its next checkpoint
// (the worker wires argon2's Pause to the admission) until another ends.
func TestHashPausesForTheGate(t *testing.T) {
	lim := withLimit(t, 2)
	// Two Hashers, one worker each, whatever GOMAXPROCS is.
	first, _ := newHasher(t, 1)
	second, _ := newHasher(t, 1)
	release, started, goOn := make(chan struct{}), make(chan struct{}), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- first.run(context.Background(), func(*memargon2.Memory) { <-release })
	}()
	var passed atomic.Bool
	secondDone := make(chan error, 1)
	go func() {
		secondDone <- second.run(context.Background(), func(m *memargon2.Memory) {
			close(started)
			<-goOn
			m.Pause() // what IDKey calls every PauseEvery blocks
			passed.Store(true)
		})
	}()
	await(t, started, "second computation")
	eventually(t, "both computing", func() bool { r, _ := cpu.state(); return r == 2 })
	lim.Store(1) // as GateActive does with GOMAXPROCS 2
	close(goOn)
	eventually(t, "second paused", func() bool { r, w := cpu.state(); return r == 1 && w == 1 })
	if passed.Load() {
		t.Fatal("the computation went on over the limit")
	}
	close(release)
	for _, done := range []chan error{firstDone, secondDone} {
		if err := await(t, done, "computation"); err != nil {
			t.Fatal(err)
		}
	}
	if !passed.Load() {
		t.Fatal("the paused computation did not go on")
	}
}
