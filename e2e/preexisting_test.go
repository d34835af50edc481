package e2e

import (
	"net"
	"net/netip"
	"testing"
)

const statefulPolicy = `version: 1
default:
  input: drop
  log: true
` + statefulWebRules

// TestPreexistingFlows starts the agent while connections are open: with an
// `established` rule they keep working (the kernel's conntrack vouches for
// them), while new connections to the same port follow the policy.
func TestPreexistingFlows(t *testing.T) {
	n := agentNet(t, 8081)
	// Conntrack only tracks flows in a namespace once a table uses it; load
	// it before the flows start, as any host firewall would have.
	nft(t, n.Server, "-f", writePolicy(t, `table inet ctwarm {
	chain c {
		type filter hook input priority 10; policy accept;
		ct state established counter accept
	}
}
`))
	var old []net.Conn
	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		c, err := dialTCP(n.Client, netip.AddrPortFrom(dst, 8081), 0, answerWait)
		if err != nil {
			t.Fatalf("connect before the agent: %v", err)
		}
		defer c.Close()
		old = append(old, c)
		echoOnce(t, c, "before the agent")
	}

	startAgent(t, n.Server, writePolicy(t, statefulPolicy))

	for i, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		if connects(n.Client, netip.AddrPortFrom(dst, 8081), 0) {
			t.Errorf("new connection to %s:8081 accepted, want the default drop", dst)
		}
		for j := 0; j < 3; j++ {
			echoOnce(t, old[i], "after the agent started")
		}
	}
}
