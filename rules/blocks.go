package rules

import (
	"fmt"
	"slices"
	"sort"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
)

// defaultBlockSize is how many consecutive policy-chain rules share one
// block. A packet enters a block only through its guards, so most packets
// skip most blocks with a few set lookups instead of testing every rule.
// Blocks of fewer than minBlock rules are written inline.
const (
	defaultBlockSize = 16
	minBlock         = 4
)

// RuleGuard is the comment of a block guard rule, RuleProto of a jump to a
// protocol's tree.
const (
	RuleGuard = "guard"
	RuleProto = "proto"
)

// chainLayout is a hook's compiled policy as installed: the main policy
// chain (block guards, unguarded rules, the default) and the block chains
// its guards jump to.
type chainLayout struct {
	main   []rule
	blocks []blockChain
}

type blockChain struct {
	name  string
	rules []rule
}

// guardField is a header field a guard tests, with its set key type.
type guardField struct {
	field payloadField
	kt    nftables.SetDatatype
}

// guardCond is a necessary condition of one rule: the field must hold one
// of ranges for the rule to match.
type guardCond struct {
	f      guardField
	ranges [][2][]byte
}

// condition finds, in a rule's matches, one positive address or port test:
// a packet the rule matches passes it. It reads the field whatever the
// packet's family or protocol; a packet of another family or without ports
// may pass or fail it, but the rule (which tests those too) cannot match
// such a packet either way, so the condition stays necessary.
func condition(stmts []stmt) (guardCond, bool) {
	for _, s := range stmts {
		switch m := s.(type) {
		case prefixMatch:
			if m.neg {
				continue
			}
			if kt, ok := addrKeyType(m.field); ok {
				return guardCond{guardField{m.field, kt}, [][2][]byte{prefixRange(m.pfx)}}, true
			}
		case setMatch:
			if m.neg || !m.interval {
				continue
			}
			if f, ok := setField(m); ok {
				return guardCond{f, m.ranges}, true
			}
		case rangeMatch:
			if m.neg || m.loadExpr != nil || (m.field != fieldSport && m.field != fieldDport) {
				continue
			}
			return guardCond{guardField{m.field, nftables.TypeInetService}, [][2][]byte{{m.lo, m.hi}}}, true
		}
	}
	return guardCond{}, false
}

func addrKeyType(f payloadField) (nftables.SetDatatype, bool) {
	switch f {
	case fieldIPSaddr, fieldIPDaddr:
		return nftables.TypeIPAddr, true
	case fieldIP6Saddr, fieldIP6Daddr:
		return nftables.TypeIP6Addr, true
	}
	return nftables.SetDatatype{}, false
}

// setField recognises the field of an address or port set match by its
// text, which names the field exactly.
func setField(m setMatch) (guardField, bool) {
	for _, f := range []payloadField{fieldIPSaddr, fieldIPDaddr, fieldIP6Saddr, fieldIP6Daddr, fieldSport, fieldDport} {
		if m.loadText == f.name {
			if kt, ok := addrKeyType(f); ok {
				return guardField{f, kt}, true
			}
			return guardField{f, nftables.TypeInetService}, true
		}
	}
	return guardField{}, false
}

// guarded is one entry of a layout level: a chain entered only through
// its guards (one rule per field, jumping to the chain), or, with no
// guards, one rule written inline.
type guarded struct {
	guards map[string]*guardCond // nil: inline
	chain  string
	inline rule
}

// layout splits hook h's compiled rules into a tree of guarded chains.
// Leaves are blocks of consecutive rules; each level above groups
// consecutive guarded entries under guards that are the union of theirs,
// so a packet pays a few guards per level instead of a few per block.
// Order is kept: every chain visits its entries in policy order, and every
// rule ends in a verdict, so a chain that does not decide returns to its
// parent, which goes on with the next entry (or, after a second guard of
// the same entry passes, enters it again and finds nothing again). A guard
// is a necessary condition of every rule under it, so skipping an entry
// skips only rules the packet cannot match. A block with a rule that offers
// no condition is written inline, and inline entries are never grouped.
func (p *Plan) layout(h nf.Hook, q queueStmt, mainName string) chainLayout {
	var out chainLayout
	rs := p.chains[h]
	if p.stateless {
		return p.splitLayout(rs, q, mainName)
	}
	out.main = p.layoutRules(rs, q, mainName, &out, true)
	return out
}

