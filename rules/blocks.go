package rules

import (
	"fmt"
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
	defaultBlockSize = 128
	minBlock         = 4
)

// RuleGuard is the comment of a block guard rule.
const RuleGuard = "guard"

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

// layout splits hook h's compiled rules into guarded blocks. Order is kept:
// the main chain visits the blocks in policy order, each block's rules are
// in policy order, and every rule ends in a verdict, so a block that does
// not decide returns to the main chain, which goes on with the next block
// (or, after a second guard of the same block passes, enters it again and
// finds nothing again). A block with a rule that offers no condition is
// written inline.
func (p *Plan) layout(h nf.Hook, q queueStmt, mainName string) chainLayout {
	var out chainLayout
	rs := p.chains[h]
	n := len(rs)
	// The default's rules stay at the end of the main chain.
	tail := n
	for tail > 0 && rs[tail-1].comment == commentDefault {
		tail--
	}
	size, least := p.blockSize, minBlock
	if size == 0 {
		size = defaultBlockSize
	}
	if size < least {
		least = size // tests use tiny blocks to put guards everywhere
	}
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
				out.main = append(out.main, r.rule(q))
			}
			continue
		}
		name := fmt.Sprintf("%s_%d", mainName, len(out.blocks))
		b := blockChain{name: name}
		for _, r := range blk {
			b.rules = append(b.rules, r.rule(q))
		}
		out.blocks = append(out.blocks, b)
		byField := map[string]*guardCond{}
		for _, c := range conds {
			g := byField[c.f.field.name]
			if g == nil {
				g = &guardCond{f: c.f}
				byField[c.f.field.name] = g
			}
			g.ranges = append(g.ranges, c.ranges...)
		}
		fields := make([]string, 0, len(byField))
		for k := range byField {
			fields = append(fields, k)
		}
		sort.Strings(fields)
		for _, k := range fields {
			g := byField[k]
			rs := mergeRanges(g.ranges)
			var stmts []stmt
			show := beText
			if _, ok := addrKeyType(g.f.field); ok {
				show = showAddr
				// Written out, as nft adds it to the text anyway: the
				// field exists in this family only.
				fam := nfproto(unix.NFPROTO_IPV4)
				if g.f.kt == nftables.TypeIP6Addr {
					fam = unix.NFPROTO_IPV6
				}
				stmts = append(stmts, fam)
			}
			switch {
			case len(rs) > 1:
				stmts = append(stmts, setMatch{load: g.f.field.load(), loadText: g.f.field.name, keyType: g.f.kt, interval: true, ranges: rs, show: show})
			default:
				stmts = append(stmts, oneRange(g.f, rs[0], show))
			}
			out.main = append(out.main, rule{name: RuleGuard, stmts: append(stmts, jumpStmt(name))})
		}
	}
	for _, r := range rs[tail:] {
		out.main = append(out.main, r.rule(q))
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
