package pipeline

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/policygen"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/rules"
)

func testMarks(t testing.TB) rules.Marks {
	m, err := rules.NewMarks(rules.DefaultMarkMask)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func compile(t testing.TB, text string) *policies.Program {
	t.Helper()
	pol, err := policies.Load("test.yaml", []byte(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := policies.Compile(pol)
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

func build(t testing.TB, s packet.Spec) []byte {
	t.Helper()
	b, err := packet.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEncode(t *testing.T) {
	m := testMarks(t)
	const gen = 9
	const old = 0x0000_4000 // a kube-proxy bit outside the mask survives
	tests := []struct {
		name   string
		d      policies.Decision
		kind   Kind
		action rules.MarkAction
		id     uint32
		mark   uint32 // checked when kind is Accept with SetMark
	}{
		{"accept", policies.Decision{Action: policies.ActionAccept, Rule: 0}, Accept, rules.MarkNone, 0, 0},
		{"drop silently", policies.Decision{Action: policies.ActionDrop, Rule: 3}, Drop, rules.MarkNone, 0, 0},
		{"drop and log", policies.Decision{Action: policies.ActionDrop, Rule: 3, Log: true}, Repeat, rules.MarkDropLog, 4, 0},
		{"default drop and log", policies.Decision{Action: policies.ActionDrop, Rule: policies.NoRule, Log: true}, Repeat, rules.MarkDropLog, 0, 0},
		{"reject", policies.Decision{Action: policies.ActionReject, Rule: 1}, Repeat, rules.MarkReject, 2, 0},
		{"reject and log", policies.Decision{Action: policies.ActionReject, Rule: 1, Log: true}, Repeat, rules.MarkRejectLog, 2, 0},
		{"accept and log", policies.Decision{Action: policies.ActionAccept, Rule: 5, Log: true}, Repeat, rules.MarkAcceptLog, 6, 0},
		{"audit drop", policies.Decision{Action: policies.ActionDrop, Rule: 2, Audit: true}, Repeat, rules.MarkWouldDrop, 3, 0},
		{"audit reject", policies.Decision{Action: policies.ActionReject, Rule: 2, Audit: true, Log: true}, Repeat, rules.MarkWouldReject, 3, 0},
		{"audit accept", policies.Decision{Action: policies.ActionAccept, Rule: 2, Audit: true}, Accept, rules.MarkNone, 0, 0},
		{"offload", policies.Decision{Action: policies.ActionAccept, Rule: 0, Offload: true}, Repeat, rules.MarkOffload, gen, 0},
		{"accept with mark", policies.Decision{Action: policies.ActionAccept, Rule: 0, SetMark: true, Mark: 0x42}, Accept, rules.MarkNone, 0, 0x42},
		{"mark inside mask is stripped", policies.Decision{Action: policies.ActionAccept, Rule: 0, SetMark: true, Mark: 0x0001_0042}, Accept, rules.MarkNone, 0, 0x42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Encode(tt.d, old|m.EstablishedBit(), m, gen)
			if v.Kind != tt.kind {
				t.Fatalf("kind = %s, want %s", v.Kind, tt.kind)
			}
			switch v.Kind {
			case Repeat:
				a, est, id := m.Decode(v.Mark)
				if a != tt.action || id != tt.id || est {
					t.Fatalf("mark %#x decodes to (%v, est=%v, id=%d), want (%v, false, %d)", v.Mark, a, est, id, tt.action, tt.id)
				}
				if v.Mark&^m.Mask != old {
					t.Fatalf("mark %#x lost the bits outside the mask (want %#x)", v.Mark, old)
				}
			case Accept:
				if v.SetMark != (tt.mark != 0) || v.Mark != tt.mark {
					t.Fatalf("accept mark = (%v, %#x), want %#x", v.SetMark, v.Mark, tt.mark)
				}
			}
		})
	}
}

const testPolicy = `version: 1
default: {input: drop, forward: drop, output: accept, log: true}
on_error: {input: drop, output: accept}
rules:
  - name: established
    match: {state: established}
    action: accept
  - name: ssh
    match: {proto: tcp, dport: 22}
    action: accept
  - name: telnet
    match: {proto: tcp, dport: 23}
    action: drop
    log: true
  - name: dns-block
    match: {proto: udp, dport: 53, dns_qname: "*.ads.example"}
    action: reject
`

var (
	client = netip.MustParseAddr("192.0.2.10")
	server = netip.MustParseAddr("198.51.100.1")
)

func TestProcess(t *testing.T) {
	m := testMarks(t)
	shared := NewShared(&Policy{Program: compile(t, testPolicy), Gen: 7}, m, conntrack.New(conntrack.Config{}))
	w := shared.NewWorker()
	in := Meta{Hook: policies.HookInput, Now: 1}

	syn := build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 22, TCPFlags: packet.TCPSyn})
	r := w.Process(syn, in)
	if r.Verdict.Kind != Repeat || r.Verdict.Action != rules.MarkOffload || r.State != conntrack.StateNew {
		t.Fatalf("ssh SYN: verdict %s/%s state %s, want an offload repeat for a new flow", r.Verdict.Kind, r.Verdict.Action, r.State)
	}
	if _, _, id := m.Decode(r.Verdict.Mark); id != 7 {
		t.Fatalf("offload carries generation %d, want 7", id)
	}
	// The SYN's decision is not cached: the skipped `established` rule
	// will match later packets of the flow. Once established, that rule
	// decides, and its decision is reused for the rest of the flow.
	synAck := build(t, packet.Spec{Src: server, Dst: client, Proto: packet.ProtoTCP, SrcPort: 22, DstPort: 40000, TCPFlags: packet.TCPSyn | packet.TCPAck})
	ack := build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 22, TCPFlags: packet.TCPAck})
	w.Process(synAck, Meta{Hook: policies.HookInput, Now: 2})
	r = w.Process(ack, in)
	if r.Cached || r.State != conntrack.StateEstablished || shared.Policy().Program.RuleName(r.Decision.Rule) != "established" {
		t.Fatalf("ACK: cached=%v state=%s rule=%q, want a fresh decision by established", r.Cached, r.State, shared.Policy().Program.RuleName(r.Decision.Rule))
	}
	r = w.Process(ack, in)
	if !r.Cached || r.Decision.Action != policies.ActionAccept {
		t.Fatalf("next packet of the flow: cached=%v action=%s, want the cached accept", r.Cached, r.Decision.Action)
	}
	// A new policy generation ignores the cache.
	shared.SetPolicy(&Policy{Program: compile(t, testPolicy), Gen: 8})
	if r = w.Process(ack, in); r.Cached {
		t.Fatal("a decision cached under generation 7 was reused under generation 8")
	}

	telnet := build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 40001, DstPort: 23, TCPFlags: packet.TCPSyn})
	r = w.Process(telnet, in)
	if a, _, id := m.Decode(r.Verdict.Mark); r.Verdict.Kind != Repeat || a != rules.MarkDropLog || id != 3 {
		t.Fatalf("telnet: %s %v id %d, want a drop+log repeat for rule 3 (index 2 + 1)", r.Verdict.Kind, a, id)
	}

	other := build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoUDP, SrcPort: 5000, DstPort: 9})
	r = w.Process(other, in)
	if a, _, id := m.Decode(r.Verdict.Mark); r.Decision.Rule != policies.NoRule || a != rules.MarkDropLog || id != 0 {
		t.Fatalf("default: rule %d action %v id %d, want the logged default drop", r.Decision.Rule, a, id)
	}

	// Undecodable packets get on_error: drop on input, accept on output.
	if r = w.Process([]byte{0x45, 0, 0}, in); r.DecodeErr == nil || r.Verdict.Kind != Drop {
		t.Fatalf("truncated packet on input: err=%v verdict=%s, want a decode error and drop", r.DecodeErr, r.Verdict.Kind)
	}
	if r = w.Process([]byte{0x45, 0, 0}, Meta{Hook: policies.HookOutput}); r.Verdict.Kind != Accept {
		t.Fatalf("truncated packet on output: verdict %s, want accept", r.Verdict.Kind)
	}

	// A packet that still carries an action mark came back unconsumed: it
	// is accepted, never queued again in a loop.
	r = w.Process(telnet, Meta{Hook: policies.HookInput, Mark: m.Encode(0, rules.MarkOffload, 1)})
	if !r.Looped || r.Verdict.Kind != Accept {
		t.Fatalf("looped packet: looped=%v verdict=%s, want an accept", r.Looped, r.Verdict.Kind)
	}

	// The kernel's established hint picks up a flow the tracker never saw.
	mid := build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 41000, DstPort: 8080, TCPFlags: packet.TCPAck})
	r = w.Process(mid, Meta{Hook: policies.HookInput, Mark: m.EstablishedBit()})
	if r.State != conntrack.StateEstablished || r.Decision.Effective() != policies.ActionAccept {
		t.Fatalf("picked-up flow: state %s verdict %s, want established and accepted", r.State, r.Decision.Effective())
	}

	st := shared.Stats()
	if st.DecodeErrors != 2 || st.Looped != 1 || st.Cached != 1 {
		t.Fatalf("stats %+v: want 2 decode errors, 1 looped, 1 cached", st)
	}
	if st.Packets[policies.HookInput][OutDrop] != 3 {
		t.Fatalf("input drops counted %d, want 3 (telnet, default, undecodable)", st.Packets[policies.HookInput][OutDrop])
	}
}

