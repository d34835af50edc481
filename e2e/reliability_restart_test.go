package e2e

import (
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// pickupPolicy admits new connections to 8080 only; everything else that
// gets through does so as an established flow. Nothing is offloaded, so
// every packet of the flows under test reaches the agent and is decided by
// it, and a restarted agent (empty flow table) must learn from the kernel's
// established bit that a mid-stream packet belongs to a live flow.
const pickupPolicy = `version: 1
default:
  input: drop
  log: true
rules:
  - name: established
    match: {state: established}
    action: accept
    offload: false
  - name: open-8080
    match: {proto: tcp, dport: 8080, tcp_flags: S/SA}
    action: accept
    offload: false
`

// hostCtTable stands for the host's own stateful firewall.
const hostCtTable = `table inet hostct {
	chain in {
		type filter hook input priority -10; policy accept;
		ct state established counter
	}
}
`

// TestRestartKeepsFlows: a TCP connection opened before the agent starts, and
// one opened through it, keep exchanging data while the agent runs, while it
// is dead after kill -9 (fail-open) or stalled (fail-closed), and after it
// restarts; the restarted agent leaves exactly one table, and new
// connections are still filtered.
func TestRestartKeepsFlows(t *testing.T) {
	requireKernelTools(t)
	t.Parallel()
	for _, tc := range []struct {
		name     string
		args     []string
		failOpen bool
	}{
		{"fail-open", nil, true},
		{"fail-closed", []string{"--fail-closed"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := testnet.New(t)
			serveTCP(t, n.Server, 8080)
			serveTCP(t, n.Server, 8081)
			policy := writePolicy(t, pickupPolicy)
			closed8081 := func(stage string) {
				t.Helper()
				dst := netip.AddrPortFrom(n.Server.Addr4(), 8081)
				if connects(n.Client, dst, 0) {
					t.Errorf("%s: new connection to %s accepted, want it dropped", stage, dst)
				}
			}

			// A host's own stateful rules track connections before the
			// agent exists. Without any conntrack user in the namespace
			// the kernel would see the early flows first when the agent's
			// table loads conntrack, as new mid-stream packets without the
			// established bit, and the policy would rightly drop them
			// (docs/reliability.md).
			nft(t, n.Server, "-f", writePolicy(t, hostCtTable))
			// Opened while no agent runs: only the kernel knows it.
			early := openEcho(t, n.Client, netip.AddrPortFrom(n.Server.Addr4(), 8081).String())
			early6 := openEcho(t, n.Client, netip.AddrPortFrom(n.Server.Addr6(), 8081).String())
			for _, c := range []*echoConn{early, early6} {
				if err := c.roundTrip(answerWait); err != nil {
					t.Fatalf("before the agent: %v", err)
				}
			}

			a := startAgent(t, n.Server, policy, tc.args...)
			through := openEcho(t, n.Client, netip.AddrPortFrom(n.Server.Addr4(), 8080).String())
			conns := map[string]*echoConn{"pre-agent v4": early, "pre-agent v6": early6, "through agent": through}
			// Several round trips, so the agent decides mid-stream packets
			// of the early flows, not only their first.
			for i := 0; i < 5; i++ {
				for name, c := range conns {
					if err := c.roundTrip(answerWait); err != nil {
						t.Fatalf("%s with the agent running: %v", name, err)
					}
				}
			}
			closed8081("agent running")

			a.stop(t, syscall.SIGKILL)
			pending := map[string][]byte{}
			for name, c := range conns {
				msg, err := c.send()
				if err != nil {
					t.Fatalf("%s: write while the agent is dead: %v", name, err)
				}
				wait := answerWait
				if !tc.failOpen {
					wait = dropWait
				}
				err = c.recv(msg, wait)
				switch {
				case tc.failOpen && err != nil:
					t.Errorf("%s: fail-open, agent dead: %v, want the echo", name, err)
				case !tc.failOpen && err == nil:
					t.Errorf("%s: fail-closed, agent dead: the echo came back, want it held", name)
				case !tc.failOpen && !isTimeout(err):
					t.Errorf("%s: fail-closed, agent dead: %v, want a timeout", name, err)
				case !tc.failOpen:
					pending[name] = msg
				}
			}

			startAgent(t, n.Server, policy, tc.args...)
			tables := nft(t, n.Server, "list", "tables")
			if got := len(fwagentTable.FindAllString(tables, -1)); got != 1 {
				t.Fatalf("%d fwagent tables after restart, want 1:\n%s", got, tables)
			}
			// Held data comes through on TCP's own retransmission once
			// the new agent accepts the flow; the bound covers a few
			// backed-off retransmits.
			for name, msg := range pending {
				if err := conns[name].recv(msg, 20*time.Second); err != nil {
					t.Errorf("%s: held data after restart: %v", name, err)
				}
			}
			for i := 0; i < 5; i++ {
				for name, c := range conns {
					if err := c.roundTrip(answerWait); err != nil {
						t.Fatalf("%s after restart: %v", name, err)
					}
				}
			}
			closed8081("after restart")
			tcpEcho(t, n.Client, netip.AddrPortFrom(n.Server.Addr6(), 8080))
		})
	}
}
