package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// row is one measured variant: a result per round.
type row struct {
	Name   string
	Load   string // how it was loaded, for the table
	Rounds []result
	Note   string
}

func (r row) median(f func(result) float64) float64 {
	vs := make([]float64, 0, len(r.Rounds))
	for _, res := range r.Rounds {
		vs = append(vs, f(res))
	}
	return median(vs)
}

func (r row) rps() float64 { return r.median(result.RPS) }
func (r row) p50() time.Duration {
	return time.Duration(r.median(func(x result) float64 { return float64(x.P50) }))
}
func (r row) p99() time.Duration {
	return time.Duration(r.median(func(x result) float64 { return float64(x.P99) }))
}
func (r row) troubles() (errs, bad int64) {
	for _, res := range r.Rounds {
		errs += res.Errors
		bad += res.Bad
	}
	return errs, bad
}

// median of vs (mean of the middle two for an even count); 0 for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// roundRatio is the median over rounds of a/b, each round's two numbers
// measured minutes apart at most: drift of the shared machine between
// rounds cancels out of each round's ratio.
func roundRatio(a, b row, f func(result) float64) float64 {
	var rs []float64
	for i := range min(len(a.Rounds), len(b.Rounds)) {
		if d := f(b.Rounds[i]); d != 0 {
			rs = append(rs, f(a.Rounds[i])/d)
		}
	}
	return median(rs)
}

func rps(r result) float64 { return r.RPS() }
func p50(r result) float64 { return float64(r.P50) }
func p99(r result) float64 { return float64(r.P99) }

// check is one target of issue 6 with what this run measured.
type check struct {
	Name     string
	Measured string
	Target   string
	Pass     bool
}

func verdict(pass bool) string {
	if pass {
		return "pass"
	}
	return "FAIL"
}

// variantTable renders the variants: medians over rounds, and each round's
// requests/s so that the spread is visible.
func variantTable(rows []row) string {
	cells := [][]string{{"variant", "load", "req/s", "p50", "p99", "req/s by round", "errors / bad status", "note"}}
	for _, r := range rows {
		var by []string
		for _, res := range r.Rounds {
			by = append(by, fmt.Sprintf("%.0f", res.RPS()))
		}
		errs, bad := r.troubles()
		cells = append(cells, []string{
			r.Name, r.Load, fmt.Sprintf("%.0f", r.rps()), ms(r.p50()), ms(r.p99()),
			strings.Join(by, " "), fmt.Sprintf("%d / %d", errs, bad), r.Note,
		})
	}
	return table(cells)
}

func checkTable(checks []check) string {
	cells := [][]string{{"target", "measured", "target", "result"}}
	for _, c := range checks {
		cells = append(cells, []string{c.Name, c.Measured, c.Target, verdict(c.Pass)})
	}
	return table(cells)
}

// table renders a Markdown table with padded columns, readable as it is in
// a terminal and rendered on a forge.
func table(cells [][]string) string {
	width := make([]int, len(cells[0]))
	for _, r := range cells {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	line := func(r []string) {
		b.WriteString("|")
		for i, c := range r {
			fmt.Fprintf(&b, " %s%s |", c, strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)))
		}
		b.WriteString("\n")
	}
	line(cells[0])
	sep := make([]string, len(width))
	for i, w := range width {
		sep[i] = strings.Repeat("-", w)
	}
	line(sep)
	for _, r := range cells[1:] {
		line(r)
	}
	return b.String()
}

// ms formats a latency in milliseconds, precise enough for sub-millisecond
// gates.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func mib(bytes int64) string { return fmt.Sprintf("%.0f MiB", float64(bytes)/(1<<20)) }

// machine describes the computer the run happened on.
type machine struct {
	CPUs   int
	Model  string
	Memory string
	Kernel string
	Go     string
	Wrk    string
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Model: "unknown", Memory: "unknown"}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.Model = v
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		var kb int64
		if _, err := fmt.Sscanf(v, "%d kB", &kb); err == nil {
			m.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	// wrk -v prints its version and exits non-zero.
	out, _ := exec.Command("wrk", "-v").CombinedOutput()
	m.Wrk, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	m.Wrk, _, _ = strings.Cut(m.Wrk, " Copyright")
	return m
}

// procField returns the value of the first "key : value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// report is everything a run prints and writes to BENCHMARKS.md.
type report struct {
	Date     time.Time
	Took     time.Duration
	Command  string
	Machine  machine
	Caddy    string // what was measured, e.g. versions
	Rows     []row
	Checks   []check
	Notes    []string
	Settings []string
}

func (r report) Markdown() string {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("What authgate's gate costs, measured by `make bench` against plain Caddy and the alternatives on one machine, alternating the variants within one run; the ratios are what to read, since the absolute numbers of a shared machine drift. This file is overwritten by every run.\n\n")
	fmt.Fprintf(&b, "- Date: %s (the run took %s)\n", r.Date.UTC().Format("2006-01-02 15:04 MST"), r.Took.Round(time.Second))
	fmt.Fprintf(&b, "- Command: `make bench` (`%s`)\n", r.Command)
	fmt.Fprintf(&b, "- Machine: %d cores (`nproc`), %s, %s memory, %s\n", r.Machine.CPUs, r.Machine.Model, r.Machine.Memory, r.Machine.Kernel)
	fmt.Fprintf(&b, "- Software: %s; %s; %s\n", r.Caddy, r.Machine.Go, r.Machine.Wrk)
	for _, s := range r.Settings {
		fmt.Fprintf(&b, "- %s\n", s)
	}
	b.WriteString("\n## Targets\n\n")
	b.WriteString(checkTable(r.Checks))
	b.WriteString("\n## Variants\n\nMedians over the rounds; latencies are wrk's (closed loop) except the probe rows (open loop at a fixed rate, latency counted from when a request was due).\n\n")
	b.WriteString(variantTable(r.Rows))
	if len(r.Notes) > 0 {
		b.WriteString("\n## How\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}
