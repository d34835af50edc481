package pipeline

import (
	"testing"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/testpacket"
	"github.com/fwagent/fwagent/policies"
)

// TestProcessCutCopy: a packet the kernel cut at the queue's copy range
// (Meta.Cut) is decided on its headers, as the whole packet would be, and
// its length is the IP header's; without Cut the same bytes are a truncated
// packet and get on_error.
func TestProcessCutCopy(t *testing.T) {
	const pol = `version: 1
default: {input: drop}
on_error: {input: drop}
rules:
  - name: big
    match: {proto: tcp, dport: 80, length: 1000-65535}
    action: accept
    offload: false
`
	shared := NewShared(&Policy{Program: compile(t, pol), Gen: 1}, testMarks(t), conntrack.New(conntrack.Config{}))
	w := shared.NewWorker()
	whole := testpacket.Build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 80,
		TCPFlags: packet.TCPSyn, Payload: make([]byte, 3000)})
	cut := whole[:policies.HeaderBytes]

	for _, batch := range []bool{false, true} {
		process := func(data []byte, m Meta) Result {
			if !batch {
				return w.Process(data, m)
			}
			out := make([]Result, 1)
			w.ProcessBatch([][]byte{data}, []Meta{m}, out)
			return out[0]
		}
		r := process(cut, Meta{Hook: nf.HookInput, Cut: true})
		if r.DecodeErr != nil || r.Decision.Effective() != policies.ActionAccept || shared.Policy().Program.RuleName(r.Decision.Rule) != "big" {
			t.Fatalf("batch=%v: cut copy: err=%v rule=%q action=%s, want rule big to accept it", batch, r.DecodeErr, shared.Policy().Program.RuleName(r.Decision.Rule), r.Decision.Effective())
		}
		if r = process(cut, Meta{Hook: nf.HookInput}); r.DecodeErr == nil || r.Verdict.Kind != Drop {
			t.Fatalf("batch=%v: short packet not marked cut: err=%v verdict=%s, want a decode error and on_error's drop", batch, r.DecodeErr, r.Verdict.Kind)
		}
	}
	if got := packetLen(cut, &Meta{Cut: true}, &packet.Packet{Length: len(whole)}); got != len(whole) {
		t.Errorf("length of a cut copy = %d, want the IP length %d", got, len(whole))
	}
}
