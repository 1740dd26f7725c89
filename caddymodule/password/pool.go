package password

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/authgate/authgate/caddymodule/password/internal/argon2"
)

// Each Hasher computes on workers of its own, started by NewHasher and
// stopped by Close, so that nothing of a config outlives it in the Caddy
// process. A worker is a goroutine locked to an OS thread that it niced to
// hashNice: the kernel then gives the CPU to the gate's threads, and to
// other processes' (the upstream, Redis, PostgreSQL), before the hashing,
// yet a busy neighbour at normal priority never starves it, as it did the
// idle class (SCHED_IDLE) used before. By CFS weights a nice 5 thread gets
// about a third of what a nice 0 one gets of a contended core (nice 10: a
// tenth), and all of an idle one; make bench measured a login beside
// stress-ng --cpu 2 at 3.7 times its idle time with nice 5, 9 times with
// nice 10, and 350 times under SCHED_IDLE. When the worker ends, so does its
// thread.
//
// Each worker also owns argon2 working memory, reused by every hash it
// computes, so a login flood makes no garbage for the collector (see
// internal/argon2) and a Hasher holds at most its concurrency's worth. A
// worker that has hashed nothing for idleRelease gives its memory back, so
// a server between logins holds none.

// hashNice is the nice value of the hashing threads.
const hashNice = 5

// ErrClosed is returned for a hash asked of a Hasher after Close.
var ErrClosed = errors.New("password hasher closed")

// Process-wide counts, for the metric and for tests.
var (
	held    atomic.Int64 // bytes of argon2 memory the workers hold
	workers atomic.Int64 // workers running
)

// HeldMemory returns how many bytes of argon2 working memory the hashing
// workers of the process hold (for a metric).
func HeldMemory() int64 { return held.Load() }

// Workers returns how many hashing workers run in the process, each on an
// OS thread of its own: the sum of the concurrency of the Hashers not yet
// closed.
func Workers() int { return int(workers.Load()) }

// idleRelease is how long a worker keeps its argon2 memory without using
// it. Mapping it again costs about a millisecond of page faults at the next
// hash.
var idleRelease atomic.Int64

func init() { idleRelease.Store(int64(30 * time.Second)) }

// job is one computation for a worker.
type job struct {
	ctx  context.Context
	run  func(*argon2.Memory)
	done chan outcome
}

type outcome struct {
	took time.Duration // computing, pauses excluded
	err  error
}

// startWorkers starts n workers for h.
func (h *Hasher) startWorkers(n int) {
	h.jobs = make(chan job)
	h.quit = make(chan struct{})
	workers.Add(int64(n))
	for range n {
		h.wg.Go(h.worker)
	}
}

// Close stops h's workers and waits for them to end; a computation under
// way finishes first. Hashes asked afterwards, or waiting for a worker,
// fail with ErrClosed. Close may be called more than once.
func (h *Hasher) Close() error {
	h.closeOnce.Do(func() { close(h.quit) })
	h.wg.Wait()
	return nil
}

// submit runs f on one of h's workers and waits for it. It gives up if ctx
// ends before a worker is free, or before the process may compute one more
// hash.
func (h *Hasher) submit(ctx context.Context, f func(*argon2.Memory)) (time.Duration, error) {
	j := job{ctx: ctx, run: f, done: make(chan outcome, 1)}
	select {
	case h.jobs <- j:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-h.quit:
		return 0, ErrClosed
	}
	o := <-j.done
	return o.took, o.err
}

func (h *Hasher) worker() {
	// Never unlocked: no other goroutine ever runs on this thread with its
	// priority, and the thread ends with the worker. But Go never ends the
	// process's main thread: a goroutine that ends locked to it leaves it
	// parked for good, niced (which ps and top show as the process's
	// priority). So a worker that starts there hands over to one on another
	// thread, holding the main thread until then so that the other cannot
	// start there too.
	runtime.LockOSThread()
	if onMainThread() {
		moved := make(chan struct{})
		h.wg.Go(func() {
			runtime.LockOSThread()
			close(moved)
			h.work()
		})
		<-moved
		runtime.UnlockOSThread()
		return
	}
	h.work()
}

// work computes jobs on a thread locked to the calling goroutine until h
// closes.
func (h *Hasher) work() {
	defer workers.Add(-1)
	setThreadPriority(hashNice)

	var mem argon2.Memory
	var paused time.Duration
	mem.Pause = func() { paused += cpu.checkpoint() }
	account := func(before uint32) { held.Add((int64(mem.Size()) - int64(before)) << 10) }
	defer func() {
		before := mem.Size()
		mem.Release()
		account(before)
	}()
	idle := time.NewTimer(time.Duration(idleRelease.Load()))
	defer idle.Stop()
	for {
		// Close first: a job waiting beside it gets ErrClosed, not a hash.
		select {
		case <-h.quit:
			return
		default:
		}
		select {
		case j := <-h.jobs:
			before := mem.Size()
			o := h.compute(j, &mem, &paused)
			// A costlier imported hash does not pin its memory for good.
			if mem.Size() > h.params.Memory {
				mem.Release()
			}
			account(before)
			idle.Reset(time.Duration(idleRelease.Load()))
			// Last: who waits for the job sees HeldMemory and the idle
			// timer as the job left them.
			j.done <- o
		case <-idle.C:
			before := mem.Size()
			mem.Release()
			account(before)
		case <-h.quit:
			return
		}
	}
}

// compute runs j once the process may compute one more hash, unless j's
// request ends first.
func (h *Hasher) compute(j job, mem *argon2.Memory, paused *time.Duration) outcome {
	if err := j.ctx.Err(); err != nil {
		return outcome{err: err} // it ended as the worker took it
	}
	if !cpu.enter(j.ctx.Done(), false) {
		return outcome{err: j.ctx.Err()}
	}
	defer cpu.leave()
	*paused = 0
	start := time.Now()
	j.run(mem)
	return outcome{took: time.Since(start) - *paused}
}
