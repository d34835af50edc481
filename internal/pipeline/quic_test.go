package pipeline

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/l7/quic"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/testpacket"
	"github.com/fwagent/fwagent/policies"
)

// quicHello is a ClientHello handshake message for name with ~1.5 KB of
// padding before the server_name, as a browser's post-quantum hello has.
func quicHello(name string) []byte {
	var exts []byte
	exts = binary.BigEndian.AppendUint16(exts, 21)
	exts = binary.BigEndian.AppendUint16(exts, 1500)
	exts = append(exts, make([]byte, 1500)...)
	list := []byte{0}
	list = binary.BigEndian.AppendUint16(list, uint16(len(name)))
	list = append(list, name...)
	exts = binary.BigEndian.AppendUint16(exts, 0)
	exts = binary.BigEndian.AppendUint16(exts, uint16(len(list)+2))
	exts = binary.BigEndian.AppendUint16(exts, uint16(len(list)))
	exts = append(exts, list...)
	body := append([]byte{3, 3}, make([]byte, 32)...)
	body = append(body, 0, 0, 2, 0x13, 0x01, 1, 0)
	body = binary.BigEndian.AppendUint16(body, uint16(len(exts)))
	body = append(body, exts...)
	return append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

// quicFlight is a client's first flight for name from sport: two Initial
// packets, the name in the second, as IP packets.
func quicFlight(t *testing.T, name string, sport uint16) [][]byte {
	return quicConn(t, name, sport, []byte{1, 2, 3, 4, 5, 6, 7, byte(sport)})
}

// quicConn is quicFlight for a connection with its own connection ID.
func quicConn(t *testing.T, name string, sport uint16, dcid []byte) [][]byte {
	t.Helper()
	dgrams, err := quic.ClientInitial(quic.Version1, dcid, quicHello(name))
	if err != nil || len(dgrams) != 2 {
		t.Fatalf("%d datagrams, %v", len(dgrams), err)
	}
	out := make([][]byte, len(dgrams))
	for i, d := range dgrams {
		out[i] = udpPacket(t, sport, d)
	}
	return out
}

func udpPacket(t *testing.T, sport uint16, payload []byte) []byte {
	return testpacket.Build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoUDP, SrcPort: sport, DstPort: 443, Payload: payload})
}

const quicDenylist = `version: 1
default: {output: accept}
rules:
  - name: deny-quic
    hook: output
    match: {proto: udp, dport: 443, tls_sni: ["*.denied.example"]}
    action: drop
`

const quicAllowlist = `version: 1
default: {output: accept}
rules:
  - name: never
    hook: output
    match: {tls_sni: [never.example]}
    action: reject
  - name: allow-quic
    hook: output
    match: {proto: udp, dport: 443, tls_sni: [allowed.example]}
    action: accept
  - name: other-quic
    hook: output
    match: {proto: udp, dport: 443}
    action: drop
`

func TestQUICDenylist(t *testing.T) {
	shared := NewShared(&Policy{Program: compile(t, quicDenylist), Gen: 1}, testMarks(t), conntrack.New(conntrack.Config{}))
	w := shared.NewWorker()
	out := Meta{Hook: nf.HookOutput, Now: 1}

	denied := quicFlight(t, "www.denied.example", 41000)
	if r := w.Process(denied[0], out); r.Decision.Action != policies.ActionAccept || r.Decision.Cacheable {
		t.Fatalf("first Initial, name pending: %+v", r.Decision)
	}
	if r := w.Process(denied[1], out); r.Decision.Action != policies.ActionDrop || shared.Policy().Program.RuleName(r.Decision.Rule) != "deny-quic" {
		t.Fatalf("second Initial completes a denied name: %+v", r.Decision)
	}
	if r := w.Process(denied[0], out); !r.Cached || r.Verdict.Kind != Drop {
		t.Fatalf("retransmitted Initial of a denied flow: %+v", r)
	}

	allowed := quicFlight(t, "fine.example", 41001)
	for i, p := range allowed {
		if r := w.Process(p, out); r.Decision.Action != policies.ActionAccept {
			t.Fatalf("allowed flow, packet %d: %+v", i, r.Decision)
		}
	}
	if st := shared.QUICStats(); st.Flows != 2 || st.Bytes <= 0 || st.Bytes > 2*int64(quicEntrySize+2048) {
		t.Fatalf("stats after two decided flows: %+v", st)
	}

	// UDP that is not QUIC is not followed.
	w.Process(udpPacket(t, 41002, []byte("not quic at all")), out)
	if st := shared.QUICStats(); st.Flows != 2 {
		t.Fatalf("non-QUIC UDP followed: %+v", st)
	}
}

