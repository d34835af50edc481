package conntrack

import (
	"net/netip"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
)

// FlowInfo is a copy of one flow, for inspection (tests, diagnostics,
// metrics); Track never builds one.
type FlowInfo struct {
	ID     FlowID
	Family packet.Family
	Proto  uint8
	// Src and Dst are seen from the originator: Src sent the first packet
	// the table saw (for a flow picked up mid-stream, that packet's sender;
	// for an ICMP echo, the requester).
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16   // TCP, UDP, SCTP ports; the echo identifier for ICMP
	State            nf.State // New until a reply was seen, then Established
	TCP              TCPState
	// Packets and Bytes are indexed by direction: 0 original, 1 reply.
	Packets, Bytes [2]uint64
	// Deadline is when the flow expires, on the table's clock.
	Deadline int64
	Cache    Cache
	HasCache bool
}

func (e *entry) info(id FlowID) FlowInfo {
	a, b := e.key.addrs()
	pa, pb := e.key.ports()
	if e.flags&fOrigIsB != 0 {
		a, b, pa, pb = b, a, pb, pa
	}
	fi := FlowInfo{
		ID:       id,
		Family:   e.key.family(),
		Proto:    e.key.proto(),
		Src:      a,
		Dst:      b,
		SrcPort:  pa,
		DstPort:  pb,
		State:    nf.StateNew,
		TCP:      e.tcp,
		Packets:  e.pkts,
		Bytes:    e.bytes,
		Deadline: e.deadline,
	}
	if e.flags&fSeenReply != 0 {
		fi.State = nf.StateEstablished
	}
	if e.flags&fHasCache != 0 {
		fi.Cache = Cache{Gen: e.cacheGen, Value: e.cacheVal}
		fi.HasCache = true
	}
	return fi
}

// Lookup returns a copy of the flow id names, or false if the handle is
// stale.
func (t *Table) Lookup(id FlowID) (FlowInfo, bool) {
	var fi FlowInfo
	ok := t.withFlow(id, func(e *entry) { fi = e.info(id) })
	return fi, ok
}

// Range calls fn with a copy of every flow until fn returns false. It holds
// one shard's lock at a time, so it sees each shard at one instant but not
// the whole table; fn must not call back into the table.
func (t *Table) Range(fn func(FlowInfo) bool) {
	for si := range t.shards {
		s := &t.shards[si]
		s.mu.Lock()
		for idx := range s.used {
			e := s.entry(idx)
			if e.flags&fInUse == 0 {
				continue
			}
			if !fn(e.info(FlowID{shard: uint32(si), idx: idx, ver: e.ver})) {
				s.mu.Unlock()
				return
			}
		}
		s.mu.Unlock()
	}
}
