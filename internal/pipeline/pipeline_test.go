package pipeline

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"

	"github.com/fwagent/fwagent/internal/testing/testpacket"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/policygen"
	"github.com/fwagent/fwagent/internal/testing/testpolicy"
	"github.com/fwagent/fwagent/policies"
)

func testMarks(t testing.TB) nf.Marks {
	m, err := nf.NewMarks(nf.DefaultMarkMask)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func compile(t testing.TB, text string) *policies.Program {
	t.Helper()
	return testpolicy.Compile(t, "test.yaml", text)
}

func TestEncode(t *testing.T) {
	m := testMarks(t)
	const gen = 9
	const old = 0x0000_4000 // a kube-proxy bit outside the mask survives
	tests := []struct {
		name   string
		d      policies.Decision
		kind   Kind
		action nf.MarkAction
		id     uint32
		mark   uint32 // checked when kind is Accept with SetMark
	}{
		{"accept", policies.Decision{Action: policies.ActionAccept, Rule: 0}, Accept, nf.MarkNone, 0, 0},
		{"drop silently", policies.Decision{Action: policies.ActionDrop, Rule: 3}, Drop, nf.MarkNone, 0, 0},
		{"drop and log", policies.Decision{Action: policies.ActionDrop, Rule: 3, Log: true}, Repeat, nf.MarkDropLog, 4, 0},
		{"default drop and log", policies.Decision{Action: policies.ActionDrop, Rule: policies.NoRule, Log: true}, Repeat, nf.MarkDropLog, 0, 0},
		{"reject", policies.Decision{Action: policies.ActionReject, Rule: 1}, Repeat, nf.MarkReject, 2, 0},
		{"reject and log", policies.Decision{Action: policies.ActionReject, Rule: 1, Log: true}, Repeat, nf.MarkRejectLog, 2, 0},
		{"accept and log", policies.Decision{Action: policies.ActionAccept, Rule: 5, Log: true}, Repeat, nf.MarkAcceptLog, 6, 0},
		{"audit drop", policies.Decision{Action: policies.ActionDrop, Rule: 2, Audit: true}, Repeat, nf.MarkWouldDrop, 3, 0},
		{"audit reject", policies.Decision{Action: policies.ActionReject, Rule: 2, Audit: true, Log: true}, Repeat, nf.MarkWouldReject, 3, 0},
		{"audit accept", policies.Decision{Action: policies.ActionAccept, Rule: 2, Audit: true}, Accept, nf.MarkNone, 0, 0},
		{"offload", policies.Decision{Action: policies.ActionAccept, Rule: 0, Offload: true}, Repeat, nf.MarkOffload, gen, 0},
		{"accept with mark", policies.Decision{Action: policies.ActionAccept, Rule: 0, SetMark: true, Mark: 0x42}, Accept, nf.MarkNone, 0, 0x42},
		{"mark inside mask is stripped", policies.Decision{Action: policies.ActionAccept, Rule: 0, SetMark: true, Mark: 0x0001_0042}, Accept, nf.MarkNone, 0, 0x42},
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
	in := Meta{Hook: nf.HookInput, Now: 1}

	syn := testpacket.Build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 22, TCPFlags: packet.TCPSyn})
	r := w.Process(syn, in)
	if r.Verdict.Kind != Repeat || r.Verdict.Action != nf.MarkOffload || r.State != nf.StateNew {
		t.Fatalf("ssh SYN: verdict %s/%s state %s, want an offload repeat for a new flow", r.Verdict.Kind, r.Verdict.Action, r.State)
	}
	if _, _, id := m.Decode(r.Verdict.Mark); id != 7 {
		t.Fatalf("offload carries generation %d, want 7", id)
	}
	// The SYN's decision is not cached: the skipped `established` rule
	// will match later packets of the flow. Once established, that rule
	// decides, and its decision is reused for the rest of the flow.
	synAck := testpacket.Build(t, packet.Spec{Src: server, Dst: client, Proto: packet.ProtoTCP, SrcPort: 22, DstPort: 40000, TCPFlags: packet.TCPSyn | packet.TCPAck})
	ack := testpacket.Build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 22, TCPFlags: packet.TCPAck})
	w.Process(synAck, Meta{Hook: nf.HookInput, Now: 2})
	r = w.Process(ack, in)
	if r.Cached || r.State != nf.StateEstablished || shared.Policy().Program.RuleName(r.Decision.Rule) != "established" {
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

	telnet := testpacket.Build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 40001, DstPort: 23, TCPFlags: packet.TCPSyn})
	r = w.Process(telnet, in)
	if a, _, id := m.Decode(r.Verdict.Mark); r.Verdict.Kind != Repeat || a != nf.MarkDropLog || id != 3 {
		t.Fatalf("telnet: %s %v id %d, want a drop+log repeat for rule 3 (index 2 + 1)", r.Verdict.Kind, a, id)
	}

	other := testpacket.Build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoUDP, SrcPort: 5000, DstPort: 9})
	r = w.Process(other, in)
	if a, _, id := m.Decode(r.Verdict.Mark); r.Decision.Rule != policies.NoRule || a != nf.MarkDropLog || id != 0 {
		t.Fatalf("default: rule %d action %v id %d, want the logged default drop", r.Decision.Rule, a, id)
	}

	// Undecodable packets get on_error: drop on input, accept on output.
	if r = w.Process([]byte{0x45, 0, 0}, in); r.DecodeErr == nil || r.Verdict.Kind != Drop {
		t.Fatalf("truncated packet on input: err=%v verdict=%s, want a decode error and drop", r.DecodeErr, r.Verdict.Kind)
	}
	if r = w.Process([]byte{0x45, 0, 0}, Meta{Hook: nf.HookOutput}); r.Verdict.Kind != Accept {
		t.Fatalf("truncated packet on output: verdict %s, want accept", r.Verdict.Kind)
	}

	// A packet that still carries an action mark came back unconsumed: it
	// is accepted, never queued again in a loop.
	r = w.Process(telnet, Meta{Hook: nf.HookInput, Mark: m.Encode(0, nf.MarkOffload, 1)})
	if !r.Looped || r.Verdict.Kind != Accept {
		t.Fatalf("looped packet: looped=%v verdict=%s, want an accept", r.Looped, r.Verdict.Kind)
	}

	// The kernel's established hint picks up a flow the tracker never saw.
	mid := testpacket.Build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 41000, DstPort: 8080, TCPFlags: packet.TCPAck})
	r = w.Process(mid, Meta{Hook: nf.HookInput, Mark: m.EstablishedBit()})
	if r.State != nf.StateEstablished || r.Decision.Effective() != policies.ActionAccept {
		t.Fatalf("picked-up flow: state %s verdict %s, want established and accepted", r.State, r.Decision.Effective())
	}

	st := shared.Stats()
	if st.DecodeErrors != 2 || st.Looped != 1 || st.Cached != 1 {
		t.Fatalf("stats %+v: want 2 decode errors, 1 looped, 1 cached", st)
	}
	if st.Packets[nf.HookInput][OutDrop] != 3 {
		t.Fatalf("input drops counted %d, want 3 (telnet, default, undecodable)", st.Packets[nf.HookInput][OutDrop])
	}
}

