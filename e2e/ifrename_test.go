package e2e

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/eventually"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// TestInterfaceRename renames the server's interface under a running agent:
// iif rules decided in userspace must follow the new name at once, as the
// kernel's own iifname does, instead of matching the name the interface had
// when the agent first saw it.
func TestInterfaceRename(t *testing.T) {
	requireAgent(t)
	n := testnet.New(t)
	oldName := n.Server.Ifaces()[0].Name
	const newName = "fwrenamed0"
	policy := writePolicy(t, fmt.Sprintf(`version: 1
default: {input: drop, output: accept}
rules:
  - name: via-old
    match: {proto: udp, dport: 9001, iif: %s}
    action: accept
    offload: false
  - name: via-new
    match: {proto: udp, dport: 9002, iif: %s}
    action: accept
    offload: false
`, oldName, newName))
	serveUDP(t, n.Server, 9001)
	serveUDP(t, n.Server, 9002)
	startAgent(t, n.Server, policy)

	server := n.Server.Addr4()
	reaches := func(port uint16) bool {
		t.Helper()
		_, err := udpExchange(n.Client, netip.AddrPortFrom(server, port), []byte("hello"), 500*time.Millisecond)
		return err == nil
	}
	if !reaches(9001) || reaches(9002) {
		t.Fatalf("before the rename: want 9001 (iif %s) open and 9002 (iif %s) closed", oldName, newName)
	}

	h := n.Server.Netlink()
	link, err := h.LinkByName(oldName)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetName(link, newName); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}

	// Each exchange is a new flow (a new source port), so no cached flow
	// decision hides a stale name.
	if !eventually.True(10*time.Second, 0, func() bool { return reaches(9002) }) {
		t.Fatalf("after renaming %s to %s, port 9002 (iif %s) stayed closed", oldName, newName, newName)
	}
	if reaches(9001) {
		t.Fatalf("after renaming %s to %s, port 9001 (iif %s) is still open", oldName, newName, oldName)
	}
}
