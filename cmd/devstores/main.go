// Command devstores runs a command with throwaway PostgreSQL and Redis.
//
//	devstores [-dir DIR] [-demo ADDR] -- command [args...]
//
// It starts the servers (unless AUTHGATE_POSTGRES or AUTHGATE_REDIS already
// name one), runs the command with AUTHGATE_POSTGRES, AUTHGATE_REDIS and
// AUTHGATE_MAIL_DIR set, stops the servers when it exits and exits with its
// status. With -dir the data stays there for the next run; without it, it
// lives in a temporary directory removed at exit. -demo also serves the demo
// upstream app (cmd/demo) on ADDR.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/authgate/authgate/caddymodule/testenv"
	"github.com/authgate/authgate/cmd/internal/demo"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is main, returning the exit status; it reports to log.
func run(args []string, log io.Writer) int {
	flags := flag.NewFlagSet("devstores", flag.ContinueOnError)
	flags.SetOutput(log)
	dir := flags.String("dir", "", "data directory, kept for the next run (default: a temporary one)")
	demoAddr := flags.String("demo", "", "also serve the demo upstream app on this address")
	flags.Usage = func() {
		fmt.Fprintln(log, "usage: devstores [-dir DIR] [-demo ADDR] -- command [args...]")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if flags.NArg() == 0 {
		flags.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(log, "devstores: %v\n", err)
		return 1
	}

	// Caught from the start, so that a Ctrl-C while the servers start still
	// stops them; forwarded to the command once it runs.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(signals)

	data := *dir
	if data == "" {
		tmp, err := os.MkdirTemp("", "devstores-")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(tmp)
		data = tmp
	}
	data, err := filepath.Abs(data)
	if err != nil {
		return fail(err)
	}

	// The command's environment: later entries win.
	env := os.Environ()
	if os.Getenv("AUTHGATE_POSTGRES") == "" {
		p, err := testenv.StartPostgres(filepath.Join(data, "postgres"))
		if err != nil {
			return fail(err)
		}
		defer stop(log, p)
		env = append(env, "AUTHGATE_POSTGRES="+p.URL())
		fmt.Fprintf(log, "devstores: postgres %s\n", p.URL())
	}
	if os.Getenv("AUTHGATE_REDIS") == "" {
		r, err := testenv.StartRedis(filepath.Join(data, "redis"))
		if err != nil {
			return fail(err)
		}
		defer stop(log, r)
		env = append(env, "AUTHGATE_REDIS="+r.URL())
		fmt.Fprintf(log, "devstores: redis %s\n", r.URL())
	}
	if os.Getenv("AUTHGATE_MAIL_DIR") == "" {
		mail := filepath.Join(data, "mail")
		if err := os.MkdirAll(mail, 0o755); err != nil {
			return fail(err)
		}
		env = append(env, "AUTHGATE_MAIL_DIR="+mail)
	}
	if *demoAddr != "" {
		l, err := net.Listen("tcp", *demoAddr)
		if err != nil {
			return fail(fmt.Errorf("demo: %w", err))
		}
		defer l.Close()
		go http.Serve(l, demo.Handler())
		fmt.Fprintf(log, "devstores: demo http://%s\n", l.Addr())
	}

	select {
	case sig := <-signals:
		return fail(fmt.Errorf("%v before the command started", sig))
	default:
	}
	cmd := exec.Command(flags.Arg(0), flags.Args()[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Its own process group, so that a terminal's Ctrl-C reaches it once,
	// forwarded by us, and not twice: Caddy takes a second SIGINT as "quit
	// now". The price: it must not read from the terminal. Should we die,
	// it is told to stop, as the servers are.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-signals:
			syscall.Kill(-cmd.Process.Pid, sig.(syscall.Signal))
		case err := <-done:
			return exitStatus(log, err)
		}
	}
}

// exitStatus is the status a shell would report for a command that ended
// with err.
func exitStatus(log io.Writer, err error) int {
	if err == nil {
		return 0
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		fmt.Fprintf(log, "devstores: %v\n", err)
		return 1
	}
	if ws := exit.Sys().(syscall.WaitStatus); ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return exit.ExitCode()
}

func stop(log io.Writer, s interface{ Stop() error }) {
	if err := s.Stop(); err != nil {
		fmt.Fprintf(log, "devstores: %v\n", err)
	}
}