// mixedReplay is a replay of mixed traffic: TCP flows (handshake, data),
// UDP both ways, IPv6, ICMP echo, a DNS query, and packets no rule matches.
func mixedReplay(t testing.TB) [][]byte {
	var out [][]byte
	add := func(s packet.Spec) { out = append(out, testpacket.Build(t, s)) }
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
					w.Process(replay[i%len(replay)], Meta{Hook: nf.HookInput, Now: int64(i)})
					i++
				}
			})
		}
	}
}

func BenchmarkProcessBatch(b *testing.B) {
	m := testMarks(b)
	replay := mixedReplay(b)
	meta := make([]Meta, len(replay))
	out := make([]Result, len(replay))
	for _, n := range []int{10, 1000, 10000} {
		prog := compile(b, policygen.Generate(policygen.Options{Rules: n, Stateful: true}))
		w := NewShared(&Policy{Program: prog, Gen: 1}, m, conntrack.New(conntrack.Config{})).NewWorker()
		now := int64(0) // monotonic across the benchmark's runs, as a clock is
		next := func() {
			for i := range meta {
				now++
				meta[i] = Meta{Hook: nf.HookInput, Now: now}
			}
		}
		next()
		w.ProcessBatch(replay, meta, out) // the flows are created here, not measured
		b.Run(fmt.Sprintf("rules=%d/tracked=true", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				next()
				w.ProcessBatch(replay, meta, out)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(replay)), "ns/packet")
		})
	}
}

