package pipeline

import (
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/policies"
)

// A flow caches one decision per direction, both packed into the flow
// table's 64-bit value (the original direction in the low 32 bits, the reply
// direction in the high 32), so the table stays free of pointers (the GC
// never scans it) and small per flow. One slot per direction matters: the
// reply of a flow whose first payload an L7 rule decided must not overwrite
// that decision with its own (a ServerHello decided by a later rule would
// otherwise turn the client's next segment into a reject).
//
// Each 32-bit slot:
//
//	bits 0-19   rule index + 1 (0: the hook's default)
//	bits 20-21  action
//	bit  22     log
//	bit  23     audit
//	bit  24     offload
//	bits 25-26  hook
//	bits 27-28  flow state when decided
//	bit  29     valid
//
// A decision is reused only for packets of the same direction, hook and flow
// state: the rule matched that direction, a flow crossing two hooks (input,
// then output for the replies) meets two different rule lists, and a `state`
// match decided for one state says nothing about another. Decisions that
// set a packet mark, or come from rules past the 1,048,574th, are not
// cached: evaluating them per packet costs the same either way (see
// bench/README.md, Figures behind design choices).
const (
	slotRuleMask    = 1<<20 - 1
	slotActionShift = 20
	slotLog         = 1 << 22
	slotAudit       = 1 << 23
	slotOffload     = 1 << 24
	slotHookShift   = 25
	slotStateShift  = 27
	slotValid       = 1 << 29
)

func slotShift(reply bool) uint {
	if reply {
		return 32
	}
	return 0
}

// encodeCache returns the flow's new cache value: old with the slot of this
// direction replaced by d, or ok false when d must not be cached.
func encodeCache(old uint64, d policies.Decision, h nf.Hook, reply bool, st nf.State) (uint64, bool) {
	if !d.Cacheable || d.SetMark || d.Rule+1 > slotRuleMask {
		return 0, false
	}
	v := uint32(d.Rule+1) | uint32(d.Action)<<slotActionShift | uint32(h)<<slotHookShift | uint32(st&3)<<slotStateShift | slotValid
	if d.Log {
		v |= slotLog
	}
	if d.Audit {
		v |= slotAudit
	}
	if d.Offload {
		v |= slotOffload
	}
	sh := slotShift(reply)
	return old&^(uint64(^uint32(0))<<sh) | uint64(v)<<sh, true
}

func decodeCache(v uint64, h nf.Hook, reply bool, st nf.State) (policies.Decision, bool) {
	s := uint32(v >> slotShift(reply))
	if s&slotValid == 0 || nf.Hook(s>>slotHookShift&3) != h || nf.State(s>>slotStateShift&3) != st {
		return policies.Decision{}, false
	}
	return policies.Decision{
		Action:    policies.Action(s >> slotActionShift & 3),
		Rule:      int32(s&slotRuleMask) - 1,
		Log:       s&slotLog != 0,
		Audit:     s&slotAudit != 0,
		Offload:   s&slotOffload != 0,
		Cacheable: true,
	}, true
}
