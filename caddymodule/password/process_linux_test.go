package password

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// startHelper runs this test binary as a helper process of the given kind
// (see helper) beside the test, in the same session, so in the same
// scheduling group, until the test ends. Its parent-death signal is
// SIGKILL; it reports the helper's exit on the returned channel.
func startHelper(t *testing.T, kind string) <-chan error {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+kind)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	if line != "ready\n" {
		t.Fatalf("%s said %q", kind, line)
	}
	return exited
}

// The starvation regression test: with every core kept busy by a process at
// normal priority, hashes still complete. Under SCHED_IDLE, which the
// hashing threads used before, they got next to no CPU beside such a
// neighbour: 13 of these 30 hashes in 2 minutes; now a few seconds.
func TestHashesBesideACPUHog(t *testing.T) {
	h, n := newHasher(t, 1)
	n.Store(0)
	startHelper(t, "hog")
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

// Hashers coming and going leave the process's threads alone: Linux sends
// a child's parent-death signal when the thread that started it ends, and
// Go runs any goroutine on any of its threads, so a worker that ended its
// thread (as workers on niced threads had to) could kill the child
// processes of anything else in the process: the stores of the tests, the
// processes of other Caddy modules. Go itself ends no thread, so every
// thread there was while the Hashers worked must still be there after.
func TestHashersLeaveThreadsAlone(t *testing.T) {
	exited := startHelper(t, "sleeper")
	threads := map[string]bool{}
	for i := range 30 {
		h, err := NewHasher(DefaultParams(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Hash(context.Background(), "a password"); err != nil {
			t.Fatal(err)
		}
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			threads[task.Name()] = true
		}
		h.Close()
		select {
		case err := <-exited:
			t.Fatalf("the child process ended after %d Hashers closed: %v", i+1, err)
		default:
		}
	}
	for tid := range threads {
		if _, err := os.Stat("/proc/self/task/" + tid); err != nil {
			t.Errorf("thread %s ended", tid)
		}
	}
}
