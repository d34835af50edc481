package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process of the harness (a handler, a sink, a sender),
// with its output kept for results and for error messages.
type proc struct {
	name string
	cmd  *exec.Cmd

	mu     sync.Mutex
	stdout []string
	stderr []string
	ready  chan struct{}
	marker string
	once   sync.Once
	done   chan struct{}
	err    error
}

// startProc starts cmd and, when marker is not empty, waits until a line of
// its stdout or stderr contains marker. The child is killed if the harness
// dies (Pdeathsig), so no handler outlives a crashed run.
func startProc(ctx context.Context, name string, cmd *exec.Cmd, marker string, timeout time.Duration) (*proc, error) {
	p := &proc{name: name, cmd: cmd, ready: make(chan struct{}), marker: marker, done: make(chan struct{})}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	so, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	se, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.scan(so, &p.stdout) }()
	go func() { defer wg.Done(); p.scan(se, &p.stderr) }()
	go func() {
		wg.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	if marker == "" {
		return p, nil
	}
	select {
	case <-p.ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("bench: %s exited before it was ready (%v): %s", name, p.err, p.tail())
	case <-time.After(timeout):
		p.kill()
		return nil, fmt.Errorf("bench: %s not ready after %v: %s", name, timeout, p.tail())
	case <-ctx.Done():
		p.kill()
		return nil, fmt.Errorf("bench: %s: %w", name, ctx.Err())
	}
}

func (p *proc) scan(r io.Reader, into *[]string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		*into = append(*into, line)
		p.mu.Unlock()
		if p.marker != "" && strings.Contains(line, p.marker) {
			p.once.Do(func() { close(p.ready) })
		}
	}
	// Drain so the child never blocks on a full pipe after a long line.
	_, _ = io.Copy(io.Discard, r)
}

// Stdout is everything the process printed on stdout so far.
func (p *proc) Stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.stdout, "\n")
}

// StderrLines is a copy of its stderr lines.
func (p *proc) StderrLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.stderr...)
}

func (p *proc) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	all := append(append([]string(nil), p.stdout...), p.stderr...)
	if len(all) > 8 {
		all = all[len(all)-8:]
	}
	return strings.Join(all, " | ")
}

// cpu is the process's user+system CPU seconds so far, all threads.
func (p *proc) cpu() (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("bench: %s cpu: %w", p.name, err)
	}
	return parseProcStatCPU(b)
}

// wait waits for the process to exit by itself.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("bench: %s: %w: %s", p.name, p.err, p.tail())
		}
		return nil
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("bench: %s still running after %v", p.name, timeout)
	}
}

// stop asks the process to end with SIGTERM, and kills it if it has not
// after timeout.
func (p *proc) stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("bench: %s ignored SIGTERM for %v and was killed", p.name, timeout)
	}
}

func (p *proc) exitErr() error {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() {
		// Killed by the SIGTERM we sent: a normal end for C programs
		// and iperf3.
		return nil
	}
	if p.err != nil {
		return fmt.Errorf("bench: %s: %w: %s", p.name, p.err, p.tail())
	}
	return nil
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}