// mixedReplay is a replay of mixed traffic: TCP flows (handshake, data),
// UDP both ways, IPv6, ICMP echo, a DNS query, and packets no rule matches.
func mixedReplay(t testing.TB) [][]byte {
	var out [][]byte
	add := func(s packet.Spec) { out = append(out, build(t, s)) }
	v6c, v6s := netip.MustParseAddr("2001:db8:1::10"), netip.MustParseAddr("2001:db8:2::1")
	for f := range 16 {
		sp := uint16(40000 + f)
		add(packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: sp, DstPort: 22, TCPFlags: packet.TCPSyn})
		add(packet.Spec{Src: server, Dst: client, Proto: packet.ProtoTCP, SrcPort: 22, DstPort: sp, TCPFlags: packet.TCPSyn | packet.TCPAck})
		add(packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: sp, DstPort: 22, TCPFlags: packet.TCPAck, Payload: make([]byte, 100)})
		add(packet.Spec{Src: client, Dst: server, Proto: packet.ProtoUDP, SrcPort: sp, DstPort: 9000 + uint16(f), Payload: make([]byte, 64)})
		add(packet.Spec{Src: v6c, Dst: v6s, Proto: packet.ProtoUDP, SrcPort: sp, DstPort: 9999, Payload: make([]byte, 33)})
		add(packet.Spec{Src: client, Dst: server, Proto: packet.ProtoICMP, ICMPType: 8, ICMPID: uint16(f), ICMPSeq: 1})
	}
	return out
}

