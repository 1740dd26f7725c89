// Package testenv provides throwaway PostgreSQL and Redis servers for tests
// and the dev tooling.
//
// StartPostgres and StartRedis run a server on a free loopback port, with
// its data and log in a directory of the caller's choosing. Tests use the
// helpers instead: PostgresURL and RedisURL share one server per test
// process (or the servers named by AUTHGATE_POSTGRES and AUTHGATE_REDIS),
// OwnPostgres and OwnRedis give a test a private server it may stop, pause
// and restart.
//
// StartCluster and StartSentinels run the other Redis deployments authgate
// supports, a Redis Cluster (3 masters, 3 replicas) and a Sentinel group (a
// master, a replica, 3 sentinels), for tests and cmd/bench. Tests use
// Topologies, which shares one of each per test process and runs the store
// suites over all three, and OwnCluster and OwnSentinels for failovers.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Timeouts for a server to come up and to shut down. Generous, because CI
// machines are slow and a first PostgreSQL start also recovers its cluster.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
)

// server is one server process that can be stopped, paused and started
// again on the same port. Postgres and Redis embed it.
type server struct {
	name    string         // the binary, for messages
	port    int            // fixed for the server's lifetime, so URLs stay valid across restarts
	logPath string         // file that receives the server's output
	stopSig syscall.Signal // the signal that makes the server shut down cleanly
	command func() *exec.Cmd
	ready   func(context.Context) error

	mu   sync.Mutex
	cmd  *exec.Cmd     // nil when stopped
	done chan struct{} // closed when cmd has exited
}

// Start starts the server again after Stop, on the same port, and waits
// until it accepts requests.
func (s *server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("%s on port %d: already running", s.name, s.port)
	}
	log, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: open log: %w", s.name, err)
	}
	defer log.Close() // the child has its own copy
	cmd := s.command()
	cmd.Stdout, cmd.Stderr = log, log
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Its own process group lets Pause freeze PostgreSQL's backends along
	// with the postmaster, and keeps a terminal's Ctrl-C away from it (the
	// owner stops it in order). The parent-death signal shuts it down when
	// a test binary dies without cleaning up, e.g. on a test timeout. (Linux
	// sends it when the thread that started the server ends, which in Go is
	// when the process does, unless that thread was locked to a goroutine.)
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = s.stopSig
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		err := s.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("%s exited at startup (%v); its log %s ends:\n%s", s.name, cmd.ProcessState, s.logPath, tail(s.logPath))
		case <-ctx.Done():
			s.kill()
			return fmt.Errorf("%s not ready on port %d after %v: %w; its log %s ends:\n%s", s.name, s.port, startTimeout, err, s.logPath, tail(s.logPath))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop shuts the server down cleanly (killing it if that takes too long)
// and waits for it to exit. Stopping a stopped server does nothing.
func (s *server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	// SIGCONT too, or a paused server would never act on the stop signal.
	if err := s.signal(s.stopSig); err != nil {
		return err
	}
	if err := s.signal(syscall.SIGCONT); err != nil {
		return err
	}
	select {
	case <-s.done:
		s.cmd = nil
		return nil
	case <-time.After(stopTimeout):
		s.kill()
		return fmt.Errorf("%s did not stop within %v; killed", s.name, stopTimeout)
	}
}

// Kill ends the server at once (SIGKILL to its process group), as a crash
// or a lost machine would, and waits for it to exit; Start brings it back.
// Killing a stopped server does nothing.
func (s *server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.kill()
	}
	return nil
}

// PID is the server's process id, 0 while it is stopped.
func (s *server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running tells whether the server was started and has not been stopped
// or killed since.
func (s *server) Running() bool { return s.PID() != 0 }

// Pause freezes the server (SIGSTOP), so that it accepts connections but
// never answers: what a hung server looks like to a client.
func (s *server) Pause() error { return s.lockedSignal(syscall.SIGSTOP) }

// Resume lets a paused server run again (SIGCONT).
func (s *server) Resume() error { return s.lockedSignal(syscall.SIGCONT) }

func (s *server) lockedSignal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("%s on port %d: not running", s.name, s.port)
	}
	return s.signal(sig)
}

// signal sends sig to the server's process group. s.mu must be held.
func (s *server) signal(sig syscall.Signal) error {
	if err := syscall.Kill(-s.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s: send %v: %w", s.name, sig, err)
	}
	return nil
}

// kill ends the server's process group at once. s.mu must be held.
func (s *server) kill() {
	s.signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}

// FreePorts returns n distinct loopback TCP ports that are free right now:
// the listeners stay open until all n are picked, so that none repeats.
// Whoever uses one later may find it taken meanwhile; the servers here
// start on it or fail saying so.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func freePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// lookPath finds a server binary, or says which Debian package provides it.
func lookPath(file, pkg string) (string, error) {
	path, err := exec.LookPath(file)
	if err != nil {
		return "", fmt.Errorf("%s not found; install it with: %s", file, aptInstall(pkg))
	}
	return path, nil
}

// aptInstall is the command that installs a Debian package.
func aptInstall(pkg string) string {
	cmd := "apt-get install -y " + pkg
	if os.Geteuid() != 0 {
		cmd = "sudo " + cmd
	}
	return cmd
}
