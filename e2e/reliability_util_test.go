package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwagent/fwagent/bench/gen"
	"github.com/fwagent/fwagent/internal/metrics"
	"github.com/fwagent/fwagent/internal/procqueue"
	"github.com/fwagent/fwagent/internal/testing/tempdir"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// metricsFlag reports whether the agent under test has --metrics-addr. The
// reliability tests read the agent's counters there; an agent without it
// still gets every behavioural check, and the tests say which counter
// checks they left out.
var metricsFlag = sync.OnceValue(func() bool {
	if agentBin == "" {
		return false
	}
	out, _ := exec.Command(agentBin, "run", "--help").CombinedOutput()
	return bytes.Contains(out, []byte("--metrics-addr"))
})

// metricsArgs returns the flags that put the agent's metrics on a unix
// socket in a temp dir (a socket reaches across namespaces, a loopback port
// would not), and the socket's path; both empty without --metrics-addr.
func metricsArgs(t *testing.T) ([]string, string) {
	t.Helper()
	if !metricsFlag() {
		t.Logf("the agent has no --metrics-addr: counter checks are left out")
		return nil, ""
	}
	// Unix socket paths are limited to 108 bytes; t.TempDir can be longer.
	sock := filepath.Join(tempdir.Short(t, "fwm"), "m.sock")
	return []string{"--metrics-addr", sock}, sock
}

// samples is one scrape: the value of every sample by its full name with
// labels, e.g. `fwagent_packets_total{hook="input",verdict="drop"}`.
type samples map[string]float64

// sum adds up every sample of the metric name, whatever its labels.
func (s samples) sum(name string) float64 {
	var v float64
	for k, x := range s {
		if k == name || strings.HasPrefix(k, name+"{") {
			v += x
		}
	}
	return v
}

// scrape reads /metrics from the unix socket sock; nil when sock is "".
func scrape(t *testing.T, sock string) samples {
	t.Helper()
	if sock == "" {
		return nil
	}
	c := metrics.NewClient("unix", sock, 10*time.Second)
	defer c.Close()
	code, body, err := c.Get(context.Background(), "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrape metrics: status %d, err %v", code, err)
	}
	s := samples{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		s[line[:i]] = v
	}
	return s
}

// procStatus is what /proc/PID/status says about the memory and threads of
// a process, plus its open descriptors.
type procStatus struct {
	HWM, RSS uint64 // bytes
	Threads  int
	FDs      int
}

func readProcStatus(pid int) (procStatus, error) {
	var ps procStatus
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmHWM":
			ps.HWM = n << 10
		case "VmRSS":
			ps.RSS = n << 10
		case "Threads":
			ps.Threads = int(n)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return ps, err
	}
	ps.FDs = len(fds)
	return ps, nil
}

// kernelQueues reads the kernel's NFQUEUE counters of ns (the file is per
// network namespace, so it is read by a process inside it).
func kernelQueues(t *testing.T, ns *testnet.NS) []procqueue.Queue {
	t.Helper()
	out, err := ns.Command(context.Background(), "cat", "/proc/net/netfilter/nfnetlink_queue").Output()
	if err != nil {
		t.Fatalf("read nfnetlink_queue in %s: %v", ns.Name(), err)
	}
	qs, err := procqueue.Parse(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("parse nfnetlink_queue: %v\n%s", err, out)
	}
	return qs
}

// echoConn is one TCP connection to an echo server that the tests keep
// exchanging data on across agent restarts.
type echoConn struct {
	c   net.Conn
	seq int
}

func openEcho(t *testing.T, ns *testnet.NS, dst string) *echoConn {
	t.Helper()
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", dst, answerWait)
		return err
	}); err != nil {
		t.Fatalf("connect %s: %v", dst, err)
	}
	t.Cleanup(func() { c.Close() })
	return &echoConn{c: c}
}

// send writes one numbered message.
func (e *echoConn) send() ([]byte, error) {
	e.seq++
	msg := []byte(fmt.Sprintf("message %06d\n", e.seq))
	_ = e.c.SetWriteDeadline(time.Now().Add(answerWait))
	_, err := e.c.Write(msg)
	return msg, err
}

// recv waits up to wait for want to come back; a timeout leaves the
// connection usable (the bytes may still arrive later).
func (e *echoConn) recv(want []byte, wait time.Duration) error {
	_ = e.c.SetReadDeadline(time.Now().Add(wait))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(e.c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("echo %q, want %q", got, want)
	}
	return nil
}

// roundTrip sends one message and waits up to wait for its echo.
func (e *echoConn) roundTrip(wait time.Duration) error {
	msg, err := e.send()
	if err != nil {
		return err
	}
	return e.recv(msg, wait)
}

// runSink serves a gen.Sink at addr in ns for the rest of the test; stop
// ends it early and returns what its Run returned.
func runSink(t *testing.T, ns *testnet.NS, addr netip.AddrPort) (sink *gen.Sink, stop func() error) {
	t.Helper()
	sink = inNS(t, ns, func() (*gen.Sink, error) { return gen.ListenSink(addr) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sink.Run(ctx) }()
	t.Cleanup(cancel)
	return sink, func() error {
		cancel()
		return <-done
	}
}
