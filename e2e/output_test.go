package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
)

const outputPolicy = `version: 1
default:
  input: accept
  output: accept
  log: true
rules:
  - name: no-9999
    hook: output
    match: {proto: tcp, dport: 9999}
    action: drop
    log: true
  - name: refuse-out
    hook: output
    match: {proto: tcp, dport: 24}
    action: reject
`

// TestOutput runs the agent on the client with only the output hook: the
// host's own outgoing connections are filtered.
func TestOutput(t *testing.T) {
	n := agentNet(t, 8080, 9999, 24)
	a := startAgent(t, n.Client, writePolicy(t, outputPolicy), "--hooks", "output")
	clientIf := n.Client.Ifaces()[0].Name

	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		tcpEcho(t, n.Client, netip.AddrPortFrom(dst, 8080))
		if c, err := dialTCP(n.Client, netip.AddrPortFrom(dst, 24), 0, answerWait); err == nil {
			c.Close()
			t.Errorf("outgoing %s:24 connected, want it rejected", dst)
		} else if !errors.Is(err, errRefused) {
			t.Errorf("outgoing %s:24: %v, want ECONNREFUSED (a local reset)", dst, err)
		}

		sport := randomPort()
		// A locally generated packet dropped in the output hook may fail the
		// connect at once (EPERM) or just never leave (timeout); either way
		// it must not connect.
		if connects(n.Client, netip.AddrPortFrom(dst, 9999), sport) {
			t.Errorf("outgoing %s:9999 connected, want it dropped", dst)
		}
		evs := a.waitEvents(t, 1, func(e event) bool { return e.str("sport") == fmt.Sprint(sport) })
		if len(evs) == 0 {
			t.Errorf("no event for the dropped outgoing SYN from port %d; all events: %v", sport, a.events(t))
		}
		for _, e := range evs {
			checkEvent(t, e, map[string]string{
				"hook": "output", "rule": "no-9999", "verdict": "drop", "dport": "9999",
				"dst": dst.String(), "out": clientIf,
			})
		}
	}
}
