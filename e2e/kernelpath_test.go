package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// The kernel fast path end to end (--kernel-rules auto): what nftables can
// express is decided without the queue.

// queuedTotal is how many packets the kernel has sent to the namespace's
// queues since they were bound.
func queuedTotal(t *testing.T, ns *testnet.NS) uint64 {
	t.Helper()
	var n uint64
	for _, q := range kernelQueues(t, ns) {
		n += q.IDSequence
	}
	return n
}

const pingBurstPolicy = `version: 1
default: {input: drop}
rules:
  - {name: established, match: {state: [established, related]}, action: accept}
  - {name: ping, match: {icmp_type: echo-request}, action: accept}
`

var pingReceived = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// TestKernelPathPingBurst: 20 echo requests of a new ping sent back to back
// (ping -l 20) are all answered, in each of 5 runs. Queued, the requests of
// a flow the kernel has not confirmed yet clash in conntrack and all but the
// first are lost; decided in the kernel, none is queued.
func TestKernelPathPingBurst(t *testing.T) {
	n := agentNet(t)
	testnet.RequireCommands(t, "ping")
	startAgent(t, n.Server, writePolicy(t, pingBurstPolicy), "--kernel-rules", "auto")
	before := queuedTotal(t, n.Server)
	for run := range 5 {
		// Each run is a new ping process: a new ICMP identifier, a new flow.
		out, _ := n.Client.Command(context.Background(), "ping", "-n", "-q", "-l", "20", "-c", "20", "-W", "2", n.Server.Addr4().String()).CombinedOutput()
		m := pingReceived.FindSubmatch(out)
		if m == nil || string(m[1]) != "20" || string(m[2]) != "20" {
			t.Errorf("run %d: want 20 of 20 answered:\n%s", run+1, out)
		}
	}
	if q := queuedTotal(t, n.Server) - before; q != 0 {
		t.Errorf("the kernel queued %d packets; every echo request should be decided in the kernel", q)
	}
}

const mixedPolicy = `version: 1
default: {input: drop}
sets:
  ads: ["*.ads.example"]
rules:
  - {name: no-ads-tls, match: {proto: tcp, dport: 443, tls_sni: $ads}, action: reject}
  - {name: tls, match: {proto: tcp, dport: 443}, action: accept}
  - {name: established, match: {state: [established, related]}, action: accept}
  - {name: udp, match: {proto: udp, dport: 9000}, action: accept}
`

// TestKernelPathMixed: with one tls_sni rule in an L3/L4 policy, a UDP
// flood to a port the L7 rule does not cover queues nothing, while TLS on
// the L7 rule's port is still decided by the agent: allowed names connect,
// denied names get a reset.
func TestKernelPathMixed(t *testing.T) {
	n := agentNet(t)
	got := serveUDP(t, n.Server, 9000)
	serveTCP(t, n.Server, 443)
	startAgent(t, n.Server, writePolicy(t, mixedPolicy), "--kernel-rules", "auto")
	dst4 := n.Server.Addr4()

	before := queuedTotal(t, n.Server)
	const flood = 2000
	if err := n.Client.Do(func() error {
		c, err := net.Dial("udp", netip.AddrPortFrom(dst4, 9000).String())
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range flood {
			if _, err := c.Write([]byte(fmt.Sprint("flood ", i))); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("flood: %v", err)
	}
	received := 0
	deadline := time.After(5 * time.Second)
wait:
	for received < flood {
		select {
		case <-got:
			received++
		case <-deadline:
			break wait
		}
	}
	if received == 0 {
		t.Fatalf("none of the %d datagrams arrived", flood)
	}
	if q := queuedTotal(t, n.Server) - before; q != 0 {
		t.Errorf("the UDP flood queued %d packets, want none (only port 443 needs userspace)", q)
	}

	for _, tc := range []struct {
		sni     string
		blocked bool
	}{{"www.example.org", false}, {"cdn.ads.example", true}} {
		helloExchange(t, n.Client, netip.AddrPortFrom(dst4, 443), randomPort(), tc.sni, tc.blocked, reset)
	}
	if q := queuedTotal(t, n.Server) - before; q == 0 {
		t.Errorf("nothing queued: the TLS connections must be decided by the agent")
	}
}

func isReset(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("connection reset"))
}
