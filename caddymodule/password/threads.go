package password

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authgate/authgate/caddymodule/password/internal/argon2"
)

// Hashing runs on a few dedicated OS threads, shared by every Hasher of the
// process, at the lowest CPU priority the kernel offers. A login flood then
// uses the CPU that requests of people already logged in leave over, instead
// of taking turns with them: the gate keeps its latency while logins queue.
//
// Go hands its Ps (the right to run Go code) to threads without regard to
// their OS priority, so the pool adds as many Ps as it has threads: with a P
// for every core still free for request work, the kernel, which knows the
// hashing threads have the lowest priority, decides who gets the CPU.
//
// Each thread also owns argon2 working memory, reused by every hash it
// computes: the process holds at most PoolSize hashes' memory, and a login
// flood makes no garbage for the collector (see internal/argon2). A thread
// that has hashed nothing for idleRelease gives its memory back, so a
// server between logins holds none.
var threads struct {
	once sync.Once
	jobs chan job
	held atomic.Int64 // bytes of argon2 memory the threads hold
}

// job is one computation for a hashing thread. keep is the most argon2
// memory (KiB) the thread should hold on to afterwards: the cost its Hasher
// writes, so that checking a costlier imported hash (replaced at that
// user's login anyway) does not pin its memory for good.
type job struct {
	run  func(*argon2.Memory)
	keep uint32
	done chan struct{}
}

// PoolSize is how many hashes run at once in the whole process, whatever
// the Hashers' own bounds: one per core.
var PoolSize = runtime.NumCPU()

// idleRelease is how long a hashing thread keeps its argon2 memory without
// using it. Mapping it again costs about a millisecond of page faults at
// the next hash.
var idleRelease = 30 * time.Second

// HeldMemory returns how many bytes of argon2 working memory the hashing
// threads of the process hold (for a metric).
func HeldMemory() int64 { return threads.held.Load() }

// onHashThread runs f on a hashing thread, with that thread's argon2
// memory, and waits for it, or returns ctx's error if ctx ends before a
// thread is free. The thread keeps at most keep KiB of memory afterwards.
func onHashThread(ctx context.Context, keep uint32, f func(*argon2.Memory)) error {
	threads.once.Do(startThreads)
	j := job{run: f, keep: keep, done: make(chan struct{})}
	select {
	case threads.jobs <- j:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-j.done
	return nil
}

func startThreads() {
	threads.jobs = make(chan job)
	if lowerPriorityWorks {
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + PoolSize)
	}
	for range PoolSize {
		go hashThread()
	}
}

func hashThread() {
	// Never unlocked: the thread keeps its low priority for good, and no
	// other goroutine ever runs on it.
	runtime.LockOSThread()
	lowerThreadPriority()
	var mem argon2.Memory
	account := func(before uint32) { threads.held.Add((int64(mem.Size()) - int64(before)) << 10) }
	idle := time.NewTimer(idleRelease)
	for {
		select {
		case j := <-threads.jobs:
			before := mem.Size()
			j.run(&mem)
			if mem.Size() > j.keep {
				mem.Release()
			}
			account(before)
			// Before done: a test that shortens idleRelease and waits
			// for its job is then ordered before this read.
			idle.Reset(idleRelease)
			close(j.done)
		case <-idle.C:
			before := mem.Size()
			mem.Release()
			account(before)
		}
	}
}
