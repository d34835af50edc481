package e2e

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// TestSecondInstance starts a second agent in a namespace where one already
// runs: the second must fail (on the namespace lock, before it touches the
// NFLOG group or the queues), and the first must keep its table and keep
// filtering.
func TestSecondInstance(t *testing.T) {
	requireKernelTools(t)
	t.Parallel()
	for _, args := range [][]string{
		nil,                    // the same NFLOG group and queues
		{"--log-group", "101"}, // its own NFLOG group: the lock still refuses it
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

	// Metrics off, so the second fails where the test expects it to: on the
	// NFLOG group or the queue, not on the first agent's metrics port.
	logFile := filepath.Join(t.TempDir(), "second.jsonl")
	args := append([]string{"run", "--policy", policy, "--log-file", logFile, "--metrics-addr", "off"}, secondArgs...)
	second := spawn(t, n.Server, logFile, n.Server.Command(t.Context(), agentBin, args...))
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
		if connects(n.Client, netip.AddrPortFrom(dst, 8081), 0) {
			t.Errorf("%s:8081 reachable after a second agent failed, want the first still filtering", dst)
		}
	}
}

// TestOverlappingRestart is a restart where the new agent starts before the
// old one has stopped (a service manager starting the new unit while the old
// one still runs, each with its own queues): with --replace the old agent
// gives way, exits non-zero and leaves its table for the new agent, whose
// install replaces it; the host stays filtered by exactly one table, the new
// agent's.
func TestOverlappingRestart(t *testing.T) {
	n := agentNet(t, 8080, 8081)
	policy := writePolicy(t, lifecyclePolicy)
	old := startAgent(t, n.Server, policy)
	next := startAgent(t, n.Server, policy, "--replace", "--queue-base", "5", "--log-group", "101", "--metrics-addr", "off")

	select {
	case <-old.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("the old agent still runs 15s after a --replace start")
	}
	if code := old.cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("replaced agent exit 0, want non-zero so a service manager notices")
	}
	if !next.alive() {
		t.Fatalf("the new agent died: %v", next.waitErr)
	}
	tables := nft(t, n.Server, "list", "tables")
	if got := len(fwagentTable.FindAllString(tables, -1)); got != 1 {
		t.Fatalf("%d fwagent tables after the old agent's exit, want the new agent's:\n%s", got, tables)
	}
	if table := nft(t, n.Server, "list", "table", "inet", "fwagent"); !strings.Contains(table, "101") {
		t.Errorf("the table is not the new agent's (log group 101):\n%s", table)
	}
	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		tcpEcho(t, n.Client, netip.AddrPortFrom(dst, 8080))
		if connects(n.Client, netip.AddrPortFrom(dst, 8081), 0) {
			t.Errorf("%s:8081 reachable after the old agent's exit, want the new agent filtering", dst)
		}
	}
}
