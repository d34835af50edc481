package policies

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"slices"

	"github.com/gaissmai/bart"

	"github.com/fwagent/fwagent/internal/l7"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/ratelimit"
)

// Compile turns a loaded policy into a Program. Errors are *Error at the
// rule at fault.
func Compile(pol *Policy) (*Program, error) {
	if pol == nil {
		return nil, fmt.Errorf("policies: compile: nil policy")
	}
	n := len(pol.Rules)
	p := &Program{
		rules:      make([]ruleExec, n),
		names:      make([]string, n),
		prefixes:   make([]string, n),
		defaults:   pol.Default,
		defaultLog: pol.DefaultLog,
		onError:    pol.OnError,
		audit:      pol.Audit,
		warnings:   append([]string(nil), pol.Warnings...),
		evalWarns:  append([]string(nil), pol.EvalWarnings...),
		tests:      pol.Tests,
		source:     pol.Rules,
		seeds:      [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		copyRange:  copyRangeOf(pol.Rules),
	}
	var used uint8
	for i, r := range pol.Rules {
		p.names[i] = r.Name
		p.prefixes[i] = r.LogPrefix
		if err := p.compileRule(&p.rules[i], r, pol.Audit); err != nil {
			return nil, err
		}
		used |= r.Hooks
		e := &p.rules[i]
		p.streams = p.streams || e.dns != nil || e.sni != nil || e.http != nil
	}
	for h := nf.HookInput; h < nf.NumHooks; h++ {
		if used&(1<<h) != 0 || pol.Default[h] != ActionAccept {
			p.hooks = append(p.hooks, h)
		}
	}

	bs := newBitsets(n)
	all := newRuleBits(bs.words)
	for i := range n {
		all.set(i)
	}
	ix := &indexBuilder{bs: bs, rules: pol.Rules}
	ix.choosePrimaries()
	p.allPair = pair(bs.intern(all), bs.intern(newRuleBits(bs.words)))
	p.buildMeta(ix)
	p.src = ix.addrIndex(fieldSrc, func(r *Rule) *AddrMatch { return &r.Match.Src })
	p.dst = ix.addrIndex(fieldDst, func(r *Rule) *AddrMatch { return &r.Match.Dst })
	p.sport = ix.portIndex(fieldSport, p.allPair, func(r *Rule) *PortMatch { return &r.Match.Sport })
	p.dport = ix.portIndex(fieldDport, p.allPair, func(r *Rule) *PortMatch { return &r.Match.Dport })
	p.words, p.sumw, p.bits, p.sums = bs.words, bs.sumw, bs.bits, bs.sums
	return p, nil
}

func (p *Program) compileRule(e *ruleExec, r *Rule, modeAudit bool) error {
	m := &r.Match
	e.action = r.Action
	e.audit = (modeAudit || r.Audit) && r.Action != ActionAccept
	// An audit rule exists to be seen: it logs whatever it decides.
	e.log = r.Log || r.Audit
	e.setMark, e.mark = r.HasMark, r.Mark
	e.states = m.States
	if len(m.Iif) > 0 || len(m.Oif) > 0 {
		e.checks |= chkIface
		e.iif, e.oif = m.Iif, m.Oif
	}
	if m.States != 0 {
		e.checks |= chkState
	}
	if m.UID.Set || m.GID.Set || len(m.Cgroup) > 0 {
		e.checks |= chkOwner
		e.uid, e.gid, e.cgroups = m.UID, m.GID, m.Cgroup
	}
	if m.TCPFlags != nil {
		e.hasTCP, e.tcpWant, e.tcpMask = true, m.TCPFlags.Want, m.TCPFlags.Mask
	}
	if m.HasICMPType {
		e.hasICMP, e.icmp4, e.icmp6 = true, m.ICMP4Types, m.ICMP6Types
	}
	e.lengths = m.Length
	var err error
	if len(m.DNSQName) > 0 {
		if e.dns, err = l7.NewNameMatcher(m.DNSQName); err != nil {
			return r.at.Errorf("rule %q: dns_qname: %v", r.Name, err)
		}
	}
	if len(m.TLSSNI) > 0 {
		if e.sni, err = l7.NewNameMatcher(m.TLSSNI); err != nil {
			return r.at.Errorf("rule %q: tls_sni: %v", r.Name, err)
		}
		p.quicSNI = p.quicSNI || len(m.Protos) == 0 || slices.Contains(m.Protos, packet.ProtoUDP)
	}
	if len(m.HTTPHost) > 0 {
		if e.http, err = l7.NewNameMatcher(m.HTTPHost); err != nil {
			return r.at.Errorf("rule %q: http_host: %v", r.Name, err)
		}
	}
	if m.Payload != nil {
		e.payload = l7.NewPayloadMatcher(m.Payload.Needle, m.Payload.Offset, m.Payload.Depth)
	}
	e.limit = r.Limit
	e.newLimiter()
	if e.hasTCP || e.hasICMP || len(e.lengths) > 0 || e.dns != nil || e.sni != nil || e.http != nil || e.payload != nil || e.limit != nil {
		e.checks |= chkPacket
	}
	// tls_sni and payload do not make a decision unstable: once the
	// hello or payload decides, the decision holds for the flow (docs/policy.md, "L7 fields").
	// DNS queries and HTTP requests do not: each message on a connection
	// or a reused UDP socket names its own host, so each is decided alone.
	// ICMP types are fixed for one direction of an echo flow.
	e.stable = !e.hasTCP && len(e.lengths) == 0 && e.limit == nil && e.dns == nil && e.http == nil
	why := r.PerPacketReason()
	switch {
	case r.Action != ActionAccept:
	case r.Offload != nil:
		e.offload = *r.Offload && why == ""
	default:
		e.offload = why == "" && !r.HasMark
	}
	e.quietOffload = e.offload && !e.log && !e.setMark
	return nil
}

// newLimiter gives the rule fresh token buckets.
func (e *ruleExec) newLimiter() {
	e.table, e.bucket = nil, nil
	if e.limit == nil {
		return
	}
	if e.limit.Per == LimitGlobal {
		e.bucket = ratelimit.NewBucket(e.limit.RatePerSec, e.limit.Burst)
	} else {
		e.table = ratelimit.NewTable(e.limit.RatePerSec, e.limit.Burst, maxLimitKeys)
	}
}

// The indexed fields. Each rule has one primary field: the constrained field
// expected to admit the fewest packets. For a packet, a field yields two
// bitsets: full, the rules the field admits, and primary, those of them whose
// primary field it is. A rule matches the indexed fields only if it is in
// every full bitset, and then it is also in its primary field's primary
// bitset; so Decide only visits the words where some primary bitset has a
// bit. A packet whose value few rules name visits few words, however many
// rules do not constrain that field.
const (
	fieldMeta = iota // hook, family and protocol together; also rules with no other
	fieldSrc
	fieldDst
	fieldSport
	fieldDport
	numFields
)

// pair packs a field's full and primary bitset ids.
func pair(full, prim uint32) uint64 { return uint64(full)<<32 | uint64(prim) }

type indexBuilder struct {
	bs      *bitsets
	rules   []*Rule
	primary [numFields]ruleBits
}

// choosePrimaries picks, for each rule, the constrained field expected to
// put the fewest rules in a packet's primary bitsets: the share of the value
// space the rule's values cover, times how many rules list the most shared
// of those values. Negation-only fields admit nearly everything and are
// never primary. The choice only affects speed, never the result.
func (ix *indexBuilder) choosePrimaries() {
	for f := range ix.primary {
		ix.primary[f] = newRuleBits(ix.bs.words)
	}
	var addrCount [2]map[netip.Prefix]int
	var portCount [2]map[PortRange]int
	for k := range 2 {
		addrCount[k], portCount[k] = map[netip.Prefix]int{}, map[PortRange]int{}
	}
	addrs := func(r *Rule) [2]*AddrMatch { return [2]*AddrMatch{&r.Match.Src, &r.Match.Dst} }
	ports := func(r *Rule) [2]*PortMatch { return [2]*PortMatch{&r.Match.Sport, &r.Match.Dport} }
	for _, r := range ix.rules {
		for k, am := range addrs(r) {
			for _, p := range am.Pos {
				addrCount[k][p]++
			}
		}
		for k, pm := range ports(r) {
			for _, pr := range pm.Pos {
				portCount[k][pr]++
			}
		}
	}
	for i, r := range ix.rules {
		best, bestScore := fieldMeta, 1.0
		consider := func(f int, score float64) {
			if score < bestScore {
				best, bestScore = f, score
			}
		}
		for k, am := range addrs(r) {
			consider(fieldSrc+k, addrShare(am, addrCount[k]))
		}
		for k, pm := range ports(r) {
			consider(fieldSport+k, portShare(pm, portCount[k]))
		}
		ix.primary[best].set(i)
	}
}

func addrShare(am *AddrMatch, count map[netip.Prefix]int) float64 {
	if !am.HasPos {
		return 2
	}
	share, shared := 0.0, 1
	for _, p := range am.Pos {
		share += math.Ldexp(1, -p.Bits())
		shared = max(shared, count[p])
	}
	return share * float64(shared)
}

func portShare(pm *PortMatch, count map[PortRange]int) float64 {
	if !pm.Set || !pm.HasPos {
		return 2
	}
	n, shared := 0, 1
	for _, r := range pm.Pos {
		n += int(r.Hi) - int(r.Lo) + 1
		shared = max(shared, count[r])
	}
	return float64(n) / 65536 * float64(shared)
}

// intern stores the full bitset b and its primary part for field f.
func (ix *indexBuilder) intern(f int, b, scratch ruleBits) uint64 {
	for i := range scratch {
		scratch[i] = b[i] & ix.primary[f][i]
	}
	return pair(ix.bs.intern(b), ix.bs.intern(scratch))
}

// buildMeta indexes hook, family and protocol together: they are few, so
// one table lookup replaces three bitset ANDs.
func (p *Program) buildMeta(ix *indexBuilder) {
	rules, bs := ix.rules, ix.bs
	// Protocol classes: each protocol some rule names, and "other".
	var named []uint8
	for _, r := range rules {
		for _, pr := range r.Match.Protos {
			if !slices.Contains(named, pr) {
				named = append(named, pr)
			}
		}
	}
	slices.Sort(named)
	p.nclass = len(named) + 1
	for i, pr := range named {
		p.protoClass[pr] = uint8(i + 1)
	}
	p.meta = make([]uint64, int(nf.NumHooks)*famSlots*p.nclass)
	b, scratch := newRuleBits(bs.words), newRuleBits(bs.words)
	for h := nf.HookInput; h < nf.NumHooks; h++ {
		for f := range famSlots {
			for c := 0; c < p.nclass; c++ {
				clear(b)
				for i, r := range rules {
					m := &r.Match
					if r.Hooks&(1<<h) == 0 {
						continue
					}
					switch {
					case m.Family == packet.IPv4 && f != famSlot4, m.Family == packet.IPv6 && f != famSlot6:
						continue
					}
					if len(m.Protos) > 0 && (c == 0 || !slices.Contains(m.Protos, named[c-1])) {
						continue
					}
					b.set(i)
				}
				p.meta[(int(h)*famSlots+f)*p.nclass+c] = ix.intern(fieldMeta, b, scratch)
			}
		}
	}
}

type pfxRules struct {
	pfx      netip.Prefix
	pos, neg []int
}

// addrIndex maps every prefix any rule names to the rules an address whose
// longest match is that prefix satisfies: rules that name the prefix or one
// of its ancestors, minus rules that negate it or an ancestor, plus rules
// that do not constrain the field or only negate.
func (ix *indexBuilder) addrIndex(f int, field func(*Rule) *AddrMatch) addrIndex {
	rules, bs := ix.rules, ix.bs
	base := newRuleBits(bs.words)
	scratch := newRuleBits(bs.words)
	byPfx := map[netip.Prefix]*pfxRules{}
	enabled := false
	for i, r := range rules {
		am := field(r)
		if am.Any() {
			base.set(i)
			continue
		}
		enabled = true
		if !am.HasPos {
			base.set(i)
		}
		add := func(p netip.Prefix, neg bool) {
			pr := byPfx[p]
			if pr == nil {
				pr = &pfxRules{pfx: p}
				byPfx[p] = pr
			}
			list := &pr.pos
			if neg {
				list = &pr.neg
			}
			if n := len(*list); n == 0 || (*list)[n-1] != i {
				*list = append(*list, i)
			}
		}
		for _, p := range am.Pos {
			add(p, false)
		}
		for _, p := range am.Neg {
			add(p, true)
		}
	}
	idx := addrIndex{enabled: enabled, none: ix.intern(f, base, scratch)}
	if !enabled {
		return idx
	}
	order := make([]*pfxRules, 0, len(byPfx))
	for _, pr := range byPfx {
		order = append(order, pr)
	}
	slices.SortFunc(order, func(a, b *pfxRules) int {
		if c := cmp.Compare(a.pfx.Bits(), b.pfx.Bits()); c != 0 {
			return c
		}
		return a.pfx.Addr().Compare(b.pfx.Addr())
	})
	idx.table = new(bart.Table[uint64])
	cur := newRuleBits(bs.words)
	for _, pr := range order {
		if _, parent, ok := idx.table.LookupPrefixLPM(pr.pfx); ok {
			copy(cur, bs.get(uint32(parent>>32)))
		} else {
			copy(cur, base)
		}
		for _, i := range pr.pos {
			if !negatedAbove(field(rules[i]).Neg, pr.pfx) {
				cur.set(i)
			}
		}
		for _, i := range pr.neg {
			cur.clear(i)
		}
		idx.table.Insert(pr.pfx, ix.intern(f, cur, scratch))
	}
	return idx
}

// negatedAbove reports whether any of neg holds all of p.
func negatedAbove(neg []netip.Prefix, p netip.Prefix) bool {
	for _, n := range neg {
		if n.Bits() <= p.Bits() && n.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// portIndex sweeps the port space once: at each range boundary the rules
// whose coverage changes are re-evaluated, and each segment between
// boundaries gets the interned bitsets of the rules it satisfies.
func (ix *indexBuilder) portIndex(f int, allPair uint64, field func(*Rule) *PortMatch) portIndex {
	rules, bs := ix.rules, ix.bs
	noPort := newRuleBits(bs.words)
	scratch := newRuleBits(bs.words)
	enabled := false
	type event struct {
		at    int
		rule  int
		delta int
		neg   bool
	}
	var events []event
	for i, r := range rules {
		pm := field(r)
		if !pm.Set {
			noPort.set(i)
			continue
		}
		enabled = true
		for _, pr := range pm.Pos {
			events = append(events, event{int(pr.Lo), i, 1, false}, event{int(pr.Hi) + 1, i, -1, false})
		}
		for _, pr := range pm.Neg {
			events = append(events, event{int(pr.Lo), i, 1, true}, event{int(pr.Hi) + 1, i, -1, true})
		}
	}
	if !enabled {
		return portIndex{noPort: allPair}
	}
	idx := portIndex{noPort: ix.intern(f, noPort, scratch)}
	slices.SortFunc(events, func(a, b event) int { return cmp.Compare(a.at, b.at) })
	posCount := make([]int, len(rules))
	negCount := make([]int, len(rules))
	cur := newRuleBits(bs.words)
	copy(cur, noPort)
	for i, r := range rules {
		if pm := field(r); pm.Set && !pm.HasPos {
			cur.set(i) // negations only: every port until a negation
		}
	}
	eval := func(i int) {
		pm := field(rules[i])
		cur.assign(i, (!pm.HasPos || posCount[i] > 0) && negCount[i] == 0)
	}
	idx.table = make([]uint64, 65536)
	ev := 0
	for port := 0; port < 65536; {
		for ev < len(events) && events[ev].at == port {
			e := events[ev]
			if e.neg {
				negCount[e.rule] += e.delta
			} else {
				posCount[e.rule] += e.delta
			}
			eval(e.rule)
			ev++
		}
		next := 65536
		if ev < len(events) && events[ev].at < next {
			next = events[ev].at
		}
		id := ix.intern(f, cur, scratch)
		for q := port; q < next; q++ {
			idx.table[q] = id
		}
		port = next
	}
	return idx
}