func TestQUICAllowlist(t *testing.T) {
	shared := NewShared(&Policy{Program: compile(t, quicAllowlist), Gen: 1}, testMarks(t), conntrack.New(conntrack.Config{}))
	w := shared.NewWorker()
	out := Meta{Hook: nf.HookOutput, Now: 1}
	name := func(r Result) string { return shared.Policy().Program.RuleName(r.Decision.Rule) }

	f := quicFlight(t, "allowed.example", 42000)
	// Pending, as the first segments of a TCP ClientHello are: accepted
	// while the allowing rule waits for the name.
	if r := w.Process(f[0], out); !r.Decision.Pending || r.Decision.Effective() != policies.ActionAccept {
		t.Fatalf("pending Initial: %+v", r.Decision)
	}
	if r := w.Process(f[1], out); r.Decision.Action != policies.ActionAccept || name(r) != "allow-quic" {
		t.Fatalf("completing Initial: %+v", r.Decision)
	}
	// The rule before allow-quic looked at the packet, so the accept is
	// not cached; later packets are decided again and must meet the same
	// name: the retransmitted first Initial, then a short-header packet.
	for i, p := range [][]byte{f[0], udpPacket(t, 42000, append([]byte{0x40}, bytes.Repeat([]byte{7}, 40)...))} {
		if r := w.Process(p, out); r.Decision.Action != policies.ActionAccept || name(r) != "allow-quic" {
			t.Fatalf("later packet %d: %+v", i, r.Decision)
		}
	}

	// Another name: pending first, then refused by the packet that
	// completes the name, and from then on.
	other := quicFlight(t, "other.example", 42001)
	if r := w.Process(other[0], out); !r.Decision.Pending {
		t.Fatalf("other name, first packet: %+v", r.Decision)
	}
	for i, p := range append(other[1:], other[0]) {
		if r := w.Process(p, out); r.Decision.Action != policies.ActionDrop || name(r) != "other-quic" {
			t.Fatalf("other name, packet %d: %+v", i+1, r.Decision)
		}
	}
}

// A client may open a new connection from the same socket (quic-go's
// Transport does; so does a port the kernel hands out again): the cached
// decision of the flow's first connection must not decide the second.
func TestQUICReusedSocket(t *testing.T) {
	for _, tc := range []struct {
		policy        string
		first, second string
		want          [2]Kind
	}{
		{quicAllowlist, "allowed.example", "other.example", [2]Kind{Accept, Drop}},
		{quicDenylist, "www.denied.example", "fine.example", [2]Kind{Drop, Accept}},
	} {
		shared := NewShared(&Policy{Program: compile(t, tc.policy), Gen: 1}, testMarks(t), conntrack.New(conntrack.Config{}))
		w := shared.NewWorker()
		out := Meta{Hook: nf.HookOutput, Now: 1}
		for i, name := range []string{tc.first, tc.second} {
			flight := quicConn(t, name, 43000, []byte{byte(i + 1), 9, 9, 9, 9, 9, 9, 9})
			w.Process(flight[0], out)
			if r := w.Process(flight[1], out); r.Verdict.Kind != tc.want[i] || r.Cached {
				t.Errorf("%s: connection %d (%s): %+v, want %s decided afresh", tc.policy[:40], i+1, name, r, tc.want[i])
			}
			// A retransmission of the connection's first packet meets
			// its cached decision.
			if r := w.Process(flight[0], out); r.Verdict.Kind != tc.want[i] {
				t.Errorf("connection %d (%s), retransmission: %+v, want %s", i+1, name, r, tc.want[i])
			}
		}
	}
}

func TestQUICBounds(t *testing.T) {
	shared := NewShared(&Policy{Program: compile(t, quicDenylist), Gen: 1}, testMarks(t), conntrack.New(conntrack.Config{MaxFlows: 2 * quicMaxFlows}))
	w := shared.NewWorker()
	first := quicFlight(t, "x.denied.example", 1)[0]
	// The same first Initial from many ports: every flow stays pending.
	ipFrom := func(sport uint16) []byte {
		p := bytes.Clone(first)
		binary.BigEndian.PutUint16(p[20:22], sport) // UDP checksum is not checked on this path
		return p
	}
	now := int64(1)
	// Whichever bound comes first, entries or bytes, stops new flows.
	n := 0
	for ; shared.QUICStats().Refused == 0; n++ {
		if n > quicMaxFlows {
			t.Fatalf("no flow refused after %d: %+v", n, shared.QUICStats())
		}
		w.Process(ipFrom(uint16(1000+n)), Meta{Hook: nf.HookOutput, Now: now})
	}
	st := shared.QUICStats()
	if st.Flows > int64(n) || st.Bytes > quicMaxBytes || st.Flows > quicMaxFlows || st.Refused != 1 {
		t.Fatalf("at the cap after %d flows: %+v", n, st)
	}
	t.Logf("%d flows fill the table: %+v", n, st)
	w.Process(ipFrom(60000), Meta{Hook: nf.HookOutput, Now: now})
	if st2 := shared.QUICStats(); st2.Refused != 2 || st2.Flows > st.Flows+1 || st2.Bytes > quicMaxBytes {
		t.Fatalf("over the cap: %+v", st2)
	}
	// Once the pending flows expire, a new one is followed again (the
	// answers of the flows given up on stay for their own timeout).
	now += int64(11 * time.Second)
	w.Process(ipFrom(60001), Meta{Hook: nf.HookOutput, Now: now})
	if st := shared.QUICStats(); st.Refused != 2 || st.Flows > 3 {
		t.Fatalf("after expiry: %+v", st)
	}
}

// BenchmarkProcessQUIC is a packet of an allowed QUIC connection under a
// denylist, after its first flight: the deny rule looked at it, so its
// decision is not cached, and each packet meets the reassembly's answer.
func BenchmarkProcessQUIC(b *testing.B) {
	t := &testing.T{}
	shared := NewShared(&Policy{Program: compile(b, quicDenylist), Gen: 1}, testMarks(b), conntrack.New(conntrack.Config{}))
	w := shared.NewWorker()
	out := Meta{Hook: nf.HookOutput, Now: 1}
	for _, p := range quicFlight(t, "fine.example", 44000) {
		w.Process(p, out)
	}
	short := testpacket.Build(b, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoUDP, SrcPort: 44000, DstPort: 443,
		Payload: append([]byte{0x40}, bytes.Repeat([]byte{7}, 1200)...)})
	b.ReportAllocs()
	for b.Loop() {
		if r := w.Process(short, out); r.Decision.Action != policies.ActionAccept {
			b.Fatal(r)
		}
	}
}