// BenchmarkProcessManyFlows decides one packet of each of a million UDP
// flows, in random order, against a 1,000-rule policy: the flow table is
// far larger than the CPU cache, as on a busy host. one-by-one is Process,
// batch is ProcessBatch over reads of 64 packets, as the queue reader
// delivers them.
func BenchmarkProcessManyFlows(b *testing.B) {
	const flows = 1 << 20
	m := testMarks(b)
	prog := compile(b, policygen.Generate(policygen.Options{Rules: 1000, Stateful: true}))
	tmpl := testpacket.Build(b, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 9000, Payload: make([]byte, 36)})
	// The packets lie in memory in the order they are read, as a queue
	// read delivers them; their flows are in random order.
	order := rand.New(rand.NewPCG(1, 2)).Perm(flows)
	buf := make([]byte, flows*len(tmpl))
	pkts := make([][]byte, flows)
	for i, f := range order {
		p := buf[i*len(tmpl) : (i+1)*len(tmpl) : (i+1)*len(tmpl)]
		copy(p, tmpl)
		// The decoder checks no checksum, so patching the source address
		// (10.x.y.z) and port is enough to make a new flow.
		p[12], p[13], p[14], p[15] = 10, byte(f>>16), byte(f>>8), byte(f)
		p[20], p[21] = byte((1024+f%60000)>>8), byte(1024+f%60000)
		pkts[i] = p
	}
	shared := NewShared(&Policy{Program: prog, Gen: 1}, m, conntrack.New(conntrack.Config{MaxFlows: flows}))
	w := shared.NewWorker()
	const read = 64
	meta := make([]Meta, read)
	out := make([]Result, read)
	now := int64(1)
	for i := 0; i < flows; i += read {
		for j := range meta {
			meta[j] = Meta{Hook: nf.HookInput, Now: now}
		}
		w.ProcessBatch(pkts[i:i+read], meta, out)
	}
	if n := shared.Flows().Len(); n != flows {
		b.Fatalf("table holds %d flows, want %d", n, flows)
	}
	b.Run("one-by-one", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			w.Process(pkts[i], Meta{Hook: nf.HookInput, Now: now})
			if i++; i == flows {
				i = 0
			}
		}
	})
	b.Run("batch", func(b *testing.B) {
		b.ReportAllocs()
		for j := range meta {
			meta[j] = Meta{Hook: nf.HookInput, Now: now}
		}
		i := 0
		for b.Loop() {
			w.ProcessBatch(pkts[i:i+read], meta, out)
			if i += read; i == flows {
				i = 0
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*read), "ns/packet")
	})
}

// batchReplay is mixedReplay with what ProcessBatch decides before any
// flow lookup mixed in (undecodable packets, packets back with the agent's
// mark), at positions that fall inside lookahead groups.
func batchReplay(t testing.TB, m nf.Marks) ([][]byte, []Meta) {
	replay := mixedReplay(t)
	var data [][]byte
	var meta []Meta
	for i, p := range replay {
		mt := Meta{Hook: nf.HookInput, Now: int64(i + 1)}
		switch i % 11 {
		case 3:
			data = append(data, []byte{0x45, 0, 0})
			meta = append(meta, mt)
		case 7:
			data = append(data, p)
			meta = append(meta, Meta{Hook: nf.HookInput, Now: mt.Now, Mark: m.Encode(0, nf.MarkOffload, 1)})
		}
		data = append(data, p)
		meta = append(meta, mt)
	}
	return data, meta
}

