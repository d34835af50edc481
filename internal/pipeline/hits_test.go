package pipeline

import (
	"net/netip"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/testpolicy"
	"github.com/fwagent/fwagent/policies"
)

func hitsProgram(t *testing.T, text string) *policies.Program {
	t.Helper()
	return testpolicy.Compile(t, "hits.yaml", text)
}

const hitsPolicyA = `
version: 1
default: {input: drop}
rules:
  - name: ssh
    hook: input
    match: {proto: tcp, dport: 22}
    action: accept
  - name: telnet
    hook: input
    match: {proto: tcp, dport: 23}
    action: drop
`

// hitsPolicyB drops ssh, keeps telnet under a new index, adds web.
const hitsPolicyB = `
version: 1
default: {input: drop}
rules:
  - name: web
    hook: input
    match: {proto: tcp, dport: 80}
    action: accept
  - name: telnet
    hook: input
    match: {proto: tcp, dport: 23}
    action: drop
`

func hitsPacket(t *testing.T, sport, dport uint16) []byte {
	t.Helper()
	b, err := packet.Build(packet.Spec{
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"),
		Proto: packet.ProtoTCP, SrcPort: sport, DstPort: dport, TCPFlags: packet.TCPSyn,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRuleHits(t *testing.T) {
	marks, err := nf.NewMarks(nf.DefaultMarkMask)
	if err != nil {
		t.Fatal(err)
	}
	for _, tracked := range []bool{false, true} {
		var flows *conntrack.Table
		if tracked {
			flows = conntrack.New(conntrack.Config{})
		}
		s := NewShared(&Policy{Program: hitsProgram(t, hitsPolicyA), Gen: 1}, marks, flows)
		w := s.NewWorker()
		in := Meta{Hook: nf.HookInput}
		send := func(sport, dport uint16, n int) {
			for range n {
				w.Process(hitsPacket(t, sport, dport), in)
			}
		}
		send(1000, 22, 5) // one flow: cached decisions count too
		send(1001, 23, 3)
		send(1002, 9, 2)            // default
		w.Process([]byte{0x45}, in) // undecodable: no rule decided it

		byRule, defaults := s.Policy().Hits()
		if len(byRule) != 2 || byRule[0] != 5 || byRule[1] != 3 || defaults != 2 {
			t.Fatalf("tracked=%v: hits %v default %d, want [5 3] default 2", tracked, byRule, defaults)
		}

		// A reload keeps the counts of rules that keep their name, whatever
		// their index, and starts new rules at zero.
		s.SetPolicy(&Policy{Program: hitsProgram(t, hitsPolicyB), Gen: 2})
		send(1003, 80, 1)
		send(1001, 23, 1)
		byRule, defaults = s.Policy().Hits()
		if len(byRule) != 2 || byRule[0] != 1 || byRule[1] != 4 || defaults != 2 {
			t.Fatalf("tracked=%v: after reload hits %v default %d, want [1 4] default 2", tracked, byRule, defaults)
		}
	}
}

func TestHitsOfUnsharedPolicy(t *testing.T) {
	p := &Policy{Program: hitsProgram(t, hitsPolicyA)}
	p.hit(0) // never sized: counts nothing, does not panic
	if byRule, d := p.Hits(); byRule != nil || d != 0 {
		t.Fatalf("hits %v %d, want none", byRule, d)
	}
}

func TestLatencySampled(t *testing.T) {
	marks, err := nf.NewMarks(nf.DefaultMarkMask)
	if err != nil {
		t.Fatal(err)
	}
	s := NewShared(&Policy{Program: hitsProgram(t, hitsPolicyA), Gen: 1}, marks, nil)
	w := s.NewWorker()
	p := hitsPacket(t, 1000, 22)
	for range 3*latencySample + latencySample/2 {
		w.Process(p, Meta{Hook: nf.HookInput})
	}
	l := s.Latency()
	if l.Count() != 3 {
		t.Fatalf("timed %d packets of %d, want 3 (one in %d)", l.Count(), 3*latencySample+latencySample/2, latencySample)
	}
	if l.Sample != latencySample || len(l.Counts) != len(l.Bounds)+1 || l.Sum <= 0 {
		t.Fatalf("snapshot %+v malformed", l)
	}

	// ProcessBatch samples at the same rate, whatever the read sizes.
	data := make([][]byte, 37)
	for i := range data {
		data[i] = p
	}
	meta, out := make([]Meta, len(data)), make([]Result, len(data))
	for range 4 * latencySample / len(data) {
		w.ProcessBatch(data, meta, out)
	}
	sent := 3*latencySample + latencySample/2 + 4*latencySample/len(data)*len(data)
	if got, want := s.Latency().Count(), uint64(sent/latencySample); got != want {
		t.Fatalf("timed %d of %d packets after ProcessBatch, want %d", got, sent, want)
	}
}

func TestLatencyBuckets(t *testing.T) {
	tests := []struct {
		d      time.Duration
		bucket int
	}{
		{0, 0},
		{128, 0},
		{129, 1},
		{256, 1},
		{257, 2},
		{time.Microsecond, 3}, // 1000 ns <= 1024
		{1 << 24, latencyBuckets - 1},
		{1<<24 + 1, latencyBuckets}, // +Inf
		{time.Hour, latencyBuckets},
	}
	for _, tt := range tests {
		var h latencyHist
		h.observe(tt.d)
		for i := range h.counts {
			want := uint64(0)
			if i == tt.bucket {
				want = 1
			}
			if got := h.counts[i].Load(); got != want {
				t.Errorf("%v: bucket %d holds %d, want %d", tt.d, i, got, want)
			}
		}
	}
}
