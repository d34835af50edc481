package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/eventually"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// hostilePolicy makes the agent parse DNS and TLS, and has a marker rule
// whose hit counter tells the test that everything sent before the marker
// has been decided (with --workers 0 one reader decides in queue order).
const hostilePolicy = `version: 1
default:
  input: drop
  log: true
on_error:
  input: %s
rules:
  - name: marker
    match: {proto: udp, dport: 9999}
    action: drop
  - name: no-blocked-dns
    match: {proto: udp, dport: 53, dns_qname: "*.blocked.example"}
    action: drop
    log: true
  - name: dns
    match: {proto: udp, dport: 53}
    action: accept
  - name: no-blocked-tls
    match: {proto: tcp, dport: 8443, tls_sni: blocked.example}
    action: drop
    log: true
  - name: tls
    match: {proto: tcp, dport: 8443}
    action: accept
  - name: big-udp
    match: {proto: udp, dport: 9000}
    action: accept
`

// hostileFrame is one malformed packet and what the agent must make of it.
type hostileFrame struct {
	name      string
	etherType uint16
	pkt       []byte
	// decodeErr: the packet reaches the agent's queue and cannot be
	// decoded, so it is counted as a decode error and gets on_error. The
	// others are either dropped by the kernel's own checks before any
	// hook (bad IP headers), held by its defragmenter (lone fragments), or
	// decode and meet the policy (ICMP errors quoting garbage).
	decodeErr bool
}

func hostileFrames(n *testnet.Net) []hostileFrame {
	c4, s4 := n.Client.Addr4(), n.Server.Addr4()
	c6, s6 := n.Client.Addr6(), n.Server.Addr6()
	v4 := func(proto uint8) ip4 { return ip4{src: c4, dst: s4, proto: proto} }
	v6 := func(next uint8) ip6 { return ip6{src: c6, dst: s6, next: next} }
	udp4 := udpDgram(c4, s4, 4000, 9000, []byte("hello"))
	udp6 := udpDgram(c6, s6, 4000, 9000, []byte("hello"))
	withIHL := func(h ip4, ihl int) ip4 { h.ihl = ihl; return h }
	withLen := func(h ip4, l int) ip4 { h.totalLen = l; return h }
	withFrag := func(h ip4, ff uint16) ip4 { h.flagsFrag = ff; return h }
	withPL := func(h ip6, l int) ip6 { h.payloadLen = l; return h }
	quote4 := slices.Concat([]byte{0x4f, 0, 0, 20}, garbage(4)) // IHL 15 in 8 bytes
	const destOpt, hopByHop, fragment = 60, 0, 44
	return []hostileFrame{
		{name: "ipv4 header cut at 12 bytes", etherType: etherIPv4, pkt: v4(17).build(nil)[:12]},
		{name: "ipv4 IHL 3", etherType: etherIPv4, pkt: withIHL(v4(17), 3).build(udp4)},
		{name: "ipv4 IHL past the packet", etherType: etherIPv4, pkt: withIHL(v4(17), 15).build(nil)},
		{name: "ipv4 total length past the frame", etherType: etherIPv4, pkt: withLen(v4(17), 1400).build(udp4)},
		{name: "ipv4 total length below the header", etherType: etherIPv4, pkt: withLen(v4(17), 12).build(udp4)},
		{name: "tcp data offset past the packet", etherType: etherIPv4, pkt: v4(6).build(tcpSeg(c4, s4, 4001, 8443, 0x18, 15, []byte("xy"))), decodeErr: true},
		{name: "tcp data offset below 5", etherType: etherIPv4, pkt: v4(6).build(tcpSeg(c4, s4, 4002, 8443, 0x18, 2, nil)), decodeErr: true},
		{name: "tcp header cut short", etherType: etherIPv4, pkt: v4(6).build(tcpSeg(c4, s4, 4003, 8443, 0x02, 5, nil)[:11]), decodeErr: true},
		{name: "ipv4 first fragment alone", etherType: etherIPv4, pkt: withFrag(v4(17), 0x2000).build(udpDgram(c4, s4, 4000, 9000, garbage(64))[:32])},
		{name: "ipv4 non-first fragment alone", etherType: etherIPv4, pkt: withFrag(v4(17), 100).build(garbage(48))},
		{name: "icmp error quoting garbage", etherType: etherIPv4, pkt: v4(1).build(icmpMsg(3, 3, garbage(28)))},
		{name: "icmp error quoting a header past its end", etherType: etherIPv4, pkt: v4(1).build(icmpMsg(3, 3, quote4))},
		{name: "icmp error quoting nothing", etherType: etherIPv4, pkt: v4(1).build(icmpMsg(11, 0, nil))},

		{name: "ipv6 header cut at 20 bytes", etherType: etherIPv6, pkt: v6(17).build(nil)[:20]},
		{name: "ipv6 payload length past the frame", etherType: etherIPv6, pkt: withPL(v6(17), 1200).build(udp6)},
		{name: "ipv6 extension chain that repeats (loop)", etherType: etherIPv6,
			pkt: v6(destOpt).build(slices.Concat(destOpts(destOpt, 0), destOpts(destOpt, 0), destOpts(destOpt, 0), destOpts(destOpt, 0), destOpts(17, 0), udp6)), decodeErr: true},
		{name: "ipv6 extension header past the end", etherType: etherIPv6, pkt: v6(destOpt).build(slices.Concat(destOpts(17, 200), garbage(16))), decodeErr: true},
		{name: "ipv6 hop-by-hop not first", etherType: etherIPv6, pkt: v6(destOpt).build(slices.Concat(destOpts(hopByHop, 0), destOpts(17, 0), udp6)), decodeErr: true},
		{name: "ipv6 hop-by-hop past the end", etherType: etherIPv6, pkt: v6(hopByHop).build(slices.Concat(destOpts(17, 100), garbage(8)))},
		{name: "ipv6 first fragment alone", etherType: etherIPv6, pkt: v6(fragment).build(slices.Concat(fragHdr(17, 0, true), udpDgram(c6, s6, 4000, 9000, garbage(64))[:32]))},
		{name: "ipv6 non-first fragment alone", etherType: etherIPv6, pkt: v6(fragment).build(slices.Concat(fragHdr(17, 100, false), garbage(48)))},
		{name: "tcp6 data offset past the packet", etherType: etherIPv6, pkt: v6(6).build(tcpSeg(c6, s6, 4001, 8443, 0x18, 15, []byte("xy"))), decodeErr: true},
		{name: "icmpv6 error quoting garbage", etherType: etherIPv6, pkt: v6(58).build(icmp6Msg(c6, s6, 1, 4, garbage(48)))},
	}
}

