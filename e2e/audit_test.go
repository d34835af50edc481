package e2e

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/fwagent/fwagent/internal/testnet"
)

const auditPolicy = `version: 1
mode: audit
default:
  input: drop
  log: true
rules:
  - name: web
    match: {proto: tcp, dport: 8080}
    action: accept
`

// In audit mode the policy decides and logs as usual but nothing is dropped.
func TestAuditMode(t *testing.T) {
	requireKernelTools(t)
	t.Parallel()
	n := testnet.New(t)
	serveTCP(t, n.Server, 9090)
	a := startAgent(t, n.Server, writePolicy(t, auditPolicy))

	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		sport := randomPort()
		c, err := dialTCP(n.Client, netip.AddrPortFrom(dst, 9090), sport, answerWait)
		if err != nil {
			t.Errorf("audit mode: connect to %s:9090 (default drop) failed: %v; want it let through", dst, err)
			continue
		}
		c.Close()
		tcpEcho(t, n.Client, netip.AddrPortFrom(dst, 9090))

		evs := a.waitEvents(t, 1, func(e event) bool {
			return e.str("dport") == "9090" && e.str("sport") == fmt.Sprint(sport)
		})
		if len(evs) == 0 {
			t.Errorf("no would_drop event for %s:9090 from port %d; all events: %v", dst, sport, a.events(t))
			continue
		}
		// The first packet of the connection is the SYN the default would
		// have dropped.
		checkEvent(t, evs[0], map[string]string{
			"event": "would_drop", "verdict": "accept", "rule": "default", "hook": "input", "dst": dst.String(),
		})
		for _, e := range evs {
			if e.str("verdict") != "accept" {
				t.Errorf("audit mode event with verdict %q: %v", e.str("verdict"), e)
			}
		}
	}
}