// layoutRules lays out rs (ending in the default's rules) into out's
// chains and returns the rules of the main chain; split allows one tree per
// protocol.
func (p *Plan) layoutRules(rs []planRule, q queueStmt, mainName string, out *chainLayout, split bool) []rule {
	n := len(rs)
	// The default's rules stay at the end of the main chain.
	tail := n
	for tail > 0 && rs[tail-1].comment == commentDefault {
		tail--
	}
	size := p.blockSize
	if size == 0 {
		size = defaultBlockSize
	}
	var defaults []rule
	for _, r := range rs[tail:] {
		defaults = append(defaults, r.rule(q))
	}
	if min := p.indexMinRules(); min > 0 && tail >= min {
		kept := len(out.blocks)
		if main, ok := p.indexed(rs[:tail], q, mainName, out); ok {
			return append(main, defaults...)
		}
		out.blocks = out.blocks[:kept]
	}
	protos, some := protoSplit(rs[:tail])
	if !split || !some || tail <= size {
		return append(p.tree(rs[:tail], q, mainName, out), defaults...)
	}
	var main []rule
	// One tree per protocol the rules name, each of the rules a packet of
	// that protocol can match (those naming it and those naming none), in
	// policy order and ending in the default, so that a packet never
	// passes the guards of rules of other protocols. meta l4proto is the
	// rules' own protocol test, so a packet goes to the tree of exactly the
	// rules whose protocol test it passes. The rest go through the rules
	// that name no protocol, in the main chain.
	var rest []planRule
	for _, r := range rs[:tail] {
		if ruleProtos(r.match) == nil {
			rest = append(rest, r)
		}
	}
	for _, pr := range protos {
		var sub []planRule
		for _, r := range rs[:tail] {
			ps := ruleProtos(r.match)
			if ps == nil || slices.Contains(ps, pr) {
				sub = append(sub, r)
			}
		}
		b := blockChain{name: fmt.Sprintf("%s_%d", mainName, len(out.blocks))}
		idx := len(out.blocks)
		out.blocks = append(out.blocks, b)
		out.blocks[idx].rules = append(p.tree(sub, q, mainName, out), defaults...)
		main = append(main, rule{name: RuleProto, stmts: []stmt{l4proto(pr), jumpStmt(b.name)}})
	}
	return append(append(main, p.tree(rest, q, mainName, out)...), defaults...)
}

// ruleProtos is the protocols a rule's match admits (meta l4proto, always
// a positive test), nil when it tests none.
func ruleProtos(stmts []stmt) []uint8 {
	for _, s := range stmts {
		switch m := s.(type) {
		case l4proto:
			return []uint8{uint8(m)}
		case setMatch:
			if m.loadText != "meta l4proto" || m.neg {
				continue
			}
			var out []uint8
			for _, r := range m.ranges {
				for v := int(r[0][0]); v <= int(r[1][0]); v++ {
					out = append(out, uint8(v))
				}
			}
			return out
		}
	}
	return nil
}

