package password

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	memargon2 "github.com/authgate/authgate/caddymodule/password/internal/argon2"
)

// TestMain also serves as a helper process of the tests (see helper) when
// the test binary runs itself with helperEnv set.
func TestMain(m *testing.M) {
	if kind := os.Getenv(helperEnv); kind != "" {
		helper(kind)
		return
	}
	os.Exit(m.Run())
}

// helperEnv makes the test binary a helper process of the given kind.
const helperEnv = "AUTHGATE_PASSWORD_TEST_HELPER"

// helper is a process beside the tests: a "hog" keeps every core busy at
// normal priority, as a batch job or a test suite beside the server would;
// a "sleeper" does nothing. Either says "ready" on stdout, then lasts until
// it is killed, or for patience at most.
func helper(kind string) {
	if kind == "hog" {
		for range runtime.NumCPU() {
			go func() {
				for {
				}
			}()
		}
	}
	os.Stdout.WriteString("ready\n")
	time.Sleep(patience)
}

// patience bounds every wait of these tests. It only fails a test that
// hangs: nothing here depends on how fast the machine is.
const patience = 2 * time.Minute

// await returns what ch delivers, or fails the test if nothing comes within
// patience.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatalf("%s: nothing after %s", what, patience)
		panic("unreachable")
	}
}

// eventually polls cond until it holds, or fails the test after patience.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, patience)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// withLimit makes the process-wide admission limit n (changeable through
// the returned value) for the rest of the test, whatever GOMAXPROCS and the
// gate say.
func withLimit(t *testing.T, n int32) *atomic.Int32 {
	var lim atomic.Int32
	lim.Store(n)
	cpu.mu.Lock()
	cpu.limit = func() int { return int(lim.Load()) }
	cpu.mu.Unlock()
	t.Cleanup(func() {
		cpu.mu.Lock()
		cpu.limit = limit
		cpu.mu.Unlock()
	})
	return &lim
}

func TestNewHasherConcurrency(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	tests := []struct {
		name        string
		concurrency int
		want        int
	}{
		{"negative means GOMAXPROCS", -1, procs},
		{"zero means GOMAXPROCS", 0, procs},
		{"one", 1, 1},
		{"GOMAXPROCS", procs, procs},
		{"above GOMAXPROCS is capped", procs + 3, procs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := Workers()
			h, err := NewHasher(DefaultParams(), tt.concurrency)
			if err != nil {
				t.Fatal(err)
			}
			if got := Workers() - before; got != tt.want {
				t.Errorf("%d workers, want %d", got, tt.want)
			}
			if h.Params() != DefaultParams() {
				t.Errorf("Params() = %+v", h.Params())
			}
			h.Close()
			if got := Workers(); got != before {
				t.Errorf("%d workers after Close, want %d", got, before)
			}
			if got := runtime.GOMAXPROCS(0); got != procs {
				t.Errorf("GOMAXPROCS %d, was %d", got, procs)
			}
		})
	}
}

