package password

import "syscall"

const lowerPriorityWorks = true

// lowerThreadPriority sets the calling thread's nice value to 19. On Linux
// the nice value belongs to the thread, and raising it needs no privilege.
func lowerThreadPriority() {
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 19)
}
