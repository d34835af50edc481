package e2e

import (
	"errors"
	"net/netip"
	"testing"
)

// TestRepliesToOwnConnections runs the agent on the input hook only with the
// usual stateful policy and checks what comes back for the host's own
// outgoing traffic, which the agent never saw leave: replies (established)
// and ICMP errors about it (related) must be let in. Dropping the related
// errors also drops "fragmentation needed" and "packet too big", which
// black-holes path MTU discovery for the host's own connections.
func TestRepliesToOwnConnections(t *testing.T) {
	n := agentNet(t)
	serveTCP(t, n.Client, 8443)
	serveUDP(t, n.Client, 5300)
	startAgent(t, n.Server, writePolicy(t, statefulPolicy))

	for _, dst := range []netip.Addr{n.Client.Addr4(), n.Client.Addr6()} {
		t.Run(dst.String(), func(t *testing.T) {
			// The server (the agent's host) connects out.
			tcpEcho(t, n.Server, netip.AddrPortFrom(dst, 8443))
			if got, err := udpExchange(n.Server, netip.AddrPortFrom(dst, 5300), []byte("query"), answerWait); err != nil || string(got) != "query" {
				t.Errorf("udp reply from %s: %q, %v; want the echo", dst, got, err)
			}
			// No listener on 5301: the client answers with ICMP port
			// unreachable, related to the server's own flow.
			if _, err := udpExchange(n.Server, netip.AddrPortFrom(dst, 5301), []byte("query"), answerWait); !errors.Is(err, errRefused) {
				t.Errorf("udp to a closed port of %s: %v; want ECONNREFUSED (the related ICMP error let in)", dst, err)
			}
			// Nothing listens on 8444: the client's reset is a reply too.
			if _, err := dialTCP(n.Server, netip.AddrPortFrom(dst, 8444), 0, answerWait); !errors.Is(err, errRefused) {
				t.Errorf("tcp to a closed port of %s: %v; want ECONNREFUSED (the reset let in)", dst, err)
			}
		})
	}
}
