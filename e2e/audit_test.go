package e2e

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

const auditPolicy = "version: 1\nmode: audit\n" + webPolicyBody + `  - name: refuse
    match: {proto: tcp, dport: 9091}
    action: reject
    log: true
`

const ruleAuditPolicy = `version: 1
default:
  input: accept
  log: true
rules:
  - name: trial
    match: {proto: tcp, dport: 9092}
    action: drop
    audit: true
  - name: enforced
    match: {proto: tcp, dport: 9093}
    action: drop
    log: true
`

// In audit mode the policy decides and logs as usual but nothing is dropped.
func TestAuditMode(t *testing.T) {
	n := agentNet(t, 9090, 9091)
	a := startAgent(t, n.Server, writePolicy(t, auditPolicy))

	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		for _, tc := range []struct {
			port      uint16
			rule, evt string
		}{
			{9090, "default", "would_drop"},
			{9091, "refuse", "would_reject"},
		} {
			expectAudited(t, a, n, netip.AddrPortFrom(dst, tc.port), tc.rule, tc.evt)
		}
	}
}

// TestRuleAudit checks `audit: true` on one rule of an enforcing policy: that
// rule only logs, the others still enforce.
func TestRuleAudit(t *testing.T) {
	n := agentNet(t, 9092, 9093)
	a := startAgent(t, n.Server, writePolicy(t, ruleAuditPolicy))
	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		expectAudited(t, a, n, netip.AddrPortFrom(dst, 9092), "trial", "would_drop")
		if connects(n.Client, netip.AddrPortFrom(dst, 9093), 0) {
			t.Errorf("%s:9093 reachable, want the enforced rule to drop it", dst)
		}
	}
}

// expectAudited connects to dst, which the policy would block, and checks
// the connection works and the first packet was logged as evt by rule.
func expectAudited(t *testing.T, a *agent, n *testnet.Net, dst netip.AddrPort, rule, evt string) {
	t.Helper()
	sport := randomPort()
	c, err := dialTCP(n.Client, dst, sport, answerWait)
	if err != nil {
		t.Errorf("audit: connect to %s failed: %v; want it let through", dst, err)
		return
	}
	c.Close()
	tcpEcho(t, n.Client, dst)

	evs := a.waitEvents(t, 1, func(e event) bool {
		return e.str("dport") == fmt.Sprint(dst.Port()) && e.str("sport") == fmt.Sprint(sport)
	})
	if len(evs) == 0 {
		t.Errorf("no %s event for %s from port %d; all events: %v", evt, dst, sport, a.events(t))
		return
	}
	// The first packet of the connection is the SYN the policy would have
	// blocked.
	checkEvent(t, evs[0], map[string]string{
		"event": evt, "verdict": "accept", "rule": rule, "hook": "input", "dst": dst.Addr().String(),
	})
	for _, e := range evs {
		if e.str("verdict") != "accept" {
			t.Errorf("audited event with verdict %q: %v", e.str("verdict"), e)
		}
	}
}
