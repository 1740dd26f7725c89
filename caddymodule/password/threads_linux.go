package password

import (
	"os"
	"syscall"
)

// setThreadPriority sets the calling thread's nice value. On Linux it
// belongs to the thread, and an unprivileged process may raise it.
func setThreadPriority(nice int) {
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), nice)
}

// onMainThread tells whether the calling thread is the process's first.
func onMainThread() bool { return syscall.Gettid() == os.Getpid() }
