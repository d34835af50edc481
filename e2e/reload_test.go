package e2e

import (
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/eventually"
)

// TestReload swaps the policy with SIGHUP: new connections follow the new
// policy, and a flow accepted (and offloaded) under the old one is decided
// again, so the new policy's drop applies to it too.
func TestReload(t *testing.T) {
	n := agentNet(t, 8080, 8081)
	policy := writePolicy(t, webPolicy)
	a := startAgent(t, n.Server, policy)
	dst := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(n.Server.Addr4(), port) }

	tcpEcho(t, n.Client, dst(8080))
	if connects(n.Client, dst(8081), 0) {
		t.Fatal("8081 reachable under policy A")
	}
	// A long-lived flow accepted under policy A, past its first packets.
	old, err := dialTCP(n.Client, dst(8080), 0, answerWait)
	if err != nil {
		t.Fatalf("8080 under policy A: %v", err)
	}
	defer old.Close()
	for i := 0; i < 3; i++ {
		echoOnce(t, old, "before reload")
	}

	if err := os.WriteFile(policy, []byte(strings.ReplaceAll(webPolicy, "8080", "8081")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload is asynchronous: poll (bounded) until the new policy lets
	// 8081 through.
	var dialErr error
	if !eventually.True(10*time.Second, 0, func() bool {
		var c net.Conn
		if c, dialErr = dialTCP(n.Client, dst(8081), 0, dropWait); dialErr == nil {
			c.Close()
		}
		return dialErr == nil
	}) {
		t.Fatalf("8081 still unreachable 10s after SIGHUP: %v", dialErr)
	}
	if !a.alive() {
		t.Fatalf("agent exited on SIGHUP: %v", a.waitErr)
	}
	tcpEcho(t, n.Client, dst(8081))
	if connects(n.Client, dst(8080), 0) {
		t.Error("new connection to 8080 accepted after the reload dropped it")
	}
	// The old flow's next segment must now be dropped: the write is
	// buffered, and the echo never comes back.
	_ = old.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := old.Write([]byte("after reload")); err != nil {
		t.Fatalf("write on the old flow: %v", err)
	}
	buf := make([]byte, len("after reload"))
	switch _, err := io.ReadFull(old, buf); {
	case err == nil:
		t.Error("the flow accepted under the old policy still passes after the reload dropped its port")
	case !isTimeout(err):
		t.Errorf("old flow after reload: %v, want its packets silently dropped (timeout)", err)
	}
}

func echoOnce(t *testing.T, c interface {
	io.ReadWriter
	SetDeadline(time.Time) error
}, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(answerWait))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo %q, %v; want %q", buf, err, msg)
	}
}

// TestReloadInvalid sends SIGHUP after replacing the policy with a broken
// one: the agent must keep running with the policy it has.
func TestReloadInvalid(t *testing.T) {
	n := agentNet(t, 8080, 8081)
	policy := writePolicy(t, webPolicy)
	a := startAgent(t, n.Server, policy)
	dst := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(n.Server.Addr4(), port) }

	broken := strings.ReplaceAll(webPolicy, "action: accept", "action: acept")
	broken = strings.ReplaceAll(broken, "8080", "8081")
	if err := os.WriteFile(policy, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// Wait (bounded) for the agent to report the failed reload, naming the
	// file; any line will do, as long as it mentions the policy path.
	if !eventually.True(10*time.Second, 50*time.Millisecond, func() bool { return strings.Contains(a.stderrAfterReady(), policy) }) {
		t.Fatalf("no log line about the broken policy %s 10s after SIGHUP", policy)
	}
	if !a.alive() {
		t.Fatalf("agent exited on a broken reload: %v", a.waitErr)
	}
	t.Logf("agent after the broken reload:\n%s", a.stderrAfterReady())
	tcpEcho(t, n.Client, dst(8080))
	if connects(n.Client, dst(8081), 0) {
		t.Error("8081 reachable after a broken reload, want the old policy kept")
	}
}
