package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// statelessPolicy runs wholly in the kernel and never reads state, so its
// table has no conntrack (rules/stateless.go): only the malformed-packet
// guards queue, and the agent's answers to those packets come back through
// the base chain, whose verdicts rule must carry them out before the policy
// would queue them again.
const statelessPolicy = `version: 1
default:
  input: drop
  log: true
rules:
  - name: logged-udp
    match: {proto: udp, dport: 9000}
    action: accept
    log: true
`

// TestStatelessTableCarriesOutAnswers sends IPv6 packets with a
// destination options header, which a stateless table's guards queue, and
// checks that each answer is carried out once: the logged accept delivers
// the datagram and writes one accept event, the default's logged drop
// writes one drop event and delivers nothing, and the agent decides each
// packet once (an answer sent back into the policy would be queued again).
func TestStatelessTableCarriesOutAnswers(t *testing.T) {
	requireKernelTools(t)
	t.Parallel()
	n := testnet.New(t)
	got := serveUDP(t, n.Server, 9000)
	margs, sock := metricsArgs(t)
	a := startAgent(t, n.Server, writePolicy(t, statelessPolicy), append([]string{"--workers", "0", "--kernel-rules", "auto"}, margs...)...)
	if rs := nft(t, n.Server, "list", "table", "inet", "fwagent"); strings.Contains(rs, " ct ") {
		t.Fatalf("the policy's table tracks connections; the test needs a stateless one:\n%s", rs)
	}
	link := n.Client.OpenRawLink(t, "veth-c", n.Server, "veth-s")
	c6, s6 := n.Client.Addr6(), n.Server.Addr6()
	const destOpt = 60
	withOpts := func(sport, dport uint16, data string) []byte {
		return ip6{src: c6, dst: s6, next: destOpt}.build(slices.Concat(destOpts(17, 0), udpDgram(c6, s6, sport, dport, []byte(data))))
	}
	before := scrape(t, sock)
	if err := link.Send(etherIPv6, withOpts(4100, 9000, "logged")); err != nil {
		t.Fatal(err)
	}
	if err := link.Send(etherIPv6, withOpts(4101, 9001, "dropped")); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if string(b) != "logged" {
			t.Fatalf("port 9000 received %q, want the logged datagram", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the logged accept of a queued packet was not carried out: nothing reached port 9000")
	}
	accepts := a.waitEvents(t, 1, func(e event) bool { return e.str("rule") == "logged-udp" && e.str("dport") == "9000" })
	drops := a.waitEvents(t, 1, func(e event) bool { return e.str("dport") == "9001" })
	if len(accepts) != 1 || len(drops) != 1 {
		t.Fatalf("events: %d for the logged accept, %d for the default's drop, want one each: %v", len(accepts), len(drops), a.events(t))
	}
	if v := drops[0].str("verdict"); v != "drop" {
		t.Errorf("the default's event has verdict %q, want drop: %v", v, drops[0])
	}
	// An answer sent back into the policy would be queued and decided
	// again: waiting for a third event gives it time to show.
	if n := len(a.waitEvents(t, 3, func(e event) bool { return e.str("dport") == "9000" || e.str("dport") == "9001" })); n != 2 {
		t.Errorf("%d events for the two packets, want 2: %v", n, a.events(t))
	}
	select {
	case b := <-got:
		t.Errorf("port 9000 received a second datagram %q", b)
	default:
	}
	if after := scrape(t, sock); after != nil {
		if d := after.sum("fwagent_packets_total") - before.sum("fwagent_packets_total"); d != 2 {
			t.Errorf("the agent decided %v packets, want 2 (each queued packet once)", d)
		}
	}
	if !a.alive() {
		t.Fatalf("agent died: %v", a.waitErr)
	}
}
