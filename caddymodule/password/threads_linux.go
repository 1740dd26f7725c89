package password

import (
	"syscall"
	"unsafe"
)

const lowerPriorityWorks = true

// schedIdle is Linux's SCHED_IDLE scheduling policy (linux/sched.h).
const schedIdle = 5

// lowerThreadPriority puts the calling thread under SCHED_IDLE, or, where
// that is refused, at nice 19. Both belong to the thread on Linux, and an
// unprivileged process may lower its own priority.
//
// SCHED_IDLE rather than nice 19: the kernel preempts a SCHED_IDLE thread
// the moment any normal thread wakes up, whereas a niced thread may finish
// its time slice first, which a request then waits for (milliseconds). Both
// get the CPU whenever request work leaves it free.
func lowerThreadPriority() {
	var param struct{ priority int32 } // struct sched_param; must be 0 for SCHED_IDLE
	_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETSCHEDULER, 0, schedIdle, uintptr(unsafe.Pointer(&param)))
	if errno != 0 {
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 19)
	}
}
