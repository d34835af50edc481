package pipeline

import (
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/policies"
)

// Kind is the netfilter verdict sent back for a queued packet.
type Kind uint8

const (
	// Accept: NF_ACCEPT, optionally with a new packet mark.
	Accept Kind = iota
	// Drop: NF_DROP, for drops nobody asked to log.
	Drop
	// Repeat: NF_REPEAT with a packet mark. The packet re-enters the agent's
	// chain and the mark rules at its top log, drop, reject, accept or offload
	// it in the kernel. Every logged verdict goes this way so that drops
	// decided in userspace and in the kernel reach NFLOG the same way.
	Repeat
)

func (k Kind) String() string {
	switch k {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	case Repeat:
		return "repeat"
	}
	return "unknown"
}

// Verdict is the answer for one packet.
type Verdict struct {
	Kind Kind
	// SetMark: send Mark as the packet's new mark (always with Repeat).
	SetMark bool
	Mark    uint32
	// Action is the mark action carried with Repeat, for counters.
	Action nf.MarkAction
}

// LogID is the rule ID carried in the mark of a logged packet: the rule
// index plus one, 0 for a hook's default. IDs past what the mask can hold
// are sent as Marks.MaxID(), which the drop log reports as an unknown rule.
func LogID(rule int32) uint32 {
	if rule < 0 {
		return 0
	}
	return uint32(rule) + 1
}

// Encode turns a policy decision into the verdict for a packet whose mark
// was oldMark. gen is the policy generation, carried by offload requests.
func Encode(d policies.Decision, oldMark uint32, m nf.Marks, gen uint32) Verdict {
	repeat := func(a nf.MarkAction, id uint32) Verdict {
		base := oldMark
		if d.SetMark && d.Effective() == policies.ActionAccept {
			base = d.Mark
		}
		return Verdict{Kind: Repeat, SetMark: true, Mark: m.Encode(base, a, id), Action: a}
	}
	id := LogID(d.Rule)
	if d.Audit && d.Action != policies.ActionAccept {
		// Audit never drops, but always says what it would have done: that
		// is the whole point of running a policy in audit first.
		if d.Action == policies.ActionReject {
			return repeat(nf.MarkWouldReject, id)
		}
		return repeat(nf.MarkWouldDrop, id)
	}
	switch d.Action {
	case policies.ActionDrop:
		if d.Log {
			return repeat(nf.MarkDropLog, id)
		}
		return Verdict{Kind: Drop}
	case policies.ActionReject:
		// The kernel sends the reset or ICMP error, so a reject is always a
		// repeat, logged or not.
		if d.Log {
			return repeat(nf.MarkRejectLog, id)
		}
		return repeat(nf.MarkReject, id)
	}
	if d.Log {
		return repeat(nf.MarkAcceptLog, id)
	}
	if d.Offload {
		base := oldMark
		if d.SetMark {
			base = d.Mark
		}
		// The same function the offload-set rule is built from, so the
		// kernel's match and this mark cannot drift apart.
		return Verdict{Kind: Repeat, SetMark: true, Mark: m.OffloadMark(base, gen), Action: nf.MarkOffload}
	}
	if d.SetMark {
		return Verdict{Kind: Accept, SetMark: true, Mark: d.Mark &^ m.Mask}
	}
	return Verdict{Kind: Accept}
}
