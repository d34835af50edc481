package e2e

import (
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testnet"
)

// TestSecondInstance starts a second agent in a namespace where one already
// runs with the same queues: the second must fail, and the first must keep
// its table and keep filtering.
func TestSecondInstance(t *testing.T) {
	requireKernelTools(t)
	t.Parallel()
	for _, args := range [][]string{
		nil,                    // fails on the NFLOG group
		{"--log-group", "101"}, // gets past NFLOG, must fail on the queue
	} {
		t.Run(strings.Join(append([]string{"second"}, args...), " "), func(t *testing.T) { secondInstance(t, args) })
	}
}

func secondInstance(t *testing.T, secondArgs []string) {
	n := testnet.New(t)
	serveTCP(t, n.Server, 8080)
	serveTCP(t, n.Server, 8081)
	policy := writePolicy(t, lifecyclePolicy)
	first := startAgent(t, n.Server, policy)

	second := &agent{ns: n.Server, stderr: newLineBuffer(), exited: make(chan struct{})}
	// Metrics off, so the second fails where the test expects it to: on the
	// NFLOG group or the queue, not on the first agent's metrics port.
	args := append([]string{"run", "--policy", policy, "--log-file", t.TempDir() + "/second.jsonl", "--metrics-addr", "off"}, secondArgs...)
	second.cmd = n.Server.Command(t.Context(), agentBin, args...)
	second.cmd.Stdout, second.cmd.Stderr = second.stderr, second.stderr
	if err := second.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		second.waitErr = second.cmd.Wait()
		close(second.exited)
	}()
	t.Cleanup(func() { second.kill(t) })
	select {
	case <-second.exited:
		if second.cmd.ProcessState.ExitCode() == 0 {
			t.Errorf("second agent exited 0, want a failure")
		}
		t.Logf("second agent (exit %d):\n%s", second.cmd.ProcessState.ExitCode(), second.stderr.String())
	case <-second.stderr.ready:
		t.Errorf("a second agent with the same queues reported ready:\n%s", second.stderr.String())
	case <-time.After(readyTimeout):
		t.Fatalf("second agent neither failed nor got ready:\n%s", second.stderr.String())
	}

	if !first.alive() {
		t.Fatalf("the first agent died: %v", first.waitErr)
	}
	if got := len(fwagentTable.FindAllString(nft(t, n.Server, "list", "tables"), -1)); got != 1 {
		t.Errorf("%d fwagent tables after the second agent, want the first's", got)
	}
	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		tcpEcho(t, n.Client, netip.AddrPortFrom(dst, 8080))
		if c, err := dialTCP(n.Client, netip.AddrPortFrom(dst, 8081), 0, dropWait); err == nil {
			c.Close()
			t.Errorf("%s:8081 reachable after a second agent failed, want the first still filtering", dst)
		}
	}
}

// TestOverlappingRestart is a restart where the new agent starts before the
// old one has finished shutting down (a service manager starting the new
// unit while the old one still handles SIGTERM, each with its own queues):
// the old agent's shutdown must not remove the table the new agent now runs
// on, or the host is left unfiltered while the new agent thinks it filters.
func TestOverlappingRestart(t *testing.T) {
	requireKernelTools(t)
	t.Parallel()
	n := testnet.New(t)
	serveTCP(t, n.Server, 8080)
	serveTCP(t, n.Server, 8081)
	policy := writePolicy(t, lifecyclePolicy)
	old := startAgent(t, n.Server, policy)
	next := startAgent(t, n.Server, policy, "--queue-base", "5", "--log-group", "101", "--metrics-addr", "off")

	if code := old.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("old agent exit %d after SIGTERM", code)
	}
	if !next.alive() {
		t.Fatalf("the new agent died: %v", next.waitErr)
	}
	tables := nft(t, n.Server, "list", "tables")
	if got := len(fwagentTable.FindAllString(tables, -1)); got != 1 {
		t.Fatalf("%d fwagent tables after the old agent's shutdown, want the new agent's:\n%s", got, tables)
	}
	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		tcpEcho(t, n.Client, netip.AddrPortFrom(dst, 8080))
		if c, err := dialTCP(n.Client, netip.AddrPortFrom(dst, 8081), 0, dropWait); err == nil {
			c.Close()
			t.Errorf("%s:8081 reachable after the old agent's shutdown, want the new agent still filtering", dst)
		}
	}
}
