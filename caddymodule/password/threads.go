package password

import (
	"context"
	"runtime"
	"sync"
)

// Hashing runs on a few dedicated OS threads, shared by every Hasher of the
// process, at the lowest CPU priority the kernel offers. A login flood then
// uses the CPU that requests of people already logged in leave over, instead
// of taking turns with them: the gate keeps its latency while logins queue.
//
// Go hands its Ps (the right to run Go code) to threads without regard to
// their OS priority, so the pool adds as many Ps as it has threads: with a P
// for every core still free for request work, the kernel, which knows the
// hashing threads are niced, decides who gets the CPU.
var threads struct {
	once sync.Once
	jobs chan func()
}

// PoolSize is how many hashes run at once in the whole process, whatever
// the Hashers' own bounds: one per core.
var PoolSize = runtime.NumCPU()

// onHashThread runs f on a hashing thread and waits for it, or returns
// ctx's error if ctx ends before a thread is free.
func onHashThread(ctx context.Context, f func()) error {
	threads.once.Do(startThreads)
	done := make(chan struct{})
	select {
	case threads.jobs <- func() { defer close(done); f() }:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done
	return nil
}

func startThreads() {
	threads.jobs = make(chan func())
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
	for job := range threads.jobs {
		job()
	}
}
