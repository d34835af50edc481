package policies

import (
	"hash/maphash"

	"github.com/gaissmai/bart"

	"github.com/fwagent/fwagent/internal/l7"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/ratelimit"
)

// maxLimitKeys bounds each per-src, per-dst or per-flow limit table, so a
// flood of spoofed sources cannot grow it without bound.
const maxLimitKeys = 1 << 16

// famIndex slots: packets of an unknown family only match rules that name
// no family.
const (
	famSlotOther = iota
	famSlot4
	famSlot6
	famSlots
)

// Program is a compiled policy. It is immutable after Compile, apart from
// the token buckets of rules with a limit, which are safe for concurrent
// use; Decide may be called from many goroutines at once.
type Program struct {
	rules    []ruleExec
	names    []string
	prefixes []string

	// The rule bitsets, flattened for Decide.
	words, sumw int
	bits, sums  []uint64
	// allPair is the field pair of a field no rule names: every rule
	// admitted, none primary.
	allPair uint64

	nclass     int
	protoClass [256]uint8
	meta       []uint64 // pairs by [(hook*famSlots+fam)*nclass+class]

	src, dst     addrIndex
	sport, dport portIndex

	defaults   [nf.NumHooks]Action
	defaultLog bool
	onError    [nf.NumHooks]Action
	audit      bool
	hooks      []nf.Hook
	warnings   []string
	tests      []*Test
	seeds      [2]maphash.Seed
	// copyRange: see CopyRange.
	copyRange uint32
}

// addrIndex and portIndex values are pairs (see pair) of bitset ids.
type addrIndex struct {
	enabled bool
	table   *bart.Table[uint64]
	none    uint64 // for addresses no prefix of the field holds
}

type portIndex struct {
	table  []uint64 // nil when no rule names the field
	noPort uint64   // for packets without ports
}

// Rare-check bits of a rule: fields not indexed, checked only for the
// candidate rule.
const (
	chkIface  uint8 = 1 << iota // iif or oif: fixed for a flow
	chkState                    // state: changes as a flow goes on
	chkPacket                   // tcp_flags, icmp_type, length, L7, payload, limit
)

// Taint bits: why a skipped rule might still match a later packet of the
// same flow.
const (
	taintState  uint8 = 1 << iota // skipped only for its state
	taintPacket                   // skipped for a per-packet field
)

type ruleExec struct {
	checks  uint8
	action  Action
	states  uint8
	tcpWant uint8
	tcpMask uint8
	hasTCP  bool
	log     bool
	audit   bool
	setMark bool
	offload bool
	// stable: no per-packet field besides state, so a decision by this
	// rule holds for the flow as long as its state keeps matching.
	stable bool
	mark   uint32

	icmp4, icmp6 *[4]uint64
	hasICMP      bool
	lengths      []LengthRange
	iif, oif     []string
	dns, sni     *l7.NameMatcher
	payload      *l7.PayloadMatcher

	limit  *Limit
	table  *ratelimit.Table
	bucket *ratelimit.Bucket
}

// futureStates is the set of states later packets of a flow can have, given
// the state of this one: a flow never goes back to new once established.
var futureStates = [4]uint8{
	nf.StateNew:         1<<nf.StateNew | 1<<nf.StateEstablished | 1<<nf.StateInvalid,
	nf.StateEstablished: 1<<nf.StateEstablished | 1<<nf.StateInvalid,
	nf.StateRelated:     1<<nf.StateRelated | 1<<nf.StateEstablished | 1<<nf.StateInvalid,
	nf.StateInvalid:     0x0f,
}

// NumRules is the number of rules.
func (p *Program) NumRules() int { return len(p.rules) }

// RuleName is the name of rule i, "default" for NoRule, "" if out of range.
func (p *Program) RuleName(i int32) string {
	if i == NoRule {
		return "default"
	}
	if i < 0 || int(i) >= len(p.names) {
		return ""
	}
	return p.names[i]
}

// LogPrefix is the log prefix rule i chose, or its name; "default" for
// NoRule.
func (p *Program) LogPrefix(i int32) string {
	if i >= 0 && int(i) < len(p.prefixes) && p.prefixes[i] != "" {
		return p.prefixes[i]
	}
	return p.RuleName(i)
}

// OnError is the verdict for packets of hook h that cannot be decoded.
func (p *Program) OnError(h nf.Hook) Action {
	if h >= nf.NumHooks {
		return ActionDrop
	}
	return p.onError[h]
}

// Default is the verdict of hook h when no rule matches.
func (p *Program) Default(h nf.Hook) Action {
	if h >= nf.NumHooks {
		return ActionDrop
	}
	return p.defaults[h]
}

// DefaultLog reports whether drops and rejects by a default are logged.
func (p *Program) DefaultLog() bool { return p.defaultLog }

// Audit reports mode: audit: nothing is dropped or rejected.
func (p *Program) Audit() bool { return p.audit }

// Warnings are the policy's warnings, FILE:LINE:COL: warning: ... each.
func (p *Program) Warnings() []string { return append([]string(nil), p.warnings...) }

// Hooks are the hooks whose packets the policy needs to see: those with a
// rule, or whose default is not accept. Packets of other hooks are accepted
// and need not be queued.
func (p *Program) Hooks() []nf.Hook { return append([]nf.Hook(nil), p.hooks...) }