// TestProcessBatchMatchesProcess: ProcessBatch decides every packet as
// Process does one by one, including flows whose packets share a lookahead
// group (a handshake's SYN, SYN-ACK and ACK), and counts the same.
func TestProcessBatchMatchesProcess(t *testing.T) {
	m := testMarks(t)
	prog := compile(t, policygen.Generate(policygen.Options{Rules: 100, Stateful: true}))
	data, meta := batchReplay(t, m)
	// Twice over: the second pass meets established flows and cached
	// decisions.
	data, meta = append(data, data...), append(meta, meta...)
	for i := len(meta) / 2; i < len(meta); i++ {
		meta[i].Now += int64(len(meta))
	}

	one := NewShared(&Policy{Program: prog, Gen: 1}, m, conntrack.New(conntrack.Config{}))
	want := make([]Result, len(data))
	w := one.NewWorker()
	for i := range data {
		want[i] = w.Process(data[i], meta[i])
	}

	for _, size := range []int{1, 5, lookaheadGroup, 13, len(data)} {
		for _, early := range []bool{false, true} {
			name := fmt.Sprintf("batch=%d/lookahead=%v", size, early)
			t.Run(name, func(t *testing.T) {
				batched := NewShared(&Policy{Program: prog, Gen: 1}, m, conntrack.New(conntrack.Config{}))
				got := make([]Result, len(data))
				w := batched.NewWorker()
				if early {
					w.lookaheadMin = 0 // the table is far below the real threshold
				}
				for i := 0; i < len(data); i += size {
					j := min(i+size, len(data))
					w.ProcessBatch(data[i:j], meta[i:j], got[i:j])
				}
				cached := 0
				for i := range data {
					g, w := got[i], want[i]
					if (g.DecodeErr == nil) != (w.DecodeErr == nil) || g.Verdict != w.Verdict || g.Decision != w.Decision ||
						g.State != w.State || g.Looped != w.Looped || g.Cached != w.Cached {
						t.Fatalf("packet %d: batch %+v, one by one %+v", i, g, w)
					}
					if g.Cached {
						cached++
					}
				}
				if cached == 0 {
					t.Fatal("no decision was reused: the replay does not exercise the flow cache")
				}
				if g, w := batched.Stats(), one.Stats(); g != w {
					t.Fatalf("stats: batch %+v, one by one %+v", g, w)
				}
			})
		}
	}
}

func TestProcessBatchAllocatesNothing(t *testing.T) {
	m := testMarks(t)
	prog := compile(t, policygen.Generate(policygen.Options{Rules: 1000, Stateful: true}))
	w := NewShared(&Policy{Program: prog, Gen: 1}, m, conntrack.New(conntrack.Config{})).NewWorker()
	w.lookaheadMin = 0 // the lookahead path, with a small table
	data, meta := batchReplay(t, m)
	out := make([]Result, len(data))
	w.ProcessBatch(data, meta, out) // create the flows first: inserting may grow the table
	// AllocsPerRun rounds down to whole allocations per run; count them
	// all instead, so one allocation in a hundred batches fails too. The
	// count is process-wide, and the runtime or the test framework may
	// allocate in the background now and then: an allocation of
	// ProcessBatch's own shows in every attempt, theirs do not.
	var n uint64
	for range 3 {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for range 100 {
			for i := range meta {
				meta[i].Now += int64(len(meta))
			}
			w.ProcessBatch(data, meta, out)
		}
		runtime.ReadMemStats(&m1)
		if n = m1.Mallocs - m0.Mallocs; n == 0 {
			return
		}
	}
	t.Fatalf("ProcessBatch allocated %d times in 100 batches of %d packets, want 0", n, len(data))
}

func TestProcessAllocatesNothing(t *testing.T) {
	m := testMarks(t)
	replay := mixedReplay(t)
	prog := compile(t, policygen.Generate(policygen.Options{Rules: 1000, Stateful: true}))
	w := NewShared(&Policy{Program: prog, Gen: 1}, m, conntrack.New(conntrack.Config{})).NewWorker()
	for i, p := range replay { // create the flows first: inserting may grow the table
		w.Process(p, Meta{Hook: nf.HookInput, Now: int64(i)})
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		w.Process(replay[i%len(replay)], Meta{Hook: nf.HookInput, Now: int64(len(replay) + i)})
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
	fwd := Meta{Hook: nf.HookForward, Now: 1}
	spec := func(reply bool, flags uint8) []byte {
		if reply {
			return testpacket.Build(t, packet.Spec{Src: server, Dst: client, Proto: packet.ProtoTCP, SrcPort: 443, DstPort: 40000, TCPFlags: flags})
		}
		return testpacket.Build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 443, TCPFlags: flags})
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
