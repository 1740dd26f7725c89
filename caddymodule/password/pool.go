package password

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/authgate/authgate/caddymodule/password/internal/argon2"
)

// Each Hasher computes on workers of its own, started by NewHasher and
// stopped by Close, so that nothing of a config outlives it in the Caddy
// process. A worker is an ordinary goroutine at the process's priority:
// what keeps the gate responsive is the admission (admission.go), in the
// Go scheduler, not the kernel. Hashing on threads of a lower priority, as
// before, had two costs. Under SCHED_IDLE a busy neighbour at normal
// priority starved the hashing (make bench: a login beside stress-ng --cpu
// 2 took 350 times its idle time; 3.8 times at nice 5, 1.8 times now).
// And an unprivileged thread cannot take back the priority it gave up, so
// such a thread has to end with its worker, which also kills every child
// process started from that thread with a parent-death signal (Pdeathsig
// is sent when the creating thread ends, not the process), and Go runs any
// goroutine on any thread: a config reload would kill such children of
// other modules, as closing a Hasher in make bench killed the bench's own
// Caddy or stores now and then.
//
// Each worker also owns argon2 working memory, reused by every hash it
// computes, so a login flood makes no garbage for the collector (see
// internal/argon2) and a Hasher holds at most its concurrency's worth. A
// worker that has hashed nothing for idleRelease gives its memory back, so
// a server between logins holds none.

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

// Workers returns how many hashing workers (goroutines) run in the
// process: the sum of the concurrency of the Hashers not yet closed.
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
	defer workers.Add(-1)
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