// protoSplit is the protocols the rules name, in order of first use, and
// whether splitting by them leaves any rule out of some tree.
func protoSplit(rs []planRule) ([]uint8, bool) {
	var out []uint8
	some := false
	for _, r := range rs {
		ps := ruleProtos(r.match)
		if ps != nil {
			some = true
		}
		for _, p := range ps {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out, some && len(out) <= maxProtoTrees
}

// maxProtoTrees bounds the protocol trees: each holds a copy of every rule
// that names no protocol.
const maxProtoTrees = 6

// tree lays out rs (no default rules) as guarded blocks nested in levels,
// adding the chains to out, and returns the rules of its top level.
func (p *Plan) tree(rs []planRule, q queueStmt, mainName string, out *chainLayout) []rule {
	tail := len(rs)
	size, least := p.blockSize, minBlock
	if size == 0 {
		size = defaultBlockSize
	}
	fanout := defaultFanout
	if size < least {
		// Tests use tiny blocks to put guards everywhere; they get the
		// deepest nesting too.
		least, fanout = size, 2
	}
	var level []guarded
	for start := 0; start < tail; start += size {
		end := min(start+size, tail)
		blk := rs[start:end]
		var conds []guardCond
		for _, r := range blk {
			c, ok := condition(r.match)
			if !ok {
				conds = nil
				break
			}
			conds = append(conds, c)
		}
		if len(conds) == 0 || len(blk) < least {
			for _, r := range blk {
				level = append(level, guarded{inline: r.rule(q)})
			}
			continue
		}
		b := blockChain{name: fmt.Sprintf("%s_%d", mainName, len(out.blocks))}
		for _, r := range blk {
			b.rules = append(b.rules, r.rule(q))
		}
		out.blocks = append(out.blocks, b)
		g := guarded{guards: map[string]*guardCond{}, chain: b.name}
		for _, c := range conds {
			g.addGuard(c)
		}
		level = append(level, g)
	}
	// Group until a level is short enough to walk, or grouping no longer
	// shortens it (inline rules between the guarded entries).
	for len(level) > fanout {
		var next []guarded
		for i := 0; i < len(level); {
			j := i
			for j < len(level) && j-i < fanout && level[j].guards != nil {
				j++
			}
			if j-i < 2 {
				next = append(next, level[i])
				i++
				continue
			}
			b := blockChain{name: fmt.Sprintf("%s_%d", mainName, len(out.blocks))}
			g := guarded{guards: map[string]*guardCond{}, chain: b.name}
			for _, e := range level[i:j] {
				b.rules = append(b.rules, e.rules()...)
				for _, c := range e.guards {
					g.addGuard(*c)
				}
			}
			out.blocks = append(out.blocks, b)
			next = append(next, g)
			i = j
		}
		if len(next) == len(level) {
			break
		}
		level = next
	}
	var top []rule
	for _, e := range level {
		top = append(top, e.rules()...)
	}
	return top
}

// defaultFanout is how many entries a level groups under one set of guards. The
// depth grows with its logarithm, and nft allows only a few levels of
// jumps, so it cannot be small; a packet pays up to fanout entries' guards
// per level, so it cannot be large.
const defaultFanout = 8

func (g *guarded) addGuard(c guardCond) {
	e := g.guards[c.f.field.name]
	if e == nil {
		e = &guardCond{f: c.f}
		g.guards[c.f.field.name] = e
	}
	e.ranges = append(e.ranges, c.ranges...)
}

// rules are the rules of the entry in its parent chain: its guards, or its
// inline rule.
func (g guarded) rules() []rule {
	if g.guards == nil {
		return []rule{g.inline}
	}
	fields := make([]string, 0, len(g.guards))
	for k := range g.guards {
		fields = append(fields, k)
	}
	sort.Strings(fields)
	var out []rule
	for _, k := range fields {
		c := g.guards[k]
		rs := mergeRanges(c.ranges)
		var stmts []stmt
		show := beText
		if _, ok := addrKeyType(c.f.field); ok {
			show = showAddr
			// Written out, as nft adds it to the text anyway: the
			// field exists in this family only.
			fam := nfproto(unix.NFPROTO_IPV4)
			if c.f.kt == nftables.TypeIP6Addr {
				fam = unix.NFPROTO_IPV6
			}
			stmts = append(stmts, fam)
		}
		switch {
		case len(rs) > 1:
			stmts = append(stmts, setMatch{load: c.f.field.load(), loadText: c.f.field.name, keyType: c.f.kt, interval: true, ranges: rs, show: show})
		default:
			stmts = append(stmts, oneRange(c.f, rs[0], show))
		}
		out = append(out, rule{name: RuleGuard, stmts: append(stmts, jumpStmt(g.chain))})
	}
	return out
}

// oneRange tests one range of a guard field: a prefix when it is one, a
// range otherwise.
func oneRange(f guardField, r [2][]byte, show func([]byte) string) stmt {
	if f.kt != nftables.TypeInetService {
		if p, ok := rangePrefix(r); ok {
			return prefixMatch{field: f.field, pfx: p}
		}
	}
	return rangeMatch{field: f.field, lo: r[0], hi: r[1], show: show}
}
