package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// caddyProc is one Caddy process run by the bench, with its config and log
// in the bench's temporary directory.
type caddyProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// startCaddy writes caddyfile and runs bin with it, then waits until every
// port in ready answers HTTP (any status): Caddy is then serving them.
func startCaddy(ctx context.Context, dir, name, bin, caddyfile string, ready ...int) (*caddyProc, error) {
	cfg := filepath.Join(dir, name+".Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own copy
	cmd := exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Caddy's autosaved config and data go to the temporary directory, not
	// to the user's home; the parent-death signal stops Caddy if the bench
	// dies without cleaning up.
	cmd.Env = append(os.Environ(),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "xdg-config"),
		"XDG_DATA_HOME="+filepath.Join(dir, "xdg-data"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &caddyProc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for _, port := range ready {
		for !answers(ctx, port) {
			select {
			case <-p.done:
				return nil, fmt.Errorf("%s exited at start: %s\n%s", name, cmd.ProcessState, tail(logPath))
			case <-ctx.Done():
				p.Stop()
				return nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				p.Stop()
				return nil, fmt.Errorf("%s: port %d not answering after 60s\n%s", name, port, tail(logPath))
			}
		}
	}
	return p, nil
}

// answers reports whether an HTTP server answers on the loopback port.
func answers(ctx context.Context, port int) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// Stop asks Caddy to shut down and kills it if it has not after 10 s.
func (p *caddyProc) Stop() {
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// memory returns the process's resident set now (VmRSS) and its peak
// (VmHWM), from /proc/<pid>/status.
func (p *caddyProc) memory() (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	return parseStatusMemory(f)
}

func parseStatusMemory(f io.Reader) (rss, peak int64, err error) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q", k, v)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	if rss == 0 || peak == 0 {
		return 0, 0, errors.New("no VmRSS/VmHWM in /proc/<pid>/status")
	}
	return rss, peak, sc.Err()
}

// resetPeak resets the kernel's VmHWM of the process to its current RSS
// (writing 5 to clear_refs, Linux ≥ 4.0), so that a later VmHWM is the peak
// of what happened in between, not of the process's whole life.
func (p *caddyProc) resetPeak() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0)
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
