//go:build !linux

package password

// setThreadPriority does nothing where threads have no priority of their
// own that an unprivileged process may change.
func setThreadPriority(int) {}

// onMainThread is false elsewhere: the workers leave the threads' priority
// alone there, so the main thread serves them as well as any other.
func onMainThread() bool { return false }
