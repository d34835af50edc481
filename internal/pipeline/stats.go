package pipeline

import (
	"sync/atomic"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/policies"
)

// Counters are the pipeline's packet counters, shared by all workers.
type Counters struct {
	packets   [nf.NumHooks][numOutcomes]atomic.Uint64
	bytes     atomic.Uint64
	decodeErr atomic.Uint64
	looped    atomic.Uint64
	cached    atomic.Uint64
}

// Outcome is a verdict as counted: what finally happens to the packet.
type Outcome uint8

const (
	OutAccept Outcome = iota
	OutDrop
	OutReject
	// OutWouldDrop and OutWouldReject are audit decisions: the packet is
	// accepted, but counting it as accept would hide what enforcing the
	// policy would do.
	OutWouldDrop
	OutWouldReject
	numOutcomes
)

func (o Outcome) String() string {
	switch o {
	case OutAccept:
		return "accept"
	case OutDrop:
		return "drop"
	case OutReject:
		return "reject"
	case OutWouldDrop:
		return "would_drop"
	case OutWouldReject:
		return "would_reject"
	}
	return "unknown"
}

// Stats is a snapshot of Counters.
type Stats struct {
	// Packets by hook and outcome.
	Packets      [nf.NumHooks][numOutcomes]uint64
	Bytes        uint64
	DecodeErrors uint64
	Looped       uint64
	Cached       uint64
}

// Total is the number of packets processed.
func (s Stats) Total() uint64 {
	var n uint64
	for h := range s.Packets {
		for o := range s.Packets[h] {
			n += s.Packets[h][o]
		}
	}
	return n
}

func (c *Counters) add(r *Result, h nf.Hook, n int) {
	o := OutAccept
	if !r.Looped {
		switch d := r.Decision; {
		case d.Audit && d.Action == policies.ActionDrop:
			o = OutWouldDrop
		case d.Audit && d.Action == policies.ActionReject:
			o = OutWouldReject
		case d.Effective() == policies.ActionDrop:
			o = OutDrop
		case d.Effective() == policies.ActionReject:
			o = OutReject
		}
	}
	if h < nf.NumHooks {
		c.packets[h][o].Add(1)
	}
	c.bytes.Add(uint64(n))
	if r.DecodeErr != nil {
		c.decodeErr.Add(1)
	}
	if r.Looped {
		c.looped.Add(1)
	}
	if r.Cached {
		c.cached.Add(1)
	}
}

func (c *Counters) snapshot() Stats {
	var s Stats
	for h := range c.packets {
		for o := range c.packets[h] {
			s.Packets[h][o] = c.packets[h][o].Load()
		}
	}
	s.Bytes = c.bytes.Load()
	s.DecodeErrors = c.decodeErr.Load()
	s.Looped = c.looped.Load()
	s.Cached = c.cached.Load()
	return s
}
