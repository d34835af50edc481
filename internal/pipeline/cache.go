package pipeline

import (
	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/policies"
)

// A cached decision is packed into the flow table's 64-bit value so that the
// table stays free of pointers (the GC never scans it) and small per flow.
//
//	bits 0-31   rule index + 1 (0: the hook's default)
//	bits 32-33  action
//	bit  34     log
//	bit  35     audit
//	bit  36     offload
//	bits 37-38  hook
//	bit  39     reply direction
//	bit  40     valid
//	bits 41-42  flow state when decided
//
// A decision is reused only for packets of the same hook, direction and flow
// state: the rule matched the first packet's direction, a flow crossing two
// hooks (input, then output for the replies) meets two different rule lists,
// and a `state` match decided for one state says nothing about another.
// Decisions that set a packet mark are not cached: the mark does not fit,
// and such rules are rare enough to evaluate per packet.
const (
	cacheActionShift = 32
	cacheLog         = 1 << 34
	cacheAudit       = 1 << 35
	cacheOffload     = 1 << 36
	cacheHookShift   = 37
	cacheReply       = 1 << 39
	cacheValid       = 1 << 40
	cacheStateShift  = 41
)

func encodeCache(d policies.Decision, h policies.Hook, reply bool, st conntrack.State) (uint64, bool) {
	if !d.Cacheable || d.SetMark {
		return 0, false
	}
	v := uint64(uint32(d.Rule+1)) | uint64(d.Action)<<cacheActionShift | uint64(h)<<cacheHookShift | uint64(st&3)<<cacheStateShift | cacheValid
	if d.Log {
		v |= cacheLog
	}
	if d.Audit {
		v |= cacheAudit
	}
	if d.Offload {
		v |= cacheOffload
	}
	if reply {
		v |= cacheReply
	}
	return v, true
}

func decodeCache(v uint64, h policies.Hook, reply bool, st conntrack.State) (policies.Decision, bool) {
	if v&cacheValid == 0 || policies.Hook(v>>cacheHookShift&3) != h || (v&cacheReply != 0) != reply || conntrack.State(v>>cacheStateShift&3) != st {
		return policies.Decision{}, false
	}
	return policies.Decision{
		Action:    policies.Action(v >> cacheActionShift & 3),
		Rule:      int32(uint32(v)) - 1,
		Log:       v&cacheLog != 0,
		Audit:     v&cacheAudit != 0,
		Offload:   v&cacheOffload != 0,
		Cacheable: true,
	}, true
}
