package nf

import (
	"fmt"
	"math/bits"
)

// DefaultMarkMask is the part of the packet mark and the conntrack mark the
// agent owns by default. It keeps clear of kube-proxy (0x4000 masquerade,
// 0x8000 drop) and Cilium (0x0f00 range), which both live in the low 16 bits.
// Calico's default (0xffff0000) overlaps it: on Calico hosts pass --mark-mask.
const DefaultMarkMask uint32 = 0xffff0000

// MarkAction is the action code the agent writes into the packet mark when it
// answers NF_REPEAT, for the kernel rules at the top of the chain to act on.
type MarkAction uint32

const (
	MarkNone           MarkAction = 0
	MarkDropLog        MarkAction = 1 // log to NFLOG, drop
	MarkReject         MarkAction = 2 // reject (TCP reset, else ICMP port unreachable)
	MarkRejectLog      MarkAction = 3 // log, reject
	MarkAcceptLog      MarkAction = 4 // log, accept
	MarkWouldDrop      MarkAction = 5 // audit: log as would_drop, accept
	MarkWouldReject    MarkAction = 6 // audit: log as would_reject, accept
	MarkOffload        MarkAction = 7 // set the offload connmark for the flow, accept
	markActionBits                = 3
	markActionMask     uint32     = 1<<markActionBits - 1
	markEstablishedBit uint32     = 1 << markActionBits       // kernel conntrack says established
	markRelatedBit     uint32     = 1 << (markActionBits + 1) // kernel conntrack says related
	markIDShift                   = markActionBits + 2
)

// String is the event name used in log prefixes and JSON events.
func (a MarkAction) String() string {
	switch a {
	case MarkDropLog:
		return "drop"
	case MarkReject, MarkRejectLog:
		return "reject"
	case MarkAcceptLog:
		return "accept"
	case MarkWouldDrop:
		return "would_drop"
	case MarkWouldReject:
		return "would_reject"
	case MarkOffload:
		return "offload"
	}
	return "none"
}

// Marks encodes and decodes the agent's fields inside the mark mask. The
// field, shifted down, is laid out as:
//
//	bits 0-2  action code (MarkAction)
//	bit  3    established (set by a kernel rule before the queue rule, from
//	          the kernel's conntrack, so flows older than the agent survive)
//	bit  4    related (likewise: ICMP errors about flows the kernel tracks,
//	          e.g. the host's own outgoing flows the agent never queued)
//	bits 5-   an ID: the deciding rule's log ID (rule index + 1, 0 for a
//	          default) with log actions; the policy generation with
//	          MarkOffload and in the conntrack mark
//
// In the conntrack mark the same field holds MarkOffload | generation<<5.
type Marks struct {
	Mask  uint32
	shift uint
	width uint
}

// NewMarks validates a mark mask: contiguous bits, wide enough for the action
// code, the established and related bits and at least 4 bits of ID.
func NewMarks(mask uint32) (Marks, error) {
	if mask == 0 {
		return Marks{}, fmt.Errorf("nf: mark mask is zero")
	}
	shift := uint(bits.TrailingZeros32(mask))
	width := uint(bits.OnesCount32(mask))
	if (mask>>shift)&(mask>>shift+1) != 0 {
		return Marks{}, fmt.Errorf("nf: mark mask %#x is not one contiguous run of bits", mask)
	}
	if width < markIDShift+4 {
		return Marks{}, fmt.Errorf("nf: mark mask %#x has %d bits, need at least %d", mask, width, markIDShift+4)
	}
	return Marks{Mask: mask, shift: shift, width: width}, nil
}

// Valid reports whether m was made by NewMarks (the zero Marks is not a
// layout).
func (m Marks) Valid() bool { return m.width != 0 }

// MaxID is the largest ID the mask can carry.
func (m Marks) MaxID() uint32 { return 1<<(m.width-markIDShift) - 1 }

// ActionMask is the mask that selects the action code in a packet mark.
func (m Marks) ActionMask() uint32 { return markActionMask << m.shift }

// Action is the value of mark&ActionMask() for action a.
func (m Marks) Action(a MarkAction) uint32 { return uint32(a) << m.shift }

// EstablishedBit is the bit the kernel sets for flows it already tracks as
// established.
func (m Marks) EstablishedBit() uint32 { return markEstablishedBit << m.shift }

// RelatedBit is the bit the kernel sets for packets its conntrack sees as
// related to a flow it tracks (ICMP errors quoting it).
func (m Marks) RelatedBit() uint32 { return markRelatedBit << m.shift }

// Related reports whether the kernel marked the packet as related.
func (m Marks) Related(mark uint32) bool { return mark&m.RelatedBit() != 0 }

// IDMask selects the ID in a mark.
func (m Marks) IDMask() uint32 { return (m.Mask >> (m.shift + markIDShift)) << (m.shift + markIDShift) }

// Encode returns the packet mark to send with NF_REPEAT: old keeps every bit
// outside the mask, the field gets action and id (id is clamped to MaxID).
func (m Marks) Encode(old uint32, a MarkAction, id uint32) uint32 {
	if id > m.MaxID() {
		id = m.MaxID()
	}
	return old&^m.Mask | uint32(a)<<m.shift | id<<(m.shift+markIDShift)
}

// Decode splits a mark into the agent's action, established bit and id.
func (m Marks) Decode(mark uint32) (a MarkAction, established bool, id uint32) {
	f := (mark & m.Mask) >> m.shift
	return MarkAction(f & markActionMask), f&markEstablishedBit != 0, f >> markIDShift
}

// OffloadConnmark is the value of ctmark&Mask for flows offloaded under
// generation gen.
func (m Marks) OffloadConnmark(gen uint32) uint32 {
	return m.Encode(0, MarkOffload, gen&m.MaxID())
}

// OffloadMark is the packet mark to send with NF_REPEAT to offload a flow
// under generation gen: the kernel's offload-set rule matches it and copies
// OffloadConnmark(gen) into the conntrack mark. Like OffloadConnmark, and
// unlike Encode, it wraps gen modulo MaxID+1 instead of clamping it, so it
// always matches the rule SetGeneration(gen) installed.
func (m Marks) OffloadMark(old, gen uint32) uint32 {
	return old&^m.Mask | m.OffloadConnmark(gen)
}
