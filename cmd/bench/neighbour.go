package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Logins timed one after another in each state of a neighbour round.
const neighbourLogins = 9

// neighbourUser logs in during the neighbour part. A user of its own,
// because every login ends the oldest of a user's sessions beyond
// max_sessions, and the other parts use the bench user's.
const neighbourUser = "benchneighbour"

// neighbour times logins with the machine idle and with every core kept
// busy by an ordinary process at normal priority (stress-ng --cpu <cores>)
// in the same session as Caddy. Password hashing must give way to request
// work but never starve behind a busy neighbour: a login that took 30 ms
// took minutes beside one when authgate hashed under SCHED_IDLE.
func (b *bench) neighbour(ctx context.Context) (section, error) {
	if _, err := exec.LookPath("stress-ng"); err != nil {
		return section{}, errors.New("stress-ng not found; install it with: sudo apt-get install -y stress-ng")
	}
	site := url(b.ports.Gate)
	if err := register(ctx, site, neighbourUser, "neighbour@example.com"); err != nil {
		return section{}, err
	}
	cores := runtime.NumCPU()
	desc := fmt.Sprintf("%d logins one after another", neighbourLogins)
	idle := row{Name: "login, idle", Load: desc, Note: "right password; p99 = the slowest"}
	busy := row{Name: "login, cores busy with a neighbour", Load: desc, Note: fmt.Sprintf("beside stress-ng --cpu %d at normal priority", cores)}
	for r := range b.o.rounds {
		// Which goes first alternates, as in the other parts.
		for step := range 2 {
			var err error
			if (r+step)%2 == 0 {
				var res result
				res, err = timeLogins(ctx, site)
				idle.Rounds = append(idle.Rounds, res)
			} else {
				var res result
				res, err = besideNeighbour(ctx, cores, func() (result, error) { return timeLogins(ctx, site) })
				busy.Rounds = append(busy.Rounds, res)
			}
			if err != nil {
				return section{}, err
			}
		}
		logger.Printf("round %d/%d login p50 idle %s, beside the neighbour %s (slowest %s)",
			r+1, b.o.rounds, ms(idle.Rounds[r].P50), ms(busy.Rounds[r].P50), ms(busy.Rounds[r].P99))
	}
	c := ratioCheck(fmt.Sprintf("login p50 with %d cores busy with a normal-priority neighbour ÷ idle", cores), roundRatio(busy, idle, p50), "<=", 15)
	c.Measured += fmt.Sprintf(" (idle %s, beside the neighbour %s)", ms(idle.p50()), ms(busy.p50()))
	autogroup := ""
	if v, err := os.ReadFile("/proc/sys/kernel/sched_autogroup_enabled"); err == nil && strings.TrimSpace(string(v)) == "1" {
		autogroup = " Autogroup scheduling is on here, so the neighbour being in Caddy's session puts it in Caddy's scheduling group, where the two weigh by their threads (a neighbour in a session of its own would get half the CPU as a group, however many threads it runs)."
	}
	return section{
		rows:   []row{idle, busy},
		checks: []check{c},
		notes: []string{
			fmt.Sprintf("Neighbour: the time of a login (right password, through `POST /auth/users/login`, %d one after another) with the machine otherwise idle, and with `stress-ng --cpu %d` (one busy process per core, at normal priority) started by the bench in its own session, so in Caddy's, as a batch job or a test suite beside the server would run; the two alternate in each round, and the ratio is the median of the rounds' ratios of median logins.%s", neighbourLogins, cores, autogroup),
		},
	}, nil
}

// timeLogins logs neighbourUser in neighbourLogins times, one after
// another, and returns their median as P50 and the slowest as P99. A login
// that does not answer within loginPatience is the starvation this part
// looks for: it counts as an error, with the time waited as its time, and
// ends the series.
func timeLogins(ctx context.Context, site string) (result, error) {
	var times []time.Duration
	var res result
	start := time.Now()
	for range neighbourLogins {
		lctx, cancel := context.WithTimeout(ctx, loginPatience)
		t := time.Now()
		_, err := loginAs(lctx, site, neighbourUser)
		timedOut := lctx.Err() != nil && ctx.Err() == nil
		cancel()
		times = append(times, time.Since(t))
		if err != nil {
			if !timedOut {
				return result{}, err
			}
			logger.Printf("a login did not answer within %s", loginPatience)
			res.Errors++
			break
		}
	}
	slices.Sort(times)
	res.Requests = int64(len(times)) - res.Errors
	res.Duration = time.Since(start)
	res.P50 = percentile(times, 50)
	res.P99 = times[len(times)-1]
	return res, nil
}

// loginPatience is how long a login of the neighbour part may take.
const loginPatience = 30 * time.Second

// besideNeighbour runs f while stress-ng keeps cores busy at normal
// priority. stress-ng stays in the bench's session (a process group of its
// own, so that its workers stop with it).
func besideNeighbour(ctx context.Context, cores int, f func() (result, error)) (result, error) {
	cmd := exec.CommandContext(ctx, "stress-ng", "--cpu", strconv.Itoa(cores), "--timeout", "10m", "--quiet")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("stress-ng: %w", err)
	}
	sleep(ctx, time.Second) // its workers are running
	res, err := f()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	_ = cmd.Wait() // ended by the signal
	return res, err
}