// Close stops the workers and waits for them: a computation under way
// finishes first, a hash waiting for a worker fails with ErrClosed, and so
// does every hash asked afterwards. Nothing of the Hasher is left running,
// and its memory is given back.
func TestCloseStopsAndWaitsForWorkers(t *testing.T) {
	workersBefore, heldBefore := Workers(), HeldMemory()
	h, err := NewHasher(DefaultParams(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if Workers() != workersBefore+1 || HeldMemory() != heldBefore+int64(DefaultParams().Memory)<<10 {
		t.Fatalf("%d workers holding %d bytes, want %d holding %d (the dummy hash's)",
			Workers(), HeldMemory(), workersBefore+1, heldBefore+int64(DefaultParams().Memory)<<10)
	}

	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	running := make(chan error, 1)
	go func() {
		running <- h.run(context.Background(), func(*memargon2.Memory) {
			close(started)
			<-release
			finished.Store(true)
		})
	}()
	await(t, started, "computation start")
	// The only worker is busy, so this one waits for it.
	queued := make(chan error, 1)
	go func() {
		_, err := h.Hash(context.Background(), "a password")
		queued <- err
	}()
	closed := make(chan struct{})
	go func() {
		h.Close()
		close(closed)
	}()
	await(t, h.quit, "Close")
	if err := await(t, queued, "queued hash"); !errors.Is(err, ErrClosed) {
		t.Errorf("hash waiting at Close: %v, want ErrClosed", err)
	}
	select {
	case <-closed:
		t.Fatal("Close returned while a computation was under way")
	default:
	}
	close(release)
	await(t, closed, "Close after the computation")
	if !finished.Load() {
		t.Error("Close returned before the computation finished")
	}
	if err := await(t, running, "computation"); err != nil {
		t.Errorf("computation under way at Close: %v", err)
	}
	if Workers() != workersBefore || HeldMemory() != heldBefore {
		t.Errorf("after Close %d workers holding %d bytes, want %d holding %d", Workers(), HeldMemory(), workersBefore, heldBefore)
	}
	if _, err := h.Hash(context.Background(), "a password"); !errors.Is(err, ErrClosed) {
		t.Errorf("Hash after Close: %v, want ErrClosed", err)
	}
	h.Close() // again: nothing happens
}

// TestConcurrencyBound keeps every worker busy and checks that a Verify
// then waits for one, leaves the queue without computing when its context
// ends, and runs once a worker is free.
func TestConcurrencyBound(t *testing.T) {
	slots := min(2, runtime.GOMAXPROCS(0))
	withLimit(t, int32(slots))
	h, n := newHasher(t, slots)
	enc, err := h.Hash(context.Background(), "password1")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(slots)
	busy := make(chan error, slots)
	for range slots {
		go func() {
			busy <- h.run(context.Background(), func(*memargon2.Memory) {
				started.Done()
				<-release
			})
		}()
	}
	startedAll := make(chan struct{})
	go func() { started.Wait(); close(startedAll) }()
	await(t, startedAll, "every worker busy")
	n.Store(0)

	// Queued, then its client leaves: it returns the context's error, and
	// nothing was computed (every worker is still busy).
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := h.Verify(ctx, "password1", enc)
		done <- err
	}()
	cancel()
	if err := await(t, done, "Verify after cancel"); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify cancelled while queued = %v, want context.Canceled", err)
	}
	if got := n.Load(); got != 0 {
		t.Errorf("%d computations while every worker was busy", got)
	}

	// A context already ended never takes a free worker. (select alone
	// would pick at random between the worker and Done: try many times.)
	close(release)
	for range slots {
		if err := await(t, busy, "busy computation"); err != nil {
			t.Fatal(err)
		}
	}
	n.Store(0)
	for range 20 {
		if _, _, err := h.Verify(ctx, "password1", enc); !errors.Is(err, context.Canceled) {
			t.Fatalf("Verify(cancelled ctx) = %v, want context.Canceled", err)
		}
	}
	if got := n.Load(); got != 0 {
		t.Errorf("%d computations ran for cancelled requests, want 0", got)
	}
	if ok, _, err := h.Verify(context.Background(), "password1", enc); !ok || err != nil {
		t.Errorf("Verify with free workers = %v, %v", ok, err)
	}
}

