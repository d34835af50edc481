package pipeline

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/testpacket"
	"github.com/fwagent/fwagent/policies"
)

// lateHello is a ClientHello of about 2 KB whose server_name comes after a
// padding extension, as Chromium's post-quantum hellos often do: the name
// lies in the second of two 1400-byte segments.
func lateHello(name string) []byte {
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...)
	body = append(body, 0, 0, 2, 0x13, 0x01, 1, 0)
	var exts []byte
	exts = binary.BigEndian.AppendUint16(exts, 21) // padding
	exts = binary.BigEndian.AppendUint16(exts, 1800)
	exts = append(exts, make([]byte, 1800)...)
	exts = binary.BigEndian.AppendUint16(exts, 0) // server_name
	exts = binary.BigEndian.AppendUint16(exts, uint16(5+len(name)))
	exts = binary.BigEndian.AppendUint16(exts, uint16(3+len(name)))
	exts = append(exts, 0)
	exts = binary.BigEndian.AppendUint16(exts, uint16(len(name)))
	exts = append(exts, name...)
	body = binary.BigEndian.AppendUint16(body, uint16(len(exts)))
	body = append(body, exts...)
	hs := append([]byte{1, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	rec := binary.BigEndian.AppendUint16([]byte{22, 3, 1}, uint16(len(hs)))
	return append(rec, hs...)
}

const tlsAllowlist = `version: 1
default: {input: accept, output: drop}
rules:
  - name: https-allowed
    hook: output
    match: {proto: tcp, dport: 443, tls_sni: [allowed.example, "*.allowed.example"]}
    action: accept
  - name: https-other
    hook: output
    match: {proto: tcp, dport: 443}
    action: reject
`

var (
	cli = netip.MustParseAddr("10.9.0.1")
	srv = netip.MustParseAddr("10.9.0.2")
)

// tcpConn builds the packets of one client connection.
type tcpConn struct {
	t     *testing.T
	sport uint16
	dport uint16
	isn   uint32
}

func (c tcpConn) seg(off int, flags uint8, payload []byte) []byte {
	return testpacket.Build(c.t, packet.Spec{Src: cli, Dst: srv, Proto: packet.ProtoTCP, SrcPort: c.sport, DstPort: c.dport,
		TCPFlags: flags, Seq: c.isn + uint32(off), Payload: payload})
}

func (c tcpConn) synAck() []byte {
	return testpacket.Build(c.t, packet.Spec{Src: srv, Dst: cli, Proto: packet.ProtoTCP, SrcPort: c.dport, DstPort: c.sport,
		TCPFlags: packet.TCPSyn | packet.TCPAck, Ack: c.isn + 1})
}

// handshake runs SYN, SYN-ACK and ACK; the client's data starts at offset 1.
func (c tcpConn) handshake(w *Worker) {
	c.t.Helper()
	for i, r := range []Result{
		w.Process(c.seg(0, packet.TCPSyn, nil), Meta{Hook: nf.HookOutput, Now: 1}),
		w.Process(c.synAck(), Meta{Hook: nf.HookInput, Now: 2}),
		w.Process(c.seg(1, packet.TCPAck, nil), Meta{Hook: nf.HookOutput, Now: 3}),
	} {
		if r.Decision.Effective() != policies.ActionAccept {
			c.t.Fatalf("handshake packet %d: %s by %d", i, r.Decision.Effective(), r.Decision.Rule)
		}
	}
}

func out(w *Worker, b []byte) Result { return w.Process(b, Meta{Hook: nf.HookOutput, Now: 4}) }

func ruleOf(w *Worker, r Result) string { return w.shared.Policy().Program.RuleName(r.Decision.Rule) }

func TestSplitHelloDecidesOnTheWholeHello(t *testing.T) {
	for _, tt := range []struct {
		name     string
		sni      string
		reverse  bool
		wantRule string
		want     policies.Action
	}{
		{"allowed", "allowed.example", false, "https-allowed", policies.ActionAccept},
		{"allowed, segments reordered", "Allowed.Example", true, "https-allowed", policies.ActionAccept},
		{"denied", "denied.example", false, "https-other", policies.ActionReject},
		{"denied, segments reordered", "denied.example", true, "https-other", policies.ActionReject},
	} {
		t.Run(tt.name, func(t *testing.T) {
			shared := NewShared(&Policy{Program: compile(t, tlsAllowlist), Gen: 1}, testMarks(t), conntrack.New(conntrack.Config{}))
			w := shared.NewWorker()
			c := tcpConn{t: t, sport: 40000, dport: 443, isn: 5000}
			c.handshake(w)
			hello := lateHello(tt.sni)
			first, second := c.seg(1, packet.TCPAck, hello[:1400]), c.seg(1+1400, packet.TCPAck|packet.TCPPsh, hello[1400:])
			if tt.reverse {
				first, second = second, first
			}
			r := out(w, first)
			if !r.Decision.Pending || r.Decision.Effective() != policies.ActionAccept || ruleOf(w, r) != "https-allowed" {
				t.Fatalf("first segment: %s by %q pending %v, want a pending accept", r.Decision.Effective(), ruleOf(w, r), r.Decision.Pending)
			}
			if st := shared.StreamStats(); st.Streams != 1 || st.Bytes <= streamOverhead {
				t.Fatalf("while pending: %+v", st)
			}
			// A retransmission of the first segment changes nothing.
			if r = out(w, first); !r.Decision.Pending {
				t.Fatalf("retransmitted first segment: %+v", r.Decision)
			}
			r = out(w, second)
			if r.Decision.Pending || r.Decision.Action != tt.want || ruleOf(w, r) != tt.wantRule {
				t.Fatalf("completing segment: %s by %q pending %v, want %s by %q", r.Decision.Action, ruleOf(w, r), r.Decision.Pending, tt.want, tt.wantRule)
			}
			// The decision holds for the flow.
			r = out(w, c.seg(1+len(hello), packet.TCPAck, []byte{23, 3, 3, 0, 1, 0}))
			// An accept is cached; the reject is not (the allowed rule
			// was skipped for its L7 field), but the flow's name stands
			// and decides the same way.
			if r.Decision.Action != tt.want || r.Cached != (tt.want == policies.ActionAccept) {
				t.Fatalf("next data: %s cached %v, want %s", r.Decision.Action, r.Cached, tt.want)
			}
			if st := shared.StreamStats(); tt.want == policies.ActionAccept && st.Bytes > streamOverhead+64 {
				t.Fatalf("the decided stream still holds its buffer: %+v", st)
			}
		})
	}
}

func TestHelloBeyondTheBoundFails(t *testing.T) {
	shared := NewShared(&Policy{Program: compile(t, tlsAllowlist), Gen: 1}, testMarks(t), conntrack.New(conntrack.Config{}))
	w := shared.NewWorker()
	c := tcpConn{t: t, sport: 40001, dport: 443, isn: 77}
	c.handshake(w)
	// Segments far ahead of a hole that never fills: the fifth is one too
	// many to keep, and the flow falls through to the reject.
	var r Result
	for i := range 5 {
		r = out(w, c.seg(1+1000*(i+1), packet.TCPAck, make([]byte, 100)))
	}
	if r.Decision.Action != policies.ActionReject || ruleOf(w, r) != "https-other" {
		t.Fatalf("after the bound: %s by %q", r.Decision.Action, ruleOf(w, r))
	}
	if shared.StreamStats().Failed != 1 {
		t.Fatalf("failed streams %d, want 1", shared.StreamStats().Failed)
	}
}

func dnsMsg(id uint16, names ...string) []byte {
	msg := []byte{byte(id >> 8), byte(id), 1, 0, 0, byte(len(names)), 0, 0, 0, 0, 0, 0}
	for _, n := range names {
		for _, l := range splitDots(n) {
			msg = append(msg, byte(len(l)))
			msg = append(msg, l...)
		}
		msg = append(msg, 0, 0, 1, 0, 1)
	}
	return msg
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func frame(msg []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)
}

const dnsAllowlist = `version: 1
default: {input: accept, output: drop}
rules:
  - name: dns-allowed
    hook: output
    match: {proto: [udp, tcp], dport: 53, dns_qname: [good.example, "*.good.example"]}
    action: accept
  - name: dns-other
    hook: output
    match: {proto: [udp, tcp], dport: 53}
    action: drop
`

const dnsDenylist = `version: 1
default: {input: accept, output: accept}
rules:
  - name: dns-denied
    hook: output
    match: {proto: [udp, tcp], dport: 53, dns_qname: [bad.example]}
    action: drop
`

func TestDNSOverTCPEachMessage(t *testing.T) {
	for _, pol := range []struct{ name, text, denyRule string }{
		{"allowlist", dnsAllowlist, "dns-other"},
		{"denylist", dnsDenylist, "dns-denied"},
	} {
		t.Run(pol.name, func(t *testing.T) {
			shared := NewShared(&Policy{Program: compile(t, pol.text), Gen: 1}, testMarks(t), conntrack.New(conntrack.Config{}))
			w := shared.NewWorker()
			c := tcpConn{t: t, sport: 40053, dport: 53, isn: 900}
			c.handshake(w)
			good := frame(dnsMsg(1, "good.example"))
			// The length prefix alone, then the message: pending, then
			// the name decides.
			if r := out(w, c.seg(1, packet.TCPAck, good[:2])); !r.Decision.Pending {
				t.Fatalf("prefix alone: %+v", r.Decision)
			}
			if r := out(w, c.seg(3, packet.TCPAck, good[2:])); r.Decision.Effective() != policies.ActionAccept || r.Decision.Pending {
				t.Fatalf("good query: %+v", r.Decision)
			}
			off := 1 + len(good)
			// +keepopen: a second query on the same connection, for a
			// bad name behind a good one in the same message, is read.
			bad := frame(dnsMsg(2, "x.good.example", "bad.example"))
			for try := range 2 { // the retransmission is read again
				r := out(w, c.seg(off, packet.TCPAck, bad))
				if r.Decision.Effective() != policies.ActionDrop || ruleOf(w, r) != pol.denyRule || r.Cached {
					t.Fatalf("try %d: bad query behind a good one: %s by %q cached %v", try, r.Decision.Effective(), ruleOf(w, r), r.Cached)
				}
			}
			// Two pipelined messages in one segment, the second bad.
			two := append(frame(dnsMsg(3, "good.example")), frame(dnsMsg(4, "bad.example"))...)
			if r := out(w, c.seg(off, packet.TCPAck, two)); r.Decision.Effective() != policies.ActionDrop {
				t.Fatalf("pipelined bad query: %+v", r.Decision)
			}
			// The good ones alone still pass.
			if r := out(w, c.seg(off, packet.TCPAck, frame(dnsMsg(5, "good.example")))); r.Decision.Effective() != policies.ActionAccept {
				t.Fatalf("good query after the drops: %+v", r.Decision)
			}
		})
	}
}

func TestDNSOverUDPReusedSocket(t *testing.T) {
	for _, text := range []string{dnsAllowlist, dnsDenylist} {
		shared := NewShared(&Policy{Program: compile(t, text), Gen: 1}, testMarks(t), conntrack.New(conntrack.Config{}))
		w := shared.NewWorker()
		q := func(names ...string) []byte {
			return testpacket.Build(t, packet.Spec{Src: cli, Dst: srv, Proto: packet.ProtoUDP, SrcPort: 5353, DstPort: 53, Payload: dnsMsg(1, names...)})
		}
		if r := out(w, q("good.example")); r.Decision.Effective() != policies.ActionAccept {
			t.Fatalf("good: %+v", r.Decision)
		}
		w.Process(testpacket.Build(t, packet.Spec{Src: srv, Dst: cli, Proto: packet.ProtoUDP, SrcPort: 53, DstPort: 5353}), Meta{Hook: nf.HookInput})
		for i := range 3 {
			if r := out(w, q("bad.example")); r.Decision.Effective() != policies.ActionDrop || r.Cached {
				t.Fatalf("bad query %d on the same socket: %+v cached %v", i, r.Decision, r.Cached)
			}
			if r := out(w, q("good.example", "bad.example")); r.Decision.Effective() != policies.ActionDrop {
				t.Fatalf("bad second question: %+v", r.Decision)
			}
		}
	}
}

const httpDenylist = `version: 1
default: {input: accept, output: accept}
rules:
  - name: http-denied
    hook: output
    match: {dport: 80, http_host: [blocked.example]}
    action: reject
`

func TestHTTPHostEveryRequest(t *testing.T) {
	shared := NewShared(&Policy{Program: compile(t, httpDenylist), Gen: 1}, testMarks(t), conntrack.New(conntrack.Config{}))
	w := shared.NewWorker()
	c := tcpConn{t: t, sport: 40080, dport: 80, isn: 1}
	c.handshake(w)
	ok := []byte("GET / HTTP/1.1\r\nHost: fine.example\r\n\r\n")
	if r := out(w, c.seg(1, packet.TCPAck, ok)); r.Decision.Effective() != policies.ActionAccept {
		t.Fatalf("fine: %+v", r.Decision)
	}
	off := 1 + len(ok)
	for _, head := range []string{
		"GET / HTTP/1.1\r\nHost:blocked.example\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: BLOCKED.example:80\r\n\r\n",
		"GET / HTTP/1.1\r\nUser-Agent: x\r\nhost:\tblocked.example.\r\n\r\n",
	} {
		// The head split in two: the first part waits, the rest decides.
		r := out(w, c.seg(off, packet.TCPAck, []byte(head[:20])))
		if !r.Decision.Pending {
			t.Fatalf("%q first part: %+v", head, r.Decision)
		}
		r = out(w, c.seg(off+20, packet.TCPAck, []byte(head[20:])))
		if r.Decision.Effective() != policies.ActionReject || r.Cached {
			t.Fatalf("%q: %+v", head, r.Decision)
		}
		// Rejected, so the stream did not move: the next head starts
		// where this one did (a test shortcut: a reset ends a real
		// connection).
		if r := out(w, c.seg(off, packet.TCPAck, []byte(head[:20]))); !r.Decision.Pending {
			t.Fatalf("%q after the reject: %+v", head, r.Decision)
		}
		// The stream holds head[:20] again; a fine head must follow it
		// for this test, so restart on a fresh port.
		c.sport++
		c.handshake(w)
		off = 1
	}
}

// TestStreamsCostNothingWithoutL7Rules: a policy without stream fields
// keeps no streams.
func TestStreamsCostNothingWithoutL7Rules(t *testing.T) {
	shared := NewShared(&Policy{Program: compile(t, testPolicy), Gen: 1}, testMarks(t), conntrack.New(conntrack.Config{}))
	w := shared.NewWorker()
	c := tcpConn{t: t, sport: 40000, dport: 22, isn: 1}
	w.Process(c.seg(0, packet.TCPSyn, nil), Meta{Hook: nf.HookInput})
	w.Process(c.seg(1, packet.TCPAck, []byte("SSH-2.0-x\r\n")), Meta{Hook: nf.HookInput})
	if st := shared.StreamStats(); st.Streams != 0 || st.Bytes != 0 {
		t.Fatalf("streams kept for a policy without L7 rules: %+v", st)
	}
}

// TestStreamsOfEndedFlowsAreSwept: the streams of flows the flow table no
// longer has are dropped with their memory, and workers on two goroutines
// share the table safely (run with -race).
func TestStreamsOfEndedFlowsAreSwept(t *testing.T) {
	flows := conntrack.New(conntrack.Config{})
	shared := NewShared(&Policy{Program: compile(t, tlsAllowlist), Gen: 1}, testMarks(t), flows)
	hello := lateHello("allowed.example")
	run := func(base uint16, n int) {
		w := shared.NewWorker()
		for i := range n {
			c := tcpConn{t: t, sport: base + uint16(i), dport: 443, isn: 1}
			c.handshake(w)
			out(w, c.seg(1, packet.TCPAck, hello[:1000]))
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); run(10000, 300) }()
	run(20000, 300)
	<-done
	st := shared.StreamStats()
	if st.Streams != 600 || st.Bytes < 600*1000 {
		t.Fatalf("after 600 pending hellos: %+v", st)
	}
	flows.Flush()
	// New streams sweep the table now and then; after enough of them the
	// ended flows' streams are gone.
	run(30000, sweepEvery)
	st = shared.StreamStats()
	if st.Streams > sweepEvery || st.Bytes > int64(sweepEvery)*(streamOverhead+2048) {
		t.Fatalf("streams of flushed flows kept: %+v", st)
	}
}

// TestStreamMemoryCap: at the cap, a new flow gets no stream and is read
// one packet at a time (a hello split across segments then falls through).
func TestStreamMemoryCap(t *testing.T) {
	shared := NewShared(&Policy{Program: compile(t, tlsAllowlist), Gen: 1}, testMarks(t), conntrack.New(conntrack.Config{}))
	shared.streams.limit = 3 * streamOverhead
	w := shared.NewWorker()
	for i := range 4 {
		c := tcpConn{t: t, sport: uint16(40000 + i), dport: 443, isn: 1}
		out(w, c.seg(0, packet.TCPSyn, nil))
	}
	st := shared.StreamStats()
	if st.Streams != 3 || st.Full == 0 || st.Bytes > st.Limit {
		t.Fatalf("at the cap: %+v", st)
	}
}

// BenchmarkSplitHello is the cost of the stream path: per connection, the
// SYN, the ACK and a 2 KB ClientHello in two segments, under the TLS
// allowlist (five packets, three of them asking the stream table).
func BenchmarkSplitHello(b *testing.B) {
	t := &testing.T{}
	flows := conntrack.New(conntrack.Config{})
	shared := NewShared(&Policy{Program: compile(b, tlsAllowlist), Gen: 1}, testMarks(b), flows)
	w := shared.NewWorker()
	hello := lateHello("allowed.example")
	const conns = 4096
	type conn struct{ syn, synAck, ack, seg1, seg2 []byte }
	cs := make([]conn, conns)
	for i := range cs {
		c := tcpConn{t: t, sport: uint16(1024 + i), dport: 443, isn: 1}
		cs[i] = conn{c.seg(0, packet.TCPSyn, nil), c.synAck(), c.seg(1, packet.TCPAck, nil),
			c.seg(1, packet.TCPAck, hello[:1400]), c.seg(1401, packet.TCPAck|packet.TCPPsh, hello[1400:])}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%conns == 0 && i > 0 {
			b.StopTimer()
			flows.Flush()
			b.StartTimer()
		}
		c := &cs[i%conns]
		o := Meta{Hook: nf.HookOutput, Now: int64(i)}
		w.Process(c.syn, o)
		w.Process(c.synAck, Meta{Hook: nf.HookInput, Now: int64(i)})
		w.Process(c.ack, o)
		w.Process(c.seg1, o)
		if r := w.Process(c.seg2, o); r.Decision.Action != policies.ActionAccept || r.Decision.Pending {
			b.Fatalf("hello %d: %+v", i, r.Decision)
		}
		i++
	}
}

// FuzzSegmentedHello cuts a ClientHello into segments at fuzzed points and
// sends them in a fuzzed order, some twice, through the pipeline: whatever
// the segmentation, the first packet that is not pending decides as the
// whole hello in one segment does, and once every byte was sent some packet
// has decided.
func FuzzSegmentedHello(f *testing.F) {
	f.Add([]byte{100, 200, 7}, uint8(0), false)
	f.Add([]byte{255, 255, 255, 255, 1}, uint8(3), true)
	f.Add([]byte{1}, uint8(1), false)
	prog := compile(f, tlsAllowlist)
	m := testMarks(f)
	f.Fuzz(func(t *testing.T, cuts []byte, order uint8, allowed bool) {
		name := "denied.example"
		if allowed {
			name = "x.allowed.example"
		}
		hello := lateHello(name)
		want := policies.ActionReject
		if allowed {
			want = policies.ActionAccept
		}
		type seg struct{ off, end int }
		var segs []seg
		for off, i := 0, 0; off < len(hello); i++ {
			n := 600
			if i < len(cuts) {
				n = int(cuts[i])*8 + 1
			}
			segs = append(segs, seg{off, min(off+n, len(hello))})
			off += n
		}
		// Rotate, then swap neighbours as order's bits say; repeat the
		// first segment at the end.
		r := int(order) % len(segs)
		segs = append(segs[r:], segs[:r]...)
		for i := 0; i+1 < len(segs) && i < 8; i++ {
			if order&(1<<i) != 0 {
				segs[i], segs[i+1] = segs[i+1], segs[i]
			}
		}
		segs = append(segs, segs[0])
		shared := NewShared(&Policy{Program: prog, Gen: 1}, m, conntrack.New(conntrack.Config{}))
		w := shared.NewWorker()
		c := tcpConn{t: t, sport: 40000, dport: 443, isn: 0xfffff000}
		c.handshake(w)
		decided := false
		for _, s := range segs {
			r := out(w, c.seg(1+s.off, packet.TCPAck, hello[s.off:s.end]))
			if r.Decision.Pending {
				continue
			}
			if !decided && r.Decision.Action != want && shared.StreamStats().Failed == 0 {
				t.Fatalf("first decision %s by %q, want %s (segments %v)", r.Decision.Action, ruleOf(w, r), want, segs)
			}
			decided = true
		}
		if !decided {
			t.Fatalf("no decision after every segment (%v)", segs)
		}
	})
}
