package password

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Admission: how many hashes compute at once in the whole process.
//
// A hash is Go code, so it needs one of the process's GOMAXPROCS Ps (the
// right to run Go code) for as long as it computes, and the plugin leaves
// GOMAXPROCS as the host set it (Go's own default follows the container's
// CPU limit, and a call to runtime.GOMAXPROCS would turn that off). With a
// hash on every P, a request that arrives waits for the network poller,
// which the Go scheduler then only runs from sysmon every 10 ms, and then
// for a P, which a hash gives up when preempted, after up to 10 ms more.
//
// So hashes take every P only while the gate is quiet; while it serves
// requests (one within gateWindow), one P stays free of hashing for it, and
// a hash that finds itself over that limit pauses at its next checkpoint
// (every argon2.PauseEvery blocks, under a millisecond of work) until
// another ends. At least one hash computes at any time whatever the load,
// so logins always progress, and at the process's own priority, so a busy
// neighbour slows them as much as the rest of Caddy and no more (pool.go).
//
// make bench on 2 cores: with this, the gate's p99 beside a login flood is
// 0.8 times its p99 beside the same hashing in another process, logins get
// 0.88 of what the cores can hash, and a login beside a busy neighbour
// takes 1.8 times its idle time. With a hash on every P all the time: 10
// times, 0.78 and 8 times (hashing niced); with a P always left free: 0.8
// times, 0.46 and 1.8 times.
var cpu = admission{limit: limit}

// gateWindow is how long the gate counts as busy after a request.
var gateWindow = 100 * time.Millisecond

// gateSeen is when the gate last served a request, in UnixNano.
var gateSeen atomic.Int64

// GateActive tells the hashing that the gate serves a request: for the
// next gateWindow, hashes leave one P to requests. The gate calls it for
// every request it judges; it costs an atomic load, and a store at most
// once a millisecond.
func GateActive() {
	now := time.Now().UnixNano()
	if now-gateSeen.Load() > int64(time.Millisecond) {
		gateSeen.Store(now)
	}
}

// gateQuietAt is when the gate counts as quiet again, if it is busy now.
func gateQuietAt() (time.Time, bool) {
	at := time.Unix(0, gateSeen.Load()).Add(gateWindow)
	return at, time.Now().Before(at)
}

// limit is how many hashes may compute at once now.
func limit() int {
	n := runtime.GOMAXPROCS(0)
	if _, busy := gateQuietAt(); busy {
		n--
	}
	return max(1, n)
}

// admission counts the computations under way against a limit that may
// change at any time, and queues the others in order of arrival.
type admission struct {
	limit func() int

	mu      sync.Mutex
	running int
	queue   []chan struct{} // one per waiter, oldest first
}

// enter waits until one more computation may run, and counts it; first
// puts it at the head of the queue instead of the tail. It returns false,
// counting nothing, if stop closes first.
func (a *admission) enter(stop <-chan struct{}, first bool) bool {
	a.mu.Lock()
	if len(a.queue) == 0 && a.running < a.limit() {
		a.running++
		a.mu.Unlock()
		return true
	}
	me := make(chan struct{}, 1)
	if first {
		a.queue = append([]chan struct{}{me}, a.queue...)
	} else {
		a.queue = append(a.queue, me)
	}
	a.mu.Unlock()
	// The limit rises by itself when the gate goes quiet: nothing wakes the
	// queue then, so its head looks again at that moment.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		a.mu.Lock()
		if a.queue[0] == me && a.running < a.limit() {
			a.queue = a.queue[1:]
			a.running++
			a.wakeLocked()
			a.mu.Unlock()
			return true
		}
		a.mu.Unlock()
		if at, busy := gateQuietAt(); busy {
			timer.Reset(time.Until(at))
		} else {
			timer.Stop()
		}
		select {
		case <-me:
		case <-timer.C:
		case <-stop:
			a.mu.Lock()
			for i, c := range a.queue {
				if c == me {
					a.queue = append(a.queue[:i], a.queue[i+1:]...)
					break
				}
			}
			a.wakeLocked()
			a.mu.Unlock()
			return false
		}
	}
}

// leave ends a computation counted by enter.
func (a *admission) leave() {
	a.mu.Lock()
	a.running--
	a.wakeLocked()
	a.mu.Unlock()
}

// wakeLocked wakes the head of the queue if it may run.
func (a *admission) wakeLocked() {
	if len(a.queue) > 0 && a.running < a.limit() {
		select {
		case a.queue[0] <- struct{}{}:
		default: // already woken
		}
	}
}

// checkpoint is called by a computation between blocks: while more run
// than the limit allows, it steps out until it may run again, ahead of the
// computations not yet started (it holds its memory, and its login has
// waited longest). It reports how long it paused.
func (a *admission) checkpoint() time.Duration {
	a.mu.Lock()
	if a.running <= a.limit() {
		a.mu.Unlock()
		return 0
	}
	a.running--
	a.wakeLocked()
	a.mu.Unlock()
	start := time.Now()
	a.enter(nil, true)
	return time.Since(start)
}
