package password

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// threadPriority returns a thread's scheduling policy and nice value from
// its /proc stat file.
func threadPriority(path string) (policy, nice string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	// Fields after the command name, which is in parentheses: nice is
	// field 19 of the line, the 17th after ") "; the scheduling policy is
	// field 41, the 39th.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(fields) < 39 {
		return "", "", fmt.Errorf("%s: %d fields", path, len(fields))
	}
	return fields[38], fields[16], nil
}

// threadPriorities counts the threads of this process by scheduling policy
// and nice value.
func threadPriorities(t *testing.T) map[[2]string]int {
	t.Helper()
	stats, err := filepath.Glob("/proc/self/task/*/stat")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[[2]string]int{}
	for _, path := range stats {
		policy, nice, err := threadPriority(path)
		if err != nil {
			continue // the thread ended meanwhile
		}
		counts[[2]string{policy, nice}]++
	}
	return counts
}

// The workers run on threads of their own, niced to hashNice under the
// normal policy (SCHED_OTHER, 0), never the idle class (SCHED_IDLE, 5),
// which a busy neighbour starves; the threads end with their Hasher.
func TestWorkersRunOnNicedThreads(t *testing.T) {
	// Every live worker's thread, and no other: the threads of workers
	// that ended (other tests') end a moment after them.
	niced := func() bool { return threadPriorities(t)[[2]string{"0", strconv.Itoa(hashNice)}] == Workers() }
	h, err := NewHasher(DefaultParams(), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Each worker nices its thread as it starts.
	eventually(t, "one niced thread per worker", niced)
	for key, n := range threadPriorities(t) {
		if key[0] == "5" {
			t.Errorf("%d threads under SCHED_IDLE", n)
		}
	}
	h.Close()
	eventually(t, "threads ended with the workers", niced)
	// Go parks the main thread for good rather than end it: no worker
	// may end there, or the process would show the hashing's priority.
	if _, nice, err := threadPriority(fmt.Sprintf("/proc/self/task/%d/stat", os.Getpid())); err != nil || nice != "0" {
		t.Errorf("the main thread has nice %s (%v), want 0", nice, err)
	}
}

// startHog runs this test binary as a CPU hog (hog) beside the test, in
// the same session, so in the same scheduling group, until the test ends.
func startHog(t *testing.T) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), hogEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
	}()
	if line := await(t, ready, "CPU hog"); line != "ready\n" {
		t.Fatalf("CPU hog said %q", line)
	}
}

// The starvation regression test: with every core kept busy by a process at
// normal priority, hashes still complete. Under SCHED_IDLE, which the
// workers' threads used before, they got next to no CPU beside such a
// neighbour and logins took minutes.
func TestHashesBesideACPUHog(t *testing.T) {
	h, n := newHasher(t, 1)
	n.Store(0)
	startHog(t)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	const hashes = 30
	for i := range hashes {
		if _, err := h.Hash(ctx, "a password"); err != nil {
			t.Fatalf("hash %d of %d beside a CPU hog: %v", i+1, hashes, err)
		}
	}
	if got := n.Load(); got != hashes {
		t.Errorf("%d computations, want %d", got, hashes)
	}
}
