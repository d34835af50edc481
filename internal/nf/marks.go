package nf

import (
	"fmt"
	"math/bits"
)

// DefaultMarkMask is the part of the packet mark and the conntrack mark the
// agent owns by default. It keeps clear of kube-proxy (0x4000 masquerade,
// 0x8000 drop) and Cilium (0x0f00 range), which both live in the low 16 bits.
// Calico's default (0xffff0000) overlaps it: on Calico hosts pass --mark-mask
// (docs/operations.md names one).
const DefaultMarkMask uint32 = 0xffff0000

// MinMarkBits is the narrowest mask NewMarks accepts: the action code, the
// three state bits and the six offload bits need room, plus at least two bits
// of policy generation in the conntrack mark.
const MinMarkBits = connGenShift + 2

// MarkAction is the action code the agent writes into the packet mark when it
// answers NF_REPEAT, for the kernel rules at the top of the chain to act on.
type MarkAction uint32

const (
	MarkNone        MarkAction = 0
	MarkDropLog     MarkAction = 1 // log to NFLOG, drop
	MarkReject      MarkAction = 2 // reject (TCP reset, else ICMP port unreachable)
	MarkRejectLog   MarkAction = 3 // log, reject
	MarkAcceptLog   MarkAction = 4 // log, accept
	MarkWouldDrop   MarkAction = 5 // audit: log as would_drop, accept
	MarkWouldReject MarkAction = 6 // audit: log as would_reject, accept
	MarkOffload     MarkAction = 7 // set the offload connmark for the flow, accept
)

// The packet mark field, shifted down. The state bits and the ID share bits
// 3 and up: the kernel writes state bits only into packets that carry no
// action (on their way to the queue), the agent writes an ID only with an
// action (on the way back), and the kernel rules consume every action before
// the state rules run. Sharing them is what lets an 8-bit mask (Calico's
// neighbour bits) still name 31 rules in the drop log.
const (
	markActionBits          = 3
	markActionMask   uint32 = 1<<markActionBits - 1
	markEstablished  uint32 = 1 << markActionBits       // kernel conntrack: established
	markRelated      uint32 = 1 << (markActionBits + 1) // kernel conntrack: related
	markInvalid      uint32 = 1 << (markActionBits + 2) // kernel conntrack: invalid
	markIDShift             = markActionBits
	markStateBitsEnd        = markActionBits + 3
)

