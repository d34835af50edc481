package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// enforcePolicy is the input policy of TestEnforce; clients is the set of the
// client's primary addresses, so its secondary ("outsider") addresses are
// not in it.
func enforcePolicy(n *testnet.Net) string {
	return fmt.Sprintf(`version: 1
mode: enforce
default:
  input: drop
  forward: drop
  output: accept
  log: true
sets:
  clients: [%s, %s]
rules:
  - name: ssh
    hook: input
    match: {proto: tcp, src: $clients, dport: 22}
    action: accept
  - name: web
    match: {proto: tcp, dport: 8080}
    action: accept
  - name: mdns
    match: {proto: udp, dport: 5353}
    action: accept
  - name: telnet
    match: {proto: tcp, dport: 23}
    action: drop
    log: true
  - name: reject-tcp
    match: {proto: tcp, dport: 24}
    action: reject
  - name: reject-udp
    match: {proto: udp, dport: 5454}
    action: reject
    log: true
  - name: ping4
    match: {proto: icmp, icmp_type: echo-request}
    action: accept
`, n.Client.Addr4(), n.Client.Addr6())
}

// family is one address family's view of a testnet.Net.
type family struct {
	name     string // as in the event's family field
	client   netip.Addr
	outsider netip.Addr // a second client address, not in $clients
	server   netip.Addr
	proto    string // ICMP protocol name
	protoNum int
}