func BenchmarkProcess(b *testing.B) {
	m := testMarks(b)
	replay := mixedReplay(b)
	for _, n := range []int{10, 1000, 10000} {
		prog := compile(b, policygen.Generate(policygen.Options{Rules: n, Stateful: true}))
		for _, tracked := range []bool{false, true} {
			var flows *conntrack.Table
			if tracked {
				flows = conntrack.New(conntrack.Config{})
			}
			w := NewShared(&Policy{Program: prog, Gen: 1}, m, flows).NewWorker()
			b.Run(fmt.Sprintf("rules=%d/tracked=%v", n, tracked), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					w.Process(replay[i%len(replay)], Meta{Hook: policies.HookInput, Now: int64(i)})
					i++
				}
			})
		}
	}
}

func TestProcessAllocatesNothing(t *testing.T) {
	m := testMarks(t)
	replay := mixedReplay(t)
	prog := compile(t, policygen.Generate(policygen.Options{Rules: 1000, Stateful: true}))
	w := NewShared(&Policy{Program: prog, Gen: 1}, m, conntrack.New(conntrack.Config{})).NewWorker()
	for i, p := range replay { // create the flows first: inserting may grow the table
		w.Process(p, Meta{Hook: policies.HookInput, Now: int64(i)})
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		w.Process(replay[i%len(replay)], Meta{Hook: policies.HookInput, Now: int64(len(replay) + i)})
		i++
	})
	if allocs != 0 {
		t.Fatalf("Process allocates %.2f times per packet, want 0", allocs)
	}
}

// TestCachePerDirection: a reply's decision must not replace the decision
// cached for the originator's direction (an L7 rule's, typically).
func TestCachePerDirection(t *testing.T) {
	m := testMarks(t)
	prog := compile(t, `version: 1
default: {forward: drop}
rules:
  - name: established
    match: {state: established}
    action: accept
  - name: web
    match: {proto: tcp, dport: 443}
    action: accept
`)
	shared := NewShared(&Policy{Program: prog, Gen: 1}, m, conntrack.New(conntrack.Config{}))
	w := shared.NewWorker()
	fwd := Meta{Hook: policies.HookForward, Now: 1}
	spec := func(reply bool, flags uint8) []byte {
		if reply {
			return build(t, packet.Spec{Src: server, Dst: client, Proto: packet.ProtoTCP, SrcPort: 443, DstPort: 40000, TCPFlags: flags})
		}
		return build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 443, TCPFlags: flags})
	}
	w.Process(spec(false, packet.TCPSyn), fwd)
	w.Process(spec(true, packet.TCPSyn|packet.TCPAck), fwd)
	w.Process(spec(false, packet.TCPAck), fwd) // established: decided and cached for the original direction
	w.Process(spec(true, packet.TCPAck), fwd)  // the reply decides and caches its own slot
	r := w.Process(spec(false, packet.TCPAck), fwd)
	if !r.Cached {
		t.Fatal("the original direction's cached decision was lost when the reply cached its own")
	}
	if r = w.Process(spec(true, packet.TCPAck), fwd); !r.Cached {
		t.Fatal("the reply direction's decision was not cached")
	}
}
