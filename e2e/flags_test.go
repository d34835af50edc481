package e2e

import (
	"fmt"
	"net/netip"
	"regexp"
	"testing"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// The replies of a loopback connection pass the input hook too, and only
// the established rule lets them in: a rule decides its own hook and
// direction, as the kernel's would.
const flagsPolicy = `version: 1
default:
  input: drop
  log: true
rules:
  - name: established
    match: {state: established}
    action: accept
  - name: web
    match: {proto: tcp, dport: 8080}
    action: accept
  - name: telnet
    match: {proto: tcp, dport: 23}
    action: drop
    log: true
`

// TestRunFlags checks the run flags that shape the table and the host
// essentials.
func TestRunFlags(t *testing.T) {
	requireKernelTools(t)
	t.Parallel()

	t.Run("priority and log group", func(t *testing.T) {
		n := testnet.New(t)
		serveTCP(t, n.Server, 23)
		a := startAgent(t, n.Server, writePolicy(t, flagsPolicy), "--priority", "-5", "--log-group", "55")
		table := nft(t, n.Server, "list", "table", "inet", "fwagent")
		if !regexp.MustCompile(`hook input priority (filter - 5|-5);`).MatchString(table) {
			t.Errorf("input chain not at priority -5:\n%s", table)
		}
		if !regexp.MustCompile(`log prefix "fwagent:drop" group 55 drop`).MatchString(table) {
			t.Errorf("no log to group 55:\n%s", table)
		}
		sport := randomPort()
		if connects(n.Client, netip.AddrPortFrom(n.Server.Addr4(), 23), sport) {
			t.Fatal("port 23 reachable, want it dropped")
		}
		if evs := a.waitEvents(t, 1, func(e event) bool { return e.str("sport") == fmt.Sprint(sport) }); len(evs) == 0 {
			t.Errorf("no event through log group 55; all events: %v", a.events(t))
		}
	})

	t.Run("accept-loopback=false", func(t *testing.T) {
		n := testnet.New(t)
		serveTCP(t, n.Server, 23)
		serveTCP(t, n.Server, 8080)
		startAgent(t, n.Server, writePolicy(t, flagsPolicy), "--accept-loopback=false")
		// Loopback now goes through the policy like any other traffic.
		tcpEcho(t, n.Server, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 8080))
		if connects(n.Server, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 23), 0) {
			t.Error("loopback port 23 reachable with --accept-loopback=false, want the policy to drop it")
		}
	})

	t.Run("accept-icmpv6-nd=false", func(t *testing.T) {
		n := testnet.New(t)
		serveTCP(t, n.Server, 8080)
		startAgent(t, n.Server, writePolicy(t, flagsPolicy), "--accept-icmpv6-nd=false")
		// The policy drops all ICMPv6, neighbour discovery included: the
		// client never learns the server's link address. IPv4 is unaffected.
		tcpEcho(t, n.Client, netip.AddrPortFrom(n.Server.Addr4(), 8080))
		if c, err := dialTCP(n.Client, netip.AddrPortFrom(n.Server.Addr6(), 8080), 0, 2*dropWait); err == nil {
			c.Close()
			t.Error("IPv6 works with ND left to a policy that drops it")
		}
	})
}

// TestLogRate checks --log-rate/--log-burst: past the burst, events are
// counted but not written, and the packets are dropped all the same.
func TestLogRate(t *testing.T) {
	n := agentNet(t)
	got := serveUDP(t, n.Server, 7777)
	// One event in 1000 s after a burst of 3: within the test, exactly 3.
	a := startAgent(t, n.Server, writePolicy(t, flagsPolicy), "--log-rate", "0.001", "--log-burst", "3")
	const sent, burst = 10, 3
	for i := 0; i < sent; i++ {
		if _, err := udpExchange(n.Client, netip.AddrPortFrom(n.Server.Addr4(), 7777), []byte{byte(i)}, dropWait/4); err == nil {
			t.Errorf("datagram %d answered, want it dropped", i)
		}
	}
	select {
	case b := <-got:
		t.Errorf("a dropped datagram reached the server: %q", b)
	default:
	}
	isOurs := func(e event) bool { return e.str("dport") == "7777" }
	evs := a.waitEvents(t, burst, isOurs)
	// Give late events, which the cap should have stopped, the same chance
	// to show up as the ones before.
	if more := a.waitEvents(t, burst+1, isOurs); len(more) != burst || len(evs) != burst {
		t.Errorf("%d events for %d drops, want exactly the burst of %d: %v", len(more), sent, burst, more)
	}
}