// TestHostilePackets sends malformed packets for real, as raw Ethernet
// frames from the client namespace, and checks for each that the agent
// survives, counts the undecodable ones as decode errors with the
// configured on_error verdict, and keeps deciding normal traffic; then DNS
// messages with compression loops, TLS ClientHellos with lying lengths and
// 64 KiB datagrams, whose verdicts the client can observe.
func TestHostilePackets(t *testing.T) {
	requireKernelTools(t)
	t.Parallel()
	for _, onError := range []string{"drop", "accept"} {
		t.Run("on_error="+onError, func(t *testing.T) {
			t.Parallel()
			n := testnet.New(t)
			serveTCP(t, n.Server, 8443)
			dns := serveUDP(t, n.Server, 53)
			big := serveUDP(t, n.Server, 9000)
			bigDenied := serveUDP(t, n.Server, 9001)
			nft(t, n.Server, "-f", writePolicy(t, testOwnedTable))
			owned := nft(t, n.Server, "-j", "list", "table", "inet", "testowned")
			margs, sock := metricsArgs(t)
			a := startAgent(t, n.Server, writePolicy(t, fmt.Sprintf(hostilePolicy, onError)),
				// The kernel fast path on: malformed packets must get
				// on_error on it too (docs/policy.md, "Malformed packets").
				append([]string{"--workers", "0", "--kernel-rules", "auto"}, margs...)...)
			link := n.Client.OpenRawLink(t, "veth-c", n.Server, "veth-s")
			marker := ip4{src: n.Client.Addr4(), dst: n.Server.Addr4(), proto: 17}.build(
				udpDgram(n.Client.Addr4(), n.Server.Addr4(), 4999, 9999, []byte("marker")))

			// settle sends the marker and waits until the agent has
			// counted it: everything sent before it has been decided.
			markers := 0.0
			settle := func() samples {
				t.Helper()
				if err := link.Send(etherIPv4, marker); err != nil {
					t.Fatal(err)
				}
				markers++
				var s samples
				if !eventually.True(answerWait, 20*time.Millisecond, func() bool {
					s = scrape(t, sock)
					return s == nil || s[`fwagent_rule_hits_total{rule="marker"}`] >= markers
				}) {
					t.Fatalf("the marker packet was not decided within %v", answerWait)
				}
				return s
			}

			before := settle()
			for _, f := range hostileFrames(n) {
				if err := link.Send(f.etherType, f.pkt); err != nil {
					t.Errorf("%s: %v", f.name, err)
					continue
				}
				after := settle()
				if !a.alive() {
					t.Fatalf("agent died after %q", f.name)
				}
				if after == nil {
					continue
				}
				want := 0.0
				if f.decodeErr {
					want = 1
				}
				// Frames sent from a goroutine that moved to the other CPU
				// can reach the queue after the marker (per-CPU backlogs):
				// give a late frame the same bound to be counted.
				eventually.True(answerWait, 20*time.Millisecond, func() bool {
					if s := scrape(t, sock); s != nil {
						after = s
					}
					return after.sum("fwagent_decode_errors_total")-before.sum("fwagent_decode_errors_total") >= want
				})
				decodeErrs := after.sum("fwagent_decode_errors_total") - before.sum("fwagent_decode_errors_total")
				if decodeErrs != want {
					t.Errorf("%s: decode errors +%v, want +%v", f.name, decodeErrs, want)
				}
				if f.decodeErr {
					key := fmt.Sprintf(`fwagent_packets_total{hook="input",verdict="%s"}`, onError)
					// The marker is a drop decided in the kernel, which
					// packets_total (the agent's verdicts) does not count.
					got := after[key] - before[key]
					if got < 1 {
						t.Errorf("%s: %s +%v, want the on_error verdict counted", f.name, key, got)
					}
				}
				before = after
			}

			t.Run("dns", func(t *testing.T) {
				msgs := []struct {
					name    string
					msg     []byte
					deliver bool
				}{
					{"compression pointer to itself", slices.Concat([]byte{0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0}, []byte{0xc0, 12, 0, 1, 0, 1}), true},
					{"two pointers in a loop", slices.Concat([]byte{0x12, 0x35, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0}, []byte{1, 'a', 0xc0, 16, 0xc0, 12, 0, 1, 0, 1}), true},
					{"pointer past the end", slices.Concat([]byte{0x12, 0x36, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0}, []byte{0xc0, 40, 0, 1, 0, 1}), true},
					// A lenient resolver follows a forward pointer to
					// the blocked name behind the question.
					{"forward pointer to a blocked name", slices.Concat([]byte{0x12, 0x38, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0}, []byte{0xc0, 18, 0, 1, 0, 1}, dnsName("x.blocked.example")), false},
					{"label past the end", slices.Concat([]byte{0x12, 0x37, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0}, []byte{60, 'x', 'y'}), true},
					{"blocked name", rawDNSQuery("x.blocked.example"), false},
					{"allowed name", rawDNSQuery("x.allowed.example"), true},
				}
				for _, m := range msgs {
					wait := dropWait
					if m.deliver {
						wait = answerWait
					}
					_, err := udpExchange(n.Client, netip.AddrPortFrom(n.Server.Addr4(), 53), m.msg, wait)
					got := drain(dns, m.msg, wait)
					if got != m.deliver {
						t.Errorf("%s: delivered=%v (exchange err %v), want %v", m.name, got, err, m.deliver)
					}
				}
			})

			t.Run("tls", func(t *testing.T) {
				hellos := []struct {
					name    string
					hello   []byte
					deliver bool
				}{
					// A lie that leaves the name readable must not hide it.
					{"record length beyond the hello", rawClientHello("blocked.example", func(b []byte) { binary.BigEndian.PutUint16(b[3:], 0x3fff) }), false},
					// The rest carry no readable name, so the next rule
					// decides; a server would refuse them anyway.
					{"record length shorter than the hello", rawClientHello("blocked.example", func(b []byte) { binary.BigEndian.PutUint16(b[3:], 0x10) }), true},
					{"record length beyond the maximum", rawClientHello("blocked.example", func(b []byte) { binary.BigEndian.PutUint16(b[3:], 0xffff) }), true},
					{"hello length beyond the record", rawClientHello("blocked.example", func(b []byte) { b[6] = 0xff }), true},
					{"extensions length beyond the hello", rawClientHello("blocked.example", func(b []byte) {
						i := len(b) - (len("blocked.example") + 9) - 2
						binary.BigEndian.PutUint16(b[i:], 0xfff0)
					}), true},
					{"server name length beyond the extension", rawClientHello("blocked.example", func(b []byte) {
						binary.BigEndian.PutUint16(b[len(b)-len("blocked.example")-2:], 0x7fff)
					}), true},
					{"honest hello, allowed name", rawClientHello("allowed.example", nil), true},
					{"honest hello, blocked name", rawClientHello("blocked.example", nil), false},
				}
				for _, h := range hellos {
					c, err := dialTCP(n.Client, netip.AddrPortFrom(n.Server.Addr4(), 8443), 0, answerWait)
					if err != nil {
						t.Fatalf("%s: connect: %v", h.name, err)
					}
					e := &echoConn{c: c}
					if _, err := c.Write(h.hello); err != nil {
						t.Errorf("%s: write: %v", h.name, err)
					}
					wait := answerWait
					if !h.deliver {
						wait = dropWait
					}
					err = e.recv(h.hello, wait)
					c.Close()
					if got := err == nil; got != h.deliver {
						t.Errorf("%s: echoed=%v (%v), want %v", h.name, got, err, h.deliver)
					}
				}
			})

			t.Run("64 KiB datagrams", func(t *testing.T) {
				for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
					payload := bytes.Repeat([]byte{0xa5}, 65000)
					copy(payload, dst.String())
					for _, tc := range []struct {
						port    uint16
						ch      <-chan []byte
						deliver bool
					}{{9000, big, true}, {9001, bigDenied, false}} {
						wait := dropWait
						if tc.deliver {
							wait = answerWait
						}
						_, _ = udpExchange(n.Client, netip.AddrPortFrom(dst, tc.port), payload, wait)
						if got := drain(tc.ch, payload, wait); got != tc.deliver {
							t.Errorf("%d bytes to %s:%d delivered=%v, want %v", len(payload), dst, tc.port, got, tc.deliver)
						}
					}
				}
				evs := a.waitEvents(t, 2, func(e event) bool { return e.str("dport") == "9001" })
				for _, e := range evs {
					if l := e.str("length"); len(l) < 5 || !strings.HasPrefix(l, "650") {
						t.Errorf("drop event of a 64 KiB datagram says length %s: %v", l, e)
					}
				}
				if len(evs) < 2 {
					t.Errorf("%d drop events for the denied 64 KiB datagrams, want 2 (one per family)", len(evs))
				}
			})

			// Normal service afterwards, and the agent still alive.
			tcpEcho(t, n.Client, netip.AddrPortFrom(n.Server.Addr6(), 8443))
			if !a.alive() {
				t.Fatal("agent died")
			}
			if now := nft(t, n.Server, "-j", "list", "table", "inet", "testowned"); now != owned {
				t.Errorf("the host's own table changed:\nbefore %s\nafter  %s", owned, now)
			}
			if strings.Contains(a.stderr.String(), "panic") {
				t.Errorf("the agent logged a panic:\n%s", a.stderr.String())
			}
		})
	}
}

// drain reports whether want has arrived on ch, waiting up to wait for it:
// the server's receive is asynchronous to the client's send. Other
// datagrams seen meanwhile are discarded.
func drain(ch <-chan []byte, want []byte, wait time.Duration) bool {
	timeout := time.After(wait)
	for {
		select {
		case got := <-ch:
			if bytes.Equal(got, want) {
				return true
			}
		case <-timeout:
			return false
		}
	}
}
