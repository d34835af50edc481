package conntrack

import (
	"unsafe"

	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/prefetch"
)

// Lookahead carries one packet's flow key, hashed, from Prefetch to
// TrackAhead. Its zero value is ready for Prefetch.
//
// A lookup in a table much larger than the CPU cache waits for two memory
// loads in a row, the index slot and then the entry it points to (see
// bench/README.md, In-process path). A caller holding a batch of packets
// calls Prefetch for each, then PrefetchEntry for each, then TrackAhead for
// each: the batch's loads are in flight together instead of one after
// another. BenchmarkLookupHit and BenchmarkLookupHitBatch measure
// both ways.
type Lookahead struct {
	k     flowKey
	h     uint64 // set when kd is kindFlow
	kd    kind
	fromB bool
}

// Prefetch classifies p, hashes its flow key into la and starts loading the
// index line the lookup will probe. It takes no lock.
func (t *Table) Prefetch(p *packet.Packet, la *Lookahead) {
	if t.prepare(p, la) != kindFlow {
		return
	}
	s := &t.shards[la.h>>t.shardShift]
	prefetch.Line(s.slotsAddr.Load() + uintptr(la.h&0xffffffff&s.slotsMask.Load())*8)
}

// PrefetchEntry finds la's flow in the index, which Prefetch should have
// loaded by now, and starts loading its entry. It takes the shard's lock
// only to read the index, and reads no entry: comparing keys would wait for
// the very load it means to start.
func (t *Table) PrefetchEntry(la *Lookahead) {
	if la.kd != kindFlow {
		return
	}
	s := &t.shards[la.h>>t.shardShift]
	s.mu.Lock()
	e := s.peek(la.h)
	s.mu.Unlock()
	if e != nil {
		// A 112-byte entry spans two or three cache lines, and Track
		// touches all of them. Each prefetch that misses the TLB costs
		// a page walk, so none is spent twice on the same line.
		a := uintptr(unsafe.Pointer(e))
		last := a + unsafe.Sizeof(*e) - 1
		prefetch.Line(a)
		prefetch.Line(last)
		if last/64-a/64 == 2 {
			prefetch.Line(a + 64)
		}
	}
}

// TrackAhead is TrackAt for the packet p that Prefetch filled la from; p
// must not have changed since.
func (t *Table) TrackAhead(p *packet.Packet, la *Lookahead, length int, kernelEstablished bool, now int64) Result {
	return t.track(p, la, length, kernelEstablished, now)
}
