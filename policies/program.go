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
	evalWarns  []string
	tests      []*Test
	seeds      [2]maphash.Seed
	// quicSNI: some tls_sni rule can match UDP, so QUIC Initials are
	// worth reassembling.
	quicSNI bool
	// streams: some rule reads dns_qname, tls_sni or http_host, which
	// may ask Input.Streams.
	streams bool
	// source are the rules compiled, for the kernel compiler (SourceRules).
	source []*Rule
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
	chkOwner                    // uid, gid, cgroup: fixed for a flow once it has a socket
)

// Taint bits: why a skipped rule might still match a later packet of the
// same flow.
const (
	taintState  uint8 = 1 << iota // skipped only for its state, which a later packet may have
	taintPacket                   // skipped for a per-packet field
	// taintPending: skipped because its L7 field waits for more of the
	// stream (with taintPacket).
	taintPending
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
	// quietOffload: an accept that offloads, logs nothing and sets no mark;
	// a packet it decides and an offloaded one end the same way.
	quietOffload bool
	// stable: no per-packet field besides state, so a decision by this
	// rule holds for the flow as long as its state keeps matching.
	stable bool
	mark   uint32

	icmp4, icmp6 *[4]uint64
	hasICMP      bool
	lengths      []LengthRange
	iif, oif     []string
	dns, sni     *l7.NameMatcher
	http         *l7.NameMatcher
	payload      *l7.PayloadMatcher
	uid, gid     IDMatch
	cgroups      []string

	limit  *Limit
	table  *ratelimit.Table
	bucket *ratelimit.Bucket
}

// laterStates is the set of states a later packet of the same kernel
// conntrack entry can have when the offload rule would accept it, given the
// state of this one. An entry goes from new to established once, never
// back; the offload rules accept only new and established packets (related
// ones, ICMP errors carrying the entry they quote, and invalid ones, which
// carry no entry, always reach the agent). A decision made in another state
// never offloads.
var laterStates = [4]uint8{
	nf.StateNew:         1<<nf.StateNew | 1<<nf.StateEstablished,
	nf.StateEstablished: 1 << nf.StateEstablished,
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

// EvalWarnings are the warnings about rules that never match under
// `fwagent eval` (see Policy.EvalWarnings).
func (p *Program) EvalWarnings() []string { return append([]string(nil), p.evalWarns...) }

// UsesCgroup reports whether some rule matches cgroup, so the packet source
// should provide a CgroupFinder.
func (p *Program) UsesCgroup() bool {
	for i := range p.rules {
		if len(p.rules[i].cgroups) > 0 {
			return true
		}
	}
	return false
}

// Hooks are the hooks whose packets the policy needs to see: those with a
// rule, or whose default is not accept. Packets of other hooks are accepted
// and need not be queued.
func (p *Program) Hooks() []nf.Hook { return append([]nf.Hook(nil), p.hooks...) }

// Tests are the policy's own tests (tests:), in file order, for a runner
// such as policies/policytest.
func (p *Program) Tests() []*Test { return p.tests }

// WithFreshLimits is a copy of p whose rate limits start from fresh, empty
// buckets; p's own are untouched. Policy tests run on such a copy.
func (p *Program) WithFreshLimits() *Program {
	fresh := *p
	fresh.rules = make([]ruleExec, len(p.rules))
	copy(fresh.rules, p.rules)
	for i := range fresh.rules {
		fresh.rules[i].newLimiter()
	}
	return &fresh
}