// The conntrack mark field, shifted down: one offload bit per hook and
// direction (bit 2*hook + direction, direction 0 original and 1 reply, as the
// kernel's conntrack sees them), then the policy generation.
const (
	connOffloadBits = 2 * uint(NumHooks)
	connGenShift    = connOffloadBits
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

// Marks encodes and decodes the agent's fields inside the mark mask. In the
// packet mark the field, shifted down, is laid out as:
//
//	bits 0-2  action code (MarkAction)
//	with action 0 (set by kernel rules before the queue rule, from the
//	kernel's conntrack; at most one of them):
//	bit  3    established
//	bit  4    related
//	bit  5    invalid
//	with an action (set by the agent with NF_REPEAT):
//	bits 3-   an ID: the deciding rule's log ID (rule index + 1, 0 for a
//	          default) with log actions; the policy generation with
//	          MarkOffload
//
// In the conntrack mark:
//
//	bits 0-5  offloaded at hook h in direction d: bit 2*h + d (input 0-1,
//	          forward 2-3, output 4-5; d 0 original, 1 reply)
//	bits 6-   the policy generation those bits were set under
//
// docs/operations.md prints this table; TestOperationsMarkTable keeps the
// two equal.
type Marks struct {
	Mask  uint32
	shift uint
	width uint
}

// NewMarks validates a mark mask: contiguous bits, at least MinMarkBits.
func NewMarks(mask uint32) (Marks, error) {
	if mask == 0 {
		return Marks{}, fmt.Errorf("nf: mark mask is zero")
	}
	shift := uint(bits.TrailingZeros32(mask))
	width := uint(bits.OnesCount32(mask))
	if (mask>>shift)&(mask>>shift+1) != 0 {
		return Marks{}, fmt.Errorf("nf: mark mask %#x is not one contiguous run of bits", mask)
	}
	if width < uint(MinMarkBits) {
		return Marks{}, fmt.Errorf("nf: mark mask %#x has %d bits, need at least %d", mask, width, MinMarkBits)
	}
	return Marks{Mask: mask, shift: shift, width: width}, nil
}

// Valid reports whether m was made by NewMarks (the zero Marks is not a
// layout).
func (m Marks) Valid() bool { return m.width != 0 }

// Width is the number of bits in the mask.
func (m Marks) Width() int { return int(m.width) }

// MaxID is the largest ID a packet mark can carry. Log IDs past it are sent
// as MaxID, which names no rule.
func (m Marks) MaxID() uint32 { return 1<<(m.width-markIDShift) - 1 }

// MaxGen is the largest policy generation the conntrack mark can carry;
// generations run 1..MaxGen and wrap.
func (m Marks) MaxGen() uint32 { return 1<<(m.width-connGenShift) - 1 }

// ActionMask is the mask that selects the action code in a packet mark.
func (m Marks) ActionMask() uint32 { return markActionMask << m.shift }

// Action is the value of mark&ActionMask() for action a.
func (m Marks) Action(a MarkAction) uint32 { return uint32(a) << m.shift }

// EstablishedBit is the bit a kernel rule sets in packets its conntrack sees
// as established.
func (m Marks) EstablishedBit() uint32 { return markEstablished << m.shift }

// RelatedBit is the bit the kernel sets for packets its conntrack sees as
// related to a flow it tracks (ICMP errors quoting it).
func (m Marks) RelatedBit() uint32 { return markRelated << m.shift }

// InvalidBit is the bit the kernel sets for packets its conntrack calls
// invalid (no conntrack entry attached: out of window, no flow to relate
// to, a first packet no flow can start with).
func (m Marks) InvalidBit() uint32 { return markInvalid << m.shift }

// StateMask selects the three state bits.
func (m Marks) StateMask() uint32 { return m.EstablishedBit() | m.RelatedBit() | m.InvalidBit() }

// StateMatch is what a kernel rule tests to match packets the agent sees in
// state s: mark & mask == value. It assumes no action code, which holds
// after the mark rules at the top of the chain. New is "no state bit set":
// the kernel's new and untracked.
func (m Marks) StateMatch(s State) (mask, value uint32) {
	switch s {
	case StateEstablished:
		return m.EstablishedBit(), m.EstablishedBit()
	case StateRelated:
		return m.RelatedBit(), m.RelatedBit()
	case StateInvalid:
		return m.InvalidBit(), m.InvalidBit()
	}
	return m.StateMask(), 0
}

// State is the flow state the kernel wrote into a packet mark that carries
// no action: invalid, related or established by their bit (in that order,
// should more than one be set), otherwise new.
func (m Marks) State(mark uint32) State {
	switch {
	case mark&m.InvalidBit() != 0:
		return StateInvalid
	case mark&m.RelatedBit() != 0:
		return StateRelated
	case mark&m.EstablishedBit() != 0:
		return StateEstablished
	}
	return StateNew
}

// Related reports whether the kernel marked the packet as related.
func (m Marks) Related(mark uint32) bool {
	return mark&m.ActionMask() == 0 && mark&m.RelatedBit() != 0
}

// IDMask selects the ID in a mark that carries an action.
func (m Marks) IDMask() uint32 { return (m.Mask >> (m.shift + markIDShift)) << (m.shift + markIDShift) }

// Encode returns the packet mark to send with NF_REPEAT: old keeps every bit
// outside the mask, the field gets action and id (id is clamped to MaxID).
func (m Marks) Encode(old uint32, a MarkAction, id uint32) uint32 {
	if id > m.MaxID() {
		id = m.MaxID()
	}
	return old&^m.Mask | uint32(a)<<m.shift | id<<(m.shift+markIDShift)
}

// Decode splits a mark into the agent's action, established bit and id. The
// established bit is only read without an action, the id only with one.
func (m Marks) Decode(mark uint32) (a MarkAction, established bool, id uint32) {
	f := (mark & m.Mask) >> m.shift
	a = MarkAction(f & markActionMask)
	if a == MarkNone {
		return a, f&markEstablished != 0, 0
	}
	return a, false, f >> markIDShift
}

// OffloadRequest is the value of mark&(ActionMask()|IDMask()) in a packet the
// agent sends back to offload its flow under generation gen; the kernel's
// offload-set rules match it. gen wraps modulo MaxGen+1, as in the
// conntrack mark.
func (m Marks) OffloadRequest(gen uint32) uint32 {
	return m.Action(MarkOffload) | (gen&m.MaxGen())<<(m.shift+markIDShift)
}

// OffloadMark is the packet mark to send with NF_REPEAT to offload a flow
// under generation gen: old's bits outside the mask, OffloadRequest(gen)
// inside it.
func (m Marks) OffloadMark(old, gen uint32) uint32 {
	return old&^m.Mask | m.OffloadRequest(gen)
}

// OffloadBit is the conntrack mark bit that offloads the packets of a flow
// at hook h travelling in direction reply (false: the kernel's original
// direction).
func (m Marks) OffloadBit(h Hook, reply bool) uint32 {
	b := uint(h) * 2
	if reply {
		b++
	}
	return 1 << (m.shift + b)
}

// OffloadBits selects every offload bit of a conntrack mark.
func (m Marks) OffloadBits() uint32 { return (1<<connOffloadBits - 1) << m.shift }

// GenMask selects the generation in a conntrack mark.
func (m Marks) GenMask() uint32 { return m.Mask &^ m.OffloadBits() }

// ConnGen is the generation field of a conntrack mark for generation gen
// (wrapped modulo MaxGen+1).
func (m Marks) ConnGen(gen uint32) uint32 { return (gen & m.MaxGen()) << (m.shift + connGenShift) }

// Offloaded reports whether conntrack mark ctmark offloads packets at hook h
// in direction reply under generation gen.
func (m Marks) Offloaded(ctmark uint32, h Hook, reply bool, gen uint32) bool {
	bit := m.OffloadBit(h, reply)
	return ctmark&(bit|m.GenMask()) == bit|m.ConnGen(gen)
}

// ScratchMask is the part of the packet mark field above the action code and
// the state bits. Kernel rules may use it within one pass of a policy chain
// (rules/index.go keeps the best rule found so far there) and clear it
// before any verdict; it is empty when the mask has no room above the state
// bits.
func (m Marks) ScratchMask() uint32 {
	if m.width <= markStateBitsEnd {
		return 0
	}
	return (m.Mask >> (m.shift + markStateBitsEnd)) << (m.shift + markStateBitsEnd)
}
