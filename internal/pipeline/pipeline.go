package pipeline

import (
	"sync/atomic"
	"time"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/l7"
	"github.com/fwagent/fwagent/internal/l7/quic"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

// Policy is a compiled program together with the generation the agent gave
// it. Workers load it once per packet; a reload swaps the pointer.
type Policy struct {
	Program *policies.Program
	Gen     uint32

	// hits counts decisions per rule: [0] the hook defaults, [i+1] rule i.
	// NewShared and SetPolicy size it; a Policy never given to them counts
	// nothing.
	hits []atomic.Uint64
}

// Meta is what the packet source knows about a packet besides its bytes.
type Meta struct {
	Hook  nf.Hook
	InIf  string
	OutIf string
	// Mark is the packet mark as queued (0 when the kernel sent none).
	Mark uint32
	// Now is a monotonic time in nanoseconds.
	Now int64
	// HasUID/UID and HasGID/GID are the owner of the packet's local socket
	// as the kernel queued it (absent without a full socket).
	HasUID, HasGID bool
	UID, GID       uint32
	// Cut says data may stop short of the packet's end: a copy the kernel
	// cut at the queue's copy range (NFQA_CAP_LEN was sent), or a frame a
	// capture's snap length cut. It is decoded with DecodeHeaders (the
	// headers must be whole), its length is what the IP header claims, not
	// len(data), and L7 fields read what is there.
	Cut bool
}

// Result is everything the pipeline decided about a packet.
type Result struct {
	Verdict  Verdict
	Decision policies.Decision
	State    nf.State
	// DecodeErr is set when the packet could not be decoded; the verdict is
	// then the policy's on_error for the hook.
	DecodeErr error
	// Looped is set when the packet came back still carrying one of the
	// agent's action marks (the kernel rule meant to consume it did not):
	// it is accepted rather than queued forever.
	Looped bool
	// Cached is set when the flow's cached decision was reused.
	Cached bool
}

// Shared is the state all workers of one agent share.
type Shared struct {
	policy atomic.Pointer[Policy]
	marks  nf.Marks
	flows  *conntrack.Table
	// kernelState: the state bits of every packet's mark are the kernel's
	// conntrack view (the live queue), and `state` is read from them.
	kernelState bool
	// quic follows QUIC Initials per flow for tls_sni rules on UDP.
	quic  *quicNames
	stats Counters
	// latency holds the sampled Process times.
	latency latencyHist
	// cgroups finds sockets' cgroups for cgroup rules; nil: none match.
	cgroups policies.CgroupFinder
	// streams holds the TCP streams L7 rules read across segments; nil
	// without a flow table.
	streams *streamTable
}

// NewShared starts with policy p. flows may be nil: every packet is then
// decided on its own, with state from the kernel's established hint only.
func NewShared(p *Policy, marks nf.Marks, flows *conntrack.Table) *Shared {
	s := &Shared{marks: marks, flows: flows, quic: newQUICNames()}
	if flows != nil {
		s.streams = newStreamTable(flows, DefaultStreamMemory)
	}
	p.initHits(nil)
	s.policy.Store(p)
	return s
}

// UseKernelState makes the state bits of each packet's mark (nf.Marks.State,
// set by the kernel rules before the queue rule) the packet's `state`, on
// every packet, whatever the flow tracker thinks: the live path, where
// kernel-compiled `state` matches read the same bits, so both paths agree
// (#13). Without it (captures, tests) the tracker decides, taking the
// established and related bits as hints. Call it before any worker runs.
func (s *Shared) UseKernelState() { s.kernelState = true }

// SetPolicy makes p the policy for every packet processed after it returns.
// p's rule hit counters start from those of the rules of the same name in
// the policy it replaces.
func (s *Shared) SetPolicy(p *Policy) {
	p.initHits(s.policy.Load())
	s.policy.Store(p)
}

// SetCgroupFinder gives cgroup rules a way to learn a packet's socket
// cgroup. Call it before the first packet; nil (the default) makes cgroup
// rules match nothing.
func (s *Shared) SetCgroupFinder(f policies.CgroupFinder) { s.cgroups = f }

// Policy is the policy in force.
func (s *Shared) Policy() *Policy { return s.policy.Load() }

// Marks is the mark layout in use.
func (s *Shared) Marks() nf.Marks { return s.marks }

// Flows is the flow table, or nil.
func (s *Shared) Flows() *conntrack.Table { return s.flows }

// Stats is a snapshot of the counters.
func (s *Shared) Stats() Stats { return s.stats.snapshot() }

// StreamStats is a snapshot of the L7 stream table (zero without a flow
// table).
func (s *Shared) StreamStats() StreamStats {
	if s.streams == nil {
		return StreamStats{}
	}
	return s.streams.stats()
}

// Worker runs the pipeline for one goroutine at a time.
type Worker struct {
	shared *Shared
	dec    *packet.Decoder
	pkt    packet.Packet
	in     policies.Input
	// name holds the server name the QUIC reassembly gives in.
	name [quic.MaxName]byte
	// seq counts packets processed, to time one in latencySample.
	seq uint32
	// ahead is ProcessBatch's scratch: the packets of one group, decoded,
	// with their flow lookups started. It lives apart from the fields
	// Process uses on every packet, which it slowed when inline (see
	// bench/README.md, Figures behind design choices).
	ahead *[lookaheadGroup]lookahead
	// lookaheadMin is lookaheadMinFlows; tests lower it to reach the
	// lookahead path with a small table.
	lookaheadMin int
	// sc answers Decide's questions about the packet's TCP stream.
	sc streamCtx
}

type lookahead struct {
	pkt  packet.Packet
	la   conntrack.Lookahead
	done bool // decided before the flow lookup (looped or undecodable)
}

// lookaheadGroup is how many packets ProcessBatch starts flow lookups for
// before deciding the first. conntrack's BenchmarkLookupHitBatch measured 8
// best: fewer leave memory latency exposed, more overflow the CPU's
// outstanding-miss buffers.
const lookaheadGroup = 8

// lookaheadMinFlows is the table size from which ProcessBatch starts
// lookups early: ~4 MB of flows, more than a core's L2 cache. Below it the
// table is mostly cached and the early start only costs (verdict's
// BenchmarkBatchDecide; see bench/README.md, Figures behind design choices).
const lookaheadMinFlows = 32 << 10

// NewWorker makes a worker on shared state.
func (s *Shared) NewWorker() *Worker {
	return &Worker{
		shared:       s,
		dec:          packet.NewDecoder(),
		ahead:        new([lookaheadGroup]lookahead),
		lookaheadMin: lookaheadMinFlows,
	}
}

// Packet is the packet the last Process call decoded; valid until the next
// one (ProcessBatch decodes into its own scratch and leaves it alone).
func (w *Worker) Packet() *packet.Packet { return &w.pkt }

// Process decides one packet. data starts at the IP header and must stay
// valid until Process returns; nothing keeps it after.
func (w *Worker) Process(data []byte, m Meta) Result {
	// Timing every packet would cost two clock reads each; a sample keeps
	// the latency histogram honest at no measurable cost.
	if w.seq++; w.seq%latencySample != 0 {
		return w.process(data, m)
	}
	t0 := time.Now()
	r := w.process(data, m)
	w.shared.latency.observe(time.Since(t0))
	return r
}

func (w *Worker) process(data []byte, m Meta) Result {
	pol := w.shared.policy.Load()
	var r Result
	if w.begin(pol, data, &m, &w.pkt, &r) {
		return r
	}
	return w.finish(pol, &w.pkt, packetLen(data, &m, &w.pkt), &m, nil)
}

// ProcessBatch decides the packets data[i], described by meta[i], into
// out[i], as Process would one after another, in order. It starts the flow
// lookups of several packets before deciding the first, so that in a flow
// table much larger than the CPU cache their memory loads overlap (see
// conntrack.Lookahead): at a million flows a lookup costs ~4x less than
// Process's. The packets' data must stay valid until it returns.
func (w *Worker) ProcessBatch(data [][]byte, meta []Meta, out []Result) {
	for len(data) > 0 {
		n := min(len(data), lookaheadGroup)
		// One packet in latencySample is timed, as in Process; a group
		// is timed whole and its time shared by its packets.
		seq := w.seq
		w.seq += uint32(n)
		if seq/latencySample == w.seq/latencySample {
			w.processGroup(data[:n], meta[:n], out[:n])
		} else {
			t0 := time.Now()
			w.processGroup(data[:n], meta[:n], out[:n])
			w.shared.latency.observe(time.Since(t0) / time.Duration(n))
		}
		data, meta, out = data[n:], meta[n:], out[n:]
	}
}

func (w *Worker) processGroup(data [][]byte, meta []Meta, out []Result) {
	pol := w.shared.policy.Load()
	flows := w.shared.flows
	// In a table the cache holds, starting lookups early saves nothing and
	// costs a lock and a few prefetches a packet.
	look := flows != nil && flows.Len() >= w.lookaheadMin
	ahead := w.ahead[:len(data)]
	for i := range ahead {
		a := &ahead[i]
		out[i] = Result{}
		a.done = w.begin(pol, data[i], &meta[i], &a.pkt, &out[i])
		if look && !a.done {
			flows.Prefetch(&a.pkt, &a.la)
		}
	}
	if look {
		for i := range ahead {
			if !ahead[i].done {
				flows.PrefetchEntry(&ahead[i].la)
			}
		}
	}
	for i := range ahead {
		a := &ahead[i]
		if a.done {
			continue
		}
		var la *conntrack.Lookahead
		if look {
			la = &a.la
		}
		out[i] = w.finish(pol, &a.pkt, packetLen(data[i], &meta[i], &a.pkt), &meta[i], la)
	}
}

// begin decodes data into pkt, unless the packet is decided without it: a
// packet that came back with the agent's mark, or one that does not decode.
// It reports whether it decided the packet, into *r, which must be zero.
func (w *Worker) begin(pol *Policy, data []byte, m *Meta, pkt *packet.Packet, r *Result) (done bool) {
	s := w.shared
	if a, _, _ := s.marks.Decode(m.Mark); a != nf.MarkNone {
		r.Looped = true
		r.Verdict = Verdict{Kind: Accept}
		s.stats.add(r, m.Hook, len(data))
		return true
	}

	var err error
	if m.Cut {
		err = w.dec.DecodeHeaders(data, pkt)
	} else {
		err = w.dec.Decode(data, pkt)
	}
	if err != nil {
		r.DecodeErr = err
		r.Decision = policies.Decision{Action: pol.Program.OnError(m.Hook), Rule: policies.NoRule}
		if r.Decision.Action == policies.ActionAccept {
			r.Verdict = Verdict{Kind: Accept}
		} else {
			r.Verdict = Verdict{Kind: Drop}
		}
		s.stats.add(r, m.Hook, len(data))
		return true
	}
	return false
}

// packetLen is the length of the packet data was copied from.
func packetLen(data []byte, m *Meta, pkt *packet.Packet) int {
	if m.Cut {
		return max(len(data), pkt.Length)
	}
	return len(data)
}

// finish tracks and decides the decoded packet pkt of length bytes. la is
// its flow lookup as started by conntrack's Prefetch, or nil.
//
// It is one function, longer than the house's 80 lines, on purpose: split
// into input, track, cache and decide steps it cost every packet more (see
// bench/README.md, "Figures behind design choices").
func (w *Worker) finish(pol *Policy, pkt *packet.Packet, length int, m *Meta, la *conntrack.Lookahead) Result {
	s := w.shared
	var r Result
	// begin passed only packets without an action, so the bits above it
	// are the kernel's state bits.
	kernelState := s.marks.State(m.Mark)
	kernelEstablished := kernelState == nf.StateEstablished
	in := &w.in
	in.Pkt = pkt
	in.Hook, in.InIf, in.OutIf, in.Now = m.Hook, m.InIf, m.OutIf, m.Now
	in.HasUID, in.UID, in.HasGID, in.GID = m.HasUID, m.UID, m.HasGID, m.GID
	in.Cgroups = s.cgroups
	in.State = nf.StateNew
	in.ServerName, in.NameState, in.Streams = nil, l7.NameUnknown, nil
	if kernelEstablished {
		in.State = nf.StateEstablished
	}

	// The kernel's conntrack saw the flows the agent did not queue (the
	// host's own outgoing traffic when only input is filtered, flows older
	// than the agent): an ICMP error it calls related is related.
	kernelRelated := kernelState == nf.StateRelated
	if kernelRelated {
		in.State = nf.StateRelated
	}

	var flow conntrack.Result
	// cached is the flow's cache from this policy generation (both
	// directions' decisions), 0 when it has none.
	var cached uint64
	tracked := s.flows != nil
	if tracked {
		if la != nil {
			flow = s.flows.TrackAhead(pkt, la, length, kernelEstablished, m.Now)
		} else {
			flow = s.flows.TrackAt(pkt, length, kernelEstablished, m.Now)
		}
		in.State = flow.State
		if kernelRelated && flow.State != nf.StateEstablished {
			in.State = nf.StateRelated
		}
	}
	if s.kernelState {
		in.State = kernelState
	}
	if tracked {
		var ok bool
		cached, ok = flow.Cached(pol.Gen)
		fresh := false
		// A client's QUIC packets go to the reassembly until the flow has
		// a decision, and after it only those with a long header (short
		// ones, the bulk of a connection, cost nothing more): one of them
		// may start a new connection on the same flow, which the cached
		// decision does not speak for.
		if !flow.Reply && flow.Flow.Valid() && pkt.Proto == packet.ProtoUDP && pkt.HasL4 && !pkt.NonFirstFragment &&
			(!ok || len(pkt.Payload) > 0 && pkt.Payload[0]&0x80 != 0) && pol.Program.ReassemblesQUIC() {
			in.ServerName, in.NameState, fresh = s.quic.name(flow.Flow, pkt.Payload, w.name[:], m.Now)
		}
		switch {
		case fresh && ok:
			// Until the new connection is decided, its packets must not
			// meet the old one's decision either.
			cached = forgetDirection(cached, flow.Reply)
			s.flows.SetCache(flow.Flow, conntrack.Cache{Gen: pol.Gen, Value: cached})
		case ok:
			r.Decision, r.Cached = decodeCache(cached, m.Hook, flow.Reply, in.State)
		}
	}
	if !r.Cached {
		// Only TCP packets of tracked flows under a policy with a
		// stream-reading rule get a stream; Decide asks only if such a
		// rule is a candidate.
		if s.streams != nil && pkt.Proto == packet.ProtoTCP && pkt.HasL4 && flow.Flow.Valid() && pol.Program.ReadsStreams() {
			w.sc.begin(s.streams, pkt, flow.Flow, flow.Reply)
			in.Streams = &w.sc
		}
		r.Decision = pol.Program.Decide(in)
		if in.Streams != nil {
			w.sc.end(r.Decision)
		}
		if tracked {
			// Starting from cached keeps the other direction's decision.
			if v, ok := encodeCache(cached, r.Decision, m.Hook, flow.Reply, in.State); ok {
				s.flows.SetCache(flow.Flow, conntrack.Cache{Gen: pol.Gen, Value: v})
			}
		}
	}
	r.State = in.State
	r.Verdict = Encode(r.Decision, m.Mark, s.marks, pol.Gen)
	if !r.Decision.Pending {
		// A pending accept is the rule waiting, not deciding; the
		// stream table counts those.
		pol.hit(r.Decision.Rule)
	}
	s.stats.add(&r, m.Hook, length)
	return r
}