// TestConcurrencyBoundUnderLoad runs many computations at once and checks,
// from inside them, that as many as the bound run together and never more.
// Each waits until the bound is reached, so the count does not depend on
// how the computations happen to overlap.
func TestConcurrencyBoundUnderLoad(t *testing.T) {
	slots := min(2, runtime.GOMAXPROCS(0))
	withLimit(t, int32(slots))
	h, _ := newHasher(t, slots)
	b, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	var running, peak atomic.Int32
	full := make(chan struct{})
	var fullOnce sync.Once
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() {
			errs <- h.run(context.Background(), func(*memargon2.Memory) {
				now := running.Add(1)
				for {
					p := peak.Load()
					if now <= p || peak.CompareAndSwap(p, now) {
						break
					}
				}
				if now == int32(slots) {
					fullOnce.Do(func() { close(full) })
				}
				<-full
				_ = bcrypt.CompareHashAndPassword(b, []byte("pw"))
				running.Add(-1)
			})
		}()
	}
	for range cap(errs) {
		if err := await(t, errs, "computation"); err != nil {
			t.Fatal(err)
		}
	}
	if p := peak.Load(); p != int32(slots) {
		t.Errorf("peak concurrency %d, want %d", p, slots)
	}
}

// A worker keeps its argon2 memory up to the cost of its Hasher, and no
// more: a costlier imported hash does not pin its memory.
func TestWorkersKeepMemoryUpToTheirCost(t *testing.T) {
	h, _ := newHasher(t, 1) // one worker: every job meets the same memory
	cost := DefaultParams().Memory
	size := func() uint32 {
		var got uint32
		if err := h.run(context.Background(), func(m *memargon2.Memory) { got = m.Size() }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	hash := func(memory uint32) {
		if err := h.run(context.Background(), func(m *memargon2.Memory) {
			m.IDKey([]byte("pw"), []byte("saltsalt"), 1, memory, 1, 32)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if got := size(); got != cost {
		t.Errorf("after the dummy hash the worker holds %d KiB, want %d", got, cost)
	}
	hash(cost + 1024)
	if got := size(); got != 0 {
		t.Errorf("after a costlier hash the worker holds %d KiB, want 0", got)
	}
	hash(cost)
	if got := size(); got != cost {
		t.Errorf("after a hash at its cost the worker holds %d KiB, want %d", got, cost)
	}
}

// A worker that has hashed nothing for idleRelease gives its memory back;
// while it holds it, HeldMemory counts it.
func TestWorkersReleaseMemoryWhenIdle(t *testing.T) {
	defer func(d int64) { idleRelease.Store(d) }(idleRelease.Load())
	idleRelease.Store(int64(time.Hour))
	workersAt := runtime.GOMAXPROCS(0)
	withLimit(t, int32(workersAt))
	heldBefore := HeldMemory()
	h, _ := newHasher(t, workersAt)
	memory := DefaultParams().Memory
	// One job per worker, each waiting for all the others to have hashed,
	// so that every worker takes one and restarts its idle timer.
	everyWorker := func() {
		var hashed sync.WaitGroup
		hashed.Add(workersAt)
		errs := make(chan error, workersAt)
		for range workersAt {
			go func() {
				errs <- h.run(context.Background(), func(m *memargon2.Memory) {
					m.IDKey([]byte("pw"), []byte("saltsalt"), 1, memory, 1, 32)
					hashed.Done()
					hashed.Wait()
				})
			}()
		}
		for range workersAt {
			if err := await(t, errs, "hash"); err != nil {
				t.Fatal(err)
			}
		}
	}
	everyWorker()
	if held, want := HeldMemory()-heldBefore, int64(workersAt)*int64(memory)<<10; held != want {
		t.Fatalf("HeldMemory grew by %d bytes after %d hashes at once, want %d", held, workersAt, want)
	}
	// The shorter delay counts from each worker's next hash.
	idleRelease.Store(int64(time.Millisecond))
	everyWorker()
	eventually(t, "memory given back", func() bool { return HeldMemory() == heldBefore })
}

// Hashes through the workers from many goroutines at once: with -cpu 1 and
// 2 beside each other, what the workers achieve together.
func BenchmarkHashParallel(b *testing.B) {
	h, err := NewHasher(DefaultParams(), 0)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	b.SetParallelism(2)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := h.Hash(context.Background(), "a password of some length"); err != nil {
				b.Error(err)
			}
		}
	})
}
