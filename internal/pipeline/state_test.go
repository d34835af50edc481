package pipeline

import (
	"testing"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/testpacket"
	"github.com/fwagent/fwagent/policies"
)

// #13's second minimal policy: established traffic is dropped, the rest
// accepted without offload.
const estDropPolicy = `version: 1
default: {input: drop}
rules:
  - {name: est-drop, match: {state: established}, action: drop}
  - {name: all, match: {}, action: accept, offload: false}
`

// TestKernelStateOnEveryPacket: with only input filtered, the replies that
// establish an inbound UDP or ICMP flow leave by output and are never
// queued; the kernel's established bit on the second request is all the
// agent learns. The old pipeline read it only when it created the flow, so
// the second datagram and echo request were accepted by "all" while the
// kernel-only reference dropped them.
func TestKernelStateOnEveryPacket(t *testing.T) {
	m := testMarks(t)
	for _, kernel := range []bool{true, false} {
		shared := NewShared(&Policy{Program: compile(t, estDropPolicy), Gen: 1}, m, conntrack.New(conntrack.Config{}))
		if kernel {
			shared.UseKernelState()
		}
		w := shared.NewWorker()
		for _, s := range []packet.Spec{
			{Src: client, Dst: server, Proto: packet.ProtoUDP, SrcPort: 40000, DstPort: 5353, Payload: []byte("one")},
			{Src: client, Dst: server, Proto: packet.ProtoICMP, ICMPType: 8, ICMPID: 9, ICMPSeq: 1},
		} {
			pkt := testpacket.Build(t, s)
			r := w.Process(pkt, Meta{Hook: nf.HookInput})
			if r.State != nf.StateNew || r.Decision.Action != policies.ActionAccept {
				t.Fatalf("kernel=%v proto %d first: %s, %s; want new, accepted", kernel, s.Proto, r.State, r.Decision.Action)
			}
			r = w.Process(pkt, Meta{Hook: nf.HookInput, Mark: m.EstablishedBit()})
			if r.State != nf.StateEstablished || r.Decision.Action != policies.ActionDrop {
				t.Fatalf("kernel=%v proto %d second, kernel says established: %s, %s by %d; want established, dropped", kernel, s.Proto, r.State, r.Decision.Action, r.Decision.Rule)
			}
		}
	}
}

// TestKernelStateWins: on the live path the kernel's view is the state,
// even where the tracker disagrees, because kernel-compiled rules read the
// same bits.
func TestKernelStateWins(t *testing.T) {
	m := testMarks(t)
	const policy = `version: 1
default: {input: drop}
rules:
  - {name: est, match: {state: established}, action: accept}
  - {name: rel, match: {state: related}, action: accept}
  - {name: inv, match: {state: invalid}, action: reject}
  - {name: new, match: {state: new}, action: accept, offload: false}
`
	shared := NewShared(&Policy{Program: compile(t, policy), Gen: 1}, m, conntrack.New(conntrack.Config{}))
	shared.UseKernelState()
	w := shared.NewWorker()
	syn := testpacket.Build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 41000, DstPort: 80, TCPFlags: packet.TCPSyn})
	synack := testpacket.Build(t, packet.Spec{Src: server, Dst: client, Proto: packet.ProtoTCP, SrcPort: 80, DstPort: 41000, TCPFlags: packet.TCPSyn | packet.TCPAck})
	ack := testpacket.Build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 41000, DstPort: 80, TCPFlags: packet.TCPAck})
	w.Process(syn, Meta{Hook: nf.HookInput})
	w.Process(synack, Meta{Hook: nf.HookOutput, Mark: m.EstablishedBit()})
	for _, tt := range []struct {
		mark uint32
		want nf.State
		rule string
	}{
		// The tracker saw the handshake and calls the ACK established; the
		// kernel (say its entry was flushed) calls it new.
		{0, nf.StateNew, "new"},
		{m.EstablishedBit(), nf.StateEstablished, "est"},
		{m.RelatedBit(), nf.StateRelated, "rel"},
		{m.InvalidBit(), nf.StateInvalid, "inv"},
		{m.EstablishedBit() | 0x4000, nf.StateEstablished, "est"}, // bits outside the mask do not matter
	} {
		r := w.Process(ack, Meta{Hook: nf.HookInput, Mark: tt.mark})
		if r.State != tt.want || shared.Policy().Program.RuleName(r.Decision.Rule) != tt.rule {
			t.Errorf("mark %#x: state %s by %s, want %s by %s", tt.mark, r.State, shared.Policy().Program.RuleName(r.Decision.Rule), tt.want, tt.rule)
		}
	}
}

// TestStateTaintedAcceptDoesNotOffload is #13's first minimal case through
// the pipeline: the SYN is accepted by the default after est-drop was
// skipped for its state only; offloading it would let the established rest
// of the flow past est-drop, and reusing its cached decision for an
// established packet would too.
func TestStateTaintedAcceptDoesNotOffload(t *testing.T) {
	m := testMarks(t)
	const policy = `version: 1
default: {input: accept}
rules:
  - {name: est-drop, match: {proto: tcp, state: established}, action: drop}
`
	shared := NewShared(&Policy{Program: compile(t, policy), Gen: 1}, m, conntrack.New(conntrack.Config{}))
	shared.UseKernelState()
	w := shared.NewWorker()
	syn := testpacket.Build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 42000, DstPort: 80, TCPFlags: packet.TCPSyn})
	ack := testpacket.Build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 42000, DstPort: 80, TCPFlags: packet.TCPAck})
	for i := range 2 { // the second SYN (a retransmit) comes from the cache
		r := w.Process(syn, Meta{Hook: nf.HookInput})
		if r.Decision.Action != policies.ActionAccept || r.Verdict.Kind != Accept || r.Verdict.Action == nf.MarkOffload {
			t.Fatalf("SYN %d: %s, verdict %s %v; want a plain accept, no offload", i, r.Decision.Action, r.Verdict.Kind, r.Verdict.Action)
		}
	}
	r := w.Process(ack, Meta{Hook: nf.HookInput, Mark: m.EstablishedBit()})
	if r.Cached || r.Decision.Action != policies.ActionDrop {
		t.Fatalf("established ACK: %s (cached %v), want dropped by est-drop", r.Decision.Action, r.Cached)
	}
}