// addOutsiders gives the client a second address per family, outside the
// policy's client set.
func addOutsiders(t *testing.T, n *testnet.Net) (v4, v6 netip.Addr) {
	t.Helper()
	b4 := n.Client.Addr4().As4()
	b4[3] = 99
	v4 = netip.AddrFrom4(b4)
	b6 := n.Client.Addr6().As16()
	b6[15] = 0x99
	v6 = netip.AddrFrom16(b6)
	h := n.Client.Netlink()
	l, err := h.LinkByName(n.Client.Ifaces()[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{v4, v6} {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}
		if a.Is6() {
			// Deprecated (preferred lifetime 0, valid forever), so the
			// kernel never picks it as a source on its own: only sockets
			// bound to it use it.
			addr.Flags = unix.IFA_F_NODAD
			addr.ValidLft = 0xffffffff
			addr.PreferedLft = 0
		}
		if err := h.AddrAdd(l, addr); err != nil {
			t.Fatalf("add outsider address %s: %v", a, err)
		}
	}
	return v4, v6
}

func TestEnforce(t *testing.T) {
	n := agentNet(t)
	out4, out6 := addOutsiders(t, n)
	for _, p := range []int{22, 23, 24, 8080} {
		serveTCP(t, n.Server, p)
	}
	mdns := serveUDP(t, n.Server, 5353)
	rejected := serveUDP(t, n.Server, 5454)
	a := startAgent(t, n.Server, writePolicy(t, enforcePolicy(n)))
	serverIf := n.Server.Ifaces()[0].Name

	// Events that must appear exactly once, rechecked at the end when any
	// late duplicate would have arrived.
	var exactlyOnce []func(event) bool

	fams := []family{
		{"ipv4", n.Client.Addr4(), out4, n.Server.Addr4(), "icmp", 1},
		{"ipv6", n.Client.Addr6(), out6, n.Server.Addr6(), "icmpv6", 58},
	}
	for _, f := range fams {
		t.Run(f.name, func(t *testing.T) {
			t.Run("tcp accepted", func(t *testing.T) {
				for _, port := range []uint16{22, 8080} {
					tcpEcho(t, n.Client, netip.AddrPortFrom(f.server, port))
				}
			})

			t.Run("tcp 23 dropped and logged", func(t *testing.T) {
				sport := randomPort()
				c, err := dialTCP(n.Client, netip.AddrPortFrom(f.server, 23), sport, dropWait)
				if err == nil {
					c.Close()
					t.Fatal("connection to port 23 succeeded, want it dropped")
				}
				if !isTimeout(err) {
					t.Fatalf("connect to port 23: %v, want a timeout (silent drop)", err)
				}
				evs := a.waitEvents(t, 1, func(e event) bool {
					return e.str("dport") == "23" && e.str("sport") == fmt.Sprint(sport)
				})
				if len(evs) == 0 {
					t.Fatalf("no event for the dropped SYN to port 23 from port %d; all events: %v", sport, a.events(t))
				}
				for _, e := range evs {
					checkEvent(t, e, map[string]string{
						"rule": "telnet", "verdict": "drop", "event": "drop", "hook": "input",
						"family": f.name, "src": f.client.String(), "dst": f.server.String(), "in": serverIf,
					})
					if !e.isProto("tcp", 6) {
						t.Errorf("event proto %q, want tcp: %v", e.str("proto"), e)
					}
					if !strings.Contains(e.str("tcp_flags"), "S") {
						t.Errorf("event tcp_flags %q, want the SYN flag: %v", e.str("tcp_flags"), e)
					}
					// The event contract; "out" is empty on the input hook.
					for _, k := range []string{"time", "rule", "verdict", "event", "hook", "family", "proto", "src", "dst", "sport", "dport", "length", "in", "tcp_flags"} {
						if e.str(k) == "" {
							t.Errorf("event lacks %q: %v", k, e)
						}
					}
					if _, err := time.Parse(time.RFC3339Nano, e.str("time")); err != nil {
						t.Errorf("event time %q is not RFC 3339: %v", e.str("time"), err)
					}
					if e.str("length") == "0" {
						t.Errorf("event length 0: %v", e)
					}
				}
			})

			t.Run("tcp 22 from outside the set dropped by default", func(t *testing.T) {
				var c net.Conn
				sport := randomPort()
				err := n.Client.Do(func() (err error) {
					d := net.Dialer{Timeout: dropWait, LocalAddr: &net.TCPAddr{IP: f.outsider.AsSlice(), Port: sport}}
					c, err = d.Dial("tcp", netip.AddrPortFrom(f.server, 22).String())
					return err
				})
				if err == nil {
					c.Close()
					t.Fatalf("ssh from %s (not in $clients) succeeded, want it dropped", f.outsider)
				}
				if !isTimeout(err) {
					t.Fatalf("ssh from %s: %v, want a timeout", f.outsider, err)
				}
				evs := a.waitEvents(t, 1, func(e event) bool {
					return e.str("src") == f.outsider.String() && e.str("sport") == fmt.Sprint(sport)
				})
				if len(evs) == 0 {
					t.Fatalf("no default-drop event for %s:%d; all events: %v", f.outsider, sport, a.events(t))
				}
				for _, e := range evs {
					checkEvent(t, e, map[string]string{"rule": "default", "verdict": "drop", "dport": "22", "hook": "input"})
				}
			})

			t.Run("tcp 24 rejected with reset", func(t *testing.T) {
				c, err := dialTCP(n.Client, netip.AddrPortFrom(f.server, 24), 0, answerWait)
				if err == nil {
					c.Close()
					t.Fatal("connection to port 24 succeeded, want it rejected")
				}
				if !errors.Is(err, errRefused) {
					t.Fatalf("connect to port 24: %v, want ECONNREFUSED (a TCP reset)", err)
				}
			})

			t.Run("udp 5454 rejected with port unreachable and logged", func(t *testing.T) {
				// One datagram, no retransmission: exactly one event.
				payload := []byte(fmt.Sprintf("knock %d", rand.Int()))
				got, err := udpExchange(n.Client, netip.AddrPortFrom(f.server, 5454), payload, answerWait)
				if !errors.Is(err, errRefused) {
					t.Fatalf("udp to 5454: read %q, %v; want ECONNREFUSED (ICMP port unreachable)", got, err)
				}
				select {
				case b := <-rejected:
					t.Errorf("the rejected datagram %q reached the server", b)
				default:
				}
				isKnock := func(e event) bool {
					return e.isProto("udp", 17) && e.str("dport") == "5454" && e.str("src") == f.client.String() &&
						e.str("length") == fmt.Sprint(len(payload)+8+ipHeader(f.server))
				}
				exactlyOnce = append(exactlyOnce, isKnock)
				evs := a.waitEvents(t, 1, isKnock)
				if len(evs) != 1 {
					t.Fatalf("%d events for one rejected datagram, want exactly 1; all events: %v", len(evs), a.events(t))
				}
				checkEvent(t, evs[0], map[string]string{
					"rule": "reject-udp", "verdict": "reject", "event": "reject", "hook": "input", "family": f.name,
				})
			})

			t.Run("udp 5353 odd lengths accepted", func(t *testing.T) {
				// Odd lengths once crashed the netlink library under the
				// queue reader; every one of them must arrive and be echoed.
				// 1473 and 3001 do not fit the 1500-byte MTU: they arrive as
				// IP fragments, reassembled before the agent's hook.
				for _, size := range []int{1, 3, 5, 7, 8, 1000, 1473, 3001} {
					payload := bytes.Repeat([]byte{byte('a' + size%26)}, size)
					payload[0] = byte(rand.IntN(256))
					got, err := udpExchange(n.Client, netip.AddrPortFrom(f.server, 5353), payload, answerWait)
					if err != nil {
						t.Errorf("udp %d bytes to 5353: %v", size, err)
						continue
					}
					if !bytes.Equal(got, payload) {
						t.Errorf("udp %d bytes to 5353: echo of %d bytes differs", size, len(got))
					}
					select {
					case b := <-mdns:
						if !bytes.Equal(b, payload) {
							t.Errorf("server received %d bytes, want the %d sent", len(b), size)
						}
					default:
						t.Errorf("echo came back but the server recorded no %d-byte datagram", size)
					}
				}
				if !a.alive() {
					t.Fatalf("agent died after odd-length datagrams: %v", a.waitErr)
				}
				tcpEcho(t, n.Client, netip.AddrPortFrom(f.server, 8080))
			})
		})
	}

	t.Run("ping", func(t *testing.T) {
		id := rand.IntN(0xffff)
		const count, size = 3, 56
		for seq := 1; seq <= count; seq++ {
			ok, err := ping(n.Client, n.Server.Addr4(), id, seq, size, answerWait)
			if err != nil || !ok {
				t.Errorf("ipv4 ping seq %d: replied=%v err=%v, want a reply", seq, ok, err)
			}
		}
		for seq := 1; seq <= count; seq++ {
			ok, err := ping(n.Client, n.Server.Addr6(), id, seq, size, dropWait)
			if err != nil || ok {
				t.Errorf("ipv6 ping seq %d: replied=%v err=%v, want no reply", seq, ok, err)
			}
		}
		isPing6 := func(e event) bool {
			return e.isProto("icmpv6", 58) && e.str("src") == n.Client.Addr6().String() &&
				e.str("dst") == n.Server.Addr6().String() && e.str("length") == fmt.Sprint(40+8+size)
		}
		evs := a.waitEvents(t, count, isPing6)
		if len(evs) != count {
			t.Errorf("%d events for the %d dropped ipv6 echo requests, want exactly %d; all events: %v", len(evs), count, count, a.events(t))
		}
		for _, e := range evs {
			checkEvent(t, e, map[string]string{"rule": "default", "verdict": "drop", "event": "drop", "family": "ipv6", "hook": "input"})
		}
	})

	// --accept-loopback is on by default: the host's own loopback traffic
	// is accepted in the kernel, even to a port the policy drops.
	t.Run("loopback accepted", func(t *testing.T) {
		for _, lo := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
			tcpEcho(t, n.Server, netip.AddrPortFrom(lo, 23))
		}
	})

	// Accepted traffic is never logged: these counts are exact.
	t.Run("accepted traffic not logged", func(t *testing.T) {
		for _, e := range a.events(t) {
			src := e.str("src")
			fromClient := src == n.Client.Addr4().String() || src == n.Client.Addr6().String()
			switch {
			case fromClient && e.isProto("tcp", 6) && (e.str("dport") == "22" || e.str("dport") == "8080"):
				t.Errorf("accepted tcp logged: %v", e)
			case e.isProto("udp", 17) && e.str("dport") == "5353":
				t.Errorf("accepted udp logged: %v", e)
			case e.isProto("icmp", 1):
				t.Errorf("accepted ipv4 ping logged: %v", e)
			case e.str("in") == "lo" || strings.HasPrefix(src, "127.") || src == "::1":
				t.Errorf("loopback traffic logged: %v", e)
			}
		}
		if !a.alive() {
			t.Errorf("agent exited: %v", a.waitErr)
		}
	})

	t.Run("exact counts at the end", func(t *testing.T) {
		evs := a.events(t)
		for i, match := range exactlyOnce {
			got := 0
			for _, e := range evs {
				if match(e) {
					got++
				}
			}
			if got != 1 {
				t.Errorf("once-only event %d seen %d times; all events: %v", i, got, evs)
			}
		}
	})
}

// checkEvent asserts the event's fields have the wanted values.
func checkEvent(t *testing.T, e event, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := e.str(k); got != v {
			t.Errorf("event %s = %q, want %q: %v", k, got, v, e)
		}
	}
}
