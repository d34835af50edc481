package pipeline

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// initHits sizes p's rule counters and carries over the counts of old's
// rules of the same name, so a rule's hits survive a reload that keeps it
// (a scrape then sees a counter that only goes up). Hits old takes after the
// copy, from workers still finishing a packet under it, are lost: a few
// packets at most per reload.
func (p *Policy) initHits(old *Policy) {
	if p.hits != nil || p.Program == nil {
		return
	}
	n := p.Program.NumRules()
	p.hits = make([]atomic.Uint64, n+1)
	if old == nil || old.Program == nil || len(old.hits) == 0 {
		return
	}
	p.hits[0].Store(old.hits[0].Load())
	byName := make(map[string]int, old.Program.NumRules())
	for i := range old.Program.NumRules() {
		byName[old.Program.RuleName(int32(i))] = i
	}
	for i := range n {
		if j, ok := byName[p.Program.RuleName(int32(i))]; ok {
			p.hits[i+1].Store(old.hits[j+1].Load())
		}
	}
}

// hit counts one decision by rule (policies.NoRule: a hook default).
func (p *Policy) hit(rule int32) {
	if i := uint32(rule + 1); i < uint32(len(p.hits)) {
		p.hits[i].Add(1)
	}
}

// Hits is how many packets each rule decided, by rule index, and how many
// the hook defaults decided. Decisions reused from the flow cache count;
// packets the kernel accepted for an offloaded flow never reach the agent
// and do not.
func (p *Policy) Hits() (byRule []uint64, defaults uint64) {
	if len(p.hits) == 0 {
		return nil, 0
	}
	byRule = make([]uint64, len(p.hits)-1)
	for i := range byRule {
		byRule[i] = p.hits[i+1].Load()
	}
	return byRule, p.hits[0].Load()
}

// latencySample: one packet in this many is timed.
const latencySample = 256

// Latency histogram buckets: powers of two from 2^latencyMinShift ns
// (128 ns) up, latencyBuckets of them; slower packets land in +Inf.
const (
	latencyMinShift = 7
	latencyBuckets  = 18 // up to 2^24 ns ≈ 16.8 ms
)

// latencyHist is a lock-free histogram of sampled Process times.
type latencyHist struct {
	counts [latencyBuckets + 1]atomic.Uint64 // the last is +Inf
	sumNs  atomic.Uint64
}

func (h *latencyHist) observe(d time.Duration) {
	ns := uint64(max(d, 0))
	i := 0
	if ns > 1<<latencyMinShift {
		i = min(bits.Len64(ns-1)-latencyMinShift, latencyBuckets)
	}
	h.counts[i].Add(1)
	h.sumNs.Add(ns)
}

// Latency is a snapshot of the sampled decision latency histogram: Counts[i]
// packets took at most Bounds[i] (and more than Bounds[i-1]); the last count
// is for packets slower than every bound.
type Latency struct {
	Bounds []time.Duration
	Counts []uint64
	Sum    time.Duration
	// Sample is the sampling rate: one packet in Sample is timed.
	Sample int
}

// Count is the number of timed packets.
func (l Latency) Count() uint64 {
	var n uint64
	for _, c := range l.Counts {
		n += c
	}
	return n
}

// Latency is a snapshot of how long Process took, for a sample of packets.
func (s *Shared) Latency() Latency {
	l := Latency{
		Bounds: make([]time.Duration, latencyBuckets),
		Counts: make([]uint64, latencyBuckets+1),
		Sum:    time.Duration(s.latency.sumNs.Load()),
		Sample: latencySample,
	}
	for i := range l.Bounds {
		l.Bounds[i] = time.Duration(1) << (latencyMinShift + i)
	}
	for i := range l.Counts {
		l.Counts[i] = s.latency.counts[i].Load()
	}
	return l
}
