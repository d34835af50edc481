package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/eventually"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// readyTimeout bounds how long the agent may take to install its table and
// bind its queues; it only turns a hung start into a failure.
const readyTimeout = 20 * time.Second

// agent is one fwagent process running inside a namespace.
type agent struct {
	ns      *testnet.NS
	policy  string // the policy file it runs
	cmd     *exec.Cmd
	logFile string
	stderr  *lineBuffer
	exited  chan struct{} // closed when the process has been reaped
	waitErr error         // valid after exited is closed
}

// lineBuffer collects the agent's stderr and signals the first line that
// contains the ready marker.
type lineBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	ready   chan struct{}
	seen    bool
}

func newLineBuffer() *lineBuffer { return &lineBuffer{ready: make(chan struct{})} }

func (l *lineBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		if !l.seen && (bytes.Contains(l.partial[:i], []byte("msg=ready")) || bytes.Contains(l.partial[:i], []byte(`"msg":"ready"`))) {
			l.seen = true
			close(l.ready)
		}
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *lineBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// writePolicy writes a policy file into a fresh temp dir and returns its path.
func writePolicy(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startAgent runs `fwagent run --policy policy --log-file <tmp> args...`
// inside ns and waits for msg=ready (see spawn for the cleanups).
func startAgent(t *testing.T, ns *testnet.NS, policy string, args ...string) *agent {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), "events.jsonl")
	full := append([]string{"run", "--policy", policy, "--log-file", logFile}, args...)
	if !slices.Contains(args, "--kernel-rules") {
		// These tests were written for the queue path (offload, fail-open,
		// queue metrics, reload of queued flows) and keep testing it; a
		// test of the kernel path asks for --kernel-rules auto.
		full = append(full, "--kernel-rules", "off")
	}
	a := spawn(t, ns, logFile, ns.Command(context.Background(), agentBin, full...))
	a.policy = policy
	a.waitReady(t)
	return a
}

// spawn starts cmd, an agent of ns that writes its events to logFile, and
// registers cleanups that kill it and, when the test failed, dump its
// stderr, log and the namespace's ruleset. It does not wait for ready:
// some tests expect the start to fail.
func spawn(t *testing.T, ns *testnet.NS, logFile string, cmd *exec.Cmd) *agent {
	t.Helper()
	a := &agent{ns: ns, cmd: cmd, logFile: logFile, stderr: newLineBuffer(), exited: make(chan struct{})}
	// Nothing is expected on stdout but events in some tests; keep it for
	// the dump and the ready marker alike.
	cmd.Stdout, cmd.Stderr = a.stderr, a.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start agent: %v", err)
	}
	go func() {
		a.waitErr = cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(func() { a.kill(t) })
	t.Cleanup(func() {
		if t.Failed() {
			a.dump(t)
		}
	})
	t.Logf("started %s in %s (pid %d)", strings.Join(cmd.Args, " "), ns.Name(), cmd.Process.Pid)
	return a
}

// waitReady waits for the agent's msg=ready and fails the test if it exits
// first or takes longer than readyTimeout.
func (a *agent) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-a.stderr.ready:
	case <-a.exited:
		t.Fatalf("agent exited before ready: %v", a.waitErr)
	case <-time.After(readyTimeout):
		t.Fatalf("agent not ready after %v", readyTimeout)
	}
}

// stderrAfterReady is what the agent logged after its ready line.
func (a *agent) stderrAfterReady() string {
	s := a.stderr.String()
	i := strings.Index(s, "msg=ready")
	if i < 0 {
		return ""
	}
	s = s[i:]
	if j := strings.IndexByte(s, '\n'); j >= 0 {
		return s[j+1:]
	}
	return ""
}

// kill ends the agent with SIGKILL if it still runs, and reaps it.
func (a *agent) kill(t *testing.T) {
	select {
	case <-a.exited:
		return
	default:
	}
	if err := a.cmd.Process.Kill(); err != nil {
		t.Logf("kill agent: %v", err)
	}
	<-a.exited
}

// alive reports whether the agent process is still running.
func (a *agent) alive() bool {
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

// stop sends sig and waits (bounded) for the agent to exit, returning its
// exit code.
func (a *agent) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("agent still running 15s after %v", sig)
	}
	return a.cmd.ProcessState.ExitCode()
}

func (a *agent) dump(t *testing.T) {
	t.Logf("agent stderr:\n%s", a.stderr.String())
	if b, err := os.ReadFile(a.logFile); err == nil {
		t.Logf("agent log file %s:\n%s", a.logFile, b)
	}
	out, err := a.ns.Command(context.Background(), "nft", "list", "ruleset").CombinedOutput()
	t.Logf("nft list ruleset in %s (err %v):\n%s", a.ns.Name(), err, out)
}

// event is one JSON drop event. Values are kept as decoded so the test can
// report exactly what the agent wrote; str renders any of them as text.
type event map[string]any

func (e event) str(key string) string {
	v, ok := e[key]
	if !ok || v == nil {
		return ""
	}
	if f, ok := v.(float64); ok {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprint(v)
}

// isProto matches the proto field whether written as a name or a number.
func (e event) isProto(name string, num int) bool {
	p := e.str("proto")
	return p == name || p == fmt.Sprint(num)
}

func (e event) String() string {
	b, _ := json.Marshal(map[string]any(e))
	return string(b)
}

// events reads every complete event line the agent has written so far.
func (a *agent) events(t *testing.T) []event {
	t.Helper()
	f, err := os.Open(a.logFile)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("open event log: %v", err)
	}
	defer f.Close()
	var evs []event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			// The last line may still be being written.
			continue
		}
		evs = append(evs, e)
	}
	return evs
}

// waitEvents polls the event log until at least n events satisfy match, or
// the bound passes (events travel asynchronously through NFLOG), and returns
// the matching events seen.
func (a *agent) waitEvents(t *testing.T, n int, match func(event) bool) []event {
	t.Helper()
	var got []event
	eventually.True(5*time.Second, 50*time.Millisecond, func() bool {
		got = nil
		for _, e := range a.events(t) {
			if match(e) {
				got = append(got, e)
			}
		}
		return len(got) >= n
	})
	return got
}

// nft runs nft inside ns and returns its output.
func nft(t *testing.T, ns *testnet.NS, args ...string) string {
	t.Helper()
	out, err := ns.Command(context.Background(), "nft", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s in %s: %v\n%s", strings.Join(args, " "), ns.Name(), err, out)
	}
	return string(out)
}

// requireKernelTools is the common preamble of tests that run the agent.
func requireKernelTools(t *testing.T) {
	t.Helper()
	requireAgent(t)
	testnet.RequireRoot(t)
	testnet.RequireCommands(t, "nft", "ip")
}
