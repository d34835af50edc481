package rules

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The indexed layout finds a packet's first matching rule with a few map
// lookups however long the policy is, where the guarded blocks (blocks.go)
// still walk a guard per block and level.
//
// Every rule that tests one of the index fields (an address or a port) with
// a positive match is filed under the field where it shares its values with
// the fewest other rules. For each field, one verdict map cuts the field's
// values into intervals and jumps to the chain of the rules filed there
// whose values cover the interval, in policy order; rules that test none of
// the fields ("wild") stand in one chain of their own. A packet visits one
// chain per field plus the wild chain, and in each meets only rules it can
// match. A match there does not decide yet: the rule writes its position
// into the scratch bits of the packet mark if that is earlier than the
// position already there, and the chain returns. After the last lookup the
// mark holds the position of the first rule, in policy order, whose match
// the packet passes, and one more map sends the packet to that rule's
// action chain (its counter, log and verdict); with no position, the
// default. So the order of the policy is kept exactly: of all the rules a
// packet matches, the one earliest in the policy decides.
//
// The scratch bits are cleared before every verdict, so no packet leaves
// with them.

// indexMin is the fewest rules that get the indexed layout by default:
// below it, walking the rules costs less than the lookups.
const indexMin = 64

// Comments of the index rules in the main chain.
const (
	RuleIndex      = "index"
	RuleIndexStart = "index-start"
	RuleIndexPick  = "index-pick"
	RuleIndexEnd   = "index-end"
)

// maxIndexEntries bounds the rules written into the index chains in total
// (a rule stands once in each chain whose interval its values cover), so a
// policy of many wide, overlapping ranges falls back to guarded blocks
// instead of building an enormous table.
const maxIndexEntries = 200000

// indexFields are the fields an index can dispatch on, in order of
// preference when a rule's choice ties.
var indexFields = []payloadField{fieldDport, fieldIPDaddr, fieldIP6Daddr, fieldIPSaddr, fieldIP6Saddr, fieldSport}

// posField is where the scratch bits hold a rule's position: positions run
// 0..max-1, and all ones means none yet.
type posField struct {
	mask  uint32
	shift uint
}

func (f posField) none() uint32    { return f.mask }
func (f posField) max() int        { return int(f.mask>>f.shift) - 1 }
func (f posField) at(p int) uint32 { return uint32(p) << f.shift }
func newPosField(mask uint32) posField {
	return posField{mask: mask, shift: uint(bits.TrailingZeros32(mask))}
}

// indexed lays out rs (no default rules) as an index, adding its chains to
// out, and returns the rules of the main chain before the default, or false
// when the policy does not suit an index (too many entries, or no scratch
// bits).
//
// More rules than the scratch bits hold positions for are cut into
// segments, each a whole index of its own, one after another in the main
// chain: a segment's pick decides when one of its rules matched, and
// otherwise the packet goes on to the next segment. Every rule of a
// segment comes before every rule of the next, so the first segment with a
// match holds the first rule that matches, and the policy's order is kept.
func (p *Plan) indexed(rs []planRule, q queueStmt, mainName string, out *chainLayout) ([]rule, bool) {
	pos := newPosField(p.marks.ScratchMask())
	if pos.max() < 1 {
		return nil, false // no scratch bits, or one: no position to write
	}
	// Rules at the top that test nothing an index can use (the malformed
	// guards) stay inline, before the index.
	var main []rule
	for len(rs) > 0 && strings.HasPrefix(rs[0].comment, commentQueue+guardMalformed) {
		main = append(main, rs[0].rule(q))
		rs = rs[1:]
	}
	if len(rs) == 0 {
		return nil, false
	}
	seg := pos.max()
	if p.indexSegment > 0 && p.indexSegment < seg {
		seg = p.indexSegment
	}
	entries := 0
	for part := range slices.Chunk(rs, seg) {
		ix := &indexLayout{rs: part, pos: pos, mainName: mainName, out: out, leaf: map[string]string{}}
		m, ok := ix.layout(q, maxIndexEntries-entries)
		if !ok {
			return nil, false
		}
		entries += ix.entries
		main = append(main, m...)
	}
	return main, true
}

// layout lays out one segment's index and returns its rules of the main
// chain, or false when it would write more than budget candidate rules.
func (ix *indexLayout) layout(q queueStmt, budget int) ([]rule, bool) {
	groups, wild := fileRules(ix.rs)
	acts := actionChains(ix.rs, q, ix.pos, ix.name, ix.out)
	main := []rule{{RuleIndexStart, []stmt{markSet{keep: ^ix.pos.mask, set: ix.pos.none()}}}}
	for _, g := range groups {
		main = append(main, ix.lookupRules(g)...)
		if ix.entries > budget {
			return nil, false
		}
	}
	if len(wild) > 0 {
		main = append(main, ix.wildRule(wild))
	}
	pick := pickVmap(ix.pos.mask)
	for i, act := range acts {
		k := u32(ix.pos.at(i))
		pick.elems = append(pick.elems, vmapElem{lo: k, hi: k, chain: act})
	}
	main = append(main, rule{RuleIndexPick, []stmt{pick}}, rule{RuleIndexEnd, []stmt{markSet{keep: ^ix.pos.mask}}})
	return main, true
}

// indexLayout is an index being laid out: its rules, the chains added so
// far and the candidate chains it can share.
type indexLayout struct {
	rs       []planRule
	pos      posField
	mainName string
	out      *chainLayout
	leaf     map[string]string // candidate chain of each field and rule list
	entries  int               // candidate rules in all
	lookups  int               // lookups laid out so far
}

// name is the name of the next chain added to out.
func (ix *indexLayout) name() string { return fmt.Sprintf("%s_%d", ix.mainName, len(ix.out.blocks)) }

// candidate is rule i in a chain reached by a lookup on field (none for
// the wild chain). The lookup already tested the rule's values there: a
// key or interval of the map stands for a rule only when the rule's
// values hold all of it. In the chains of the first lookup no position is
// set yet, so there the candidate need not compare with it.
func (ix *indexLayout) candidate(i int, field *payloadField, first bool) rule {
	r := ix.rs[i]
	var stmts []stmt
	if !first {
		stmts = append(stmts, posBefore{mask: ix.pos.mask, value: ix.pos.at(i)})
	}
	stmts = append(stmts, withoutTest(r.match, field)...)
	stmts = append(stmts, markSet{keep: ^ix.pos.mask, set: ix.pos.at(i)}, verdict(expr.VerdictReturn))
	return rule{name: r.comment, stmts: stmts}
}

// lookupRules are the main chain's lookups of group g, each element
// jumping to the chain of its rules' candidates (shared by equal lists).
func (ix *indexLayout) lookupRules(g *indexGroup) []rule {
	var stmts []stmt
	if _, ok := addrKeyType(g.f.field); ok {
		fam := nfproto(unix.NFPROTO_IPV4)
		if g.f.kt == nftables.TypeIP6Addr {
			fam = unix.NFPROTO_IPV6
		}
		stmts = append(stmts, fam)
	}
	var main []rule
	for _, l := range g.lookups() {
		vm := l.vm
		first := ix.lookups == 0
		ix.lookups++
		for k := range vm.elems {
			key := fmt.Sprintf("%s:%t:%s", g.f.field.name, first, listKey(l.lists[k]))
			c, ok := ix.leaf[key]
			if !ok {
				c = ix.name()
				ix.leaf[key] = c
				b := blockChain{name: c}
				for _, i := range l.lists[k] {
					b.rules = append(b.rules, ix.candidate(i, &g.f.field, first))
				}
				ix.entries += len(l.lists[k])
				ix.out.blocks = append(ix.out.blocks, b)
			}
			vm.elems[k].chain = c
		}
		main = append(main, rule{RuleIndex, append(slices.Clip(stmts), vm)})
	}
	return main
}

// wildRule jumps to the chain of the candidates no lookup files.
func (ix *indexLayout) wildRule(wild []int) rule {
	c := ix.name()
	b := blockChain{name: c}
	for _, i := range wild {
		b.rules = append(b.rules, ix.candidate(i, nil, ix.lookups == 0))
	}
	ix.out.blocks = append(ix.out.blocks, b)
	return rule{RuleIndex, []stmt{jumpStmt(c)}}
}

// withoutTest is a rule's match without its test of field, the one the
// rule was filed by (conditions takes the first per field); all of it with
// no field.
func withoutTest(match []stmt, field *payloadField) []stmt {
	if field == nil {
		return match
	}
	for j, s := range match {
		if c, ok := condition([]stmt{s}); ok && c.f.field == *field {
			return slices.Concat(match[:j], match[j+1:])
		}
	}
	return match
}

// actionChains adds one chain per rule, reached by goto from the pick map:
// the rule's verdict, log and counter, after the scratch bits are cleared.
func actionChains(rs []planRule, q queueStmt, pos posField, name func() string, out *chainLayout) []string {
	acts := make([]string, len(rs))
	for i, r := range rs {
		acts[i] = name()
		act := r.rule(q)
		pre := []stmt{markSet{keep: ^pos.mask}}
		if slices.ContainsFunc(r.action, func(s stmt) bool { _, ok := s.(rejectTCP); return ok }) {
			// nft writes this dependency of a TCP reset itself; so the
			// rule reads back as its text does.
			pre = append(pre, l4proto(unix.IPPROTO_TCP))
		}
		act.stmts = append(pre, act.stmts[len(r.match):]...)
		out.blocks = append(out.blocks, blockChain{name: acts[i], rules: []rule{act}})
	}
	return acts
}

// indexGroup is the rules filed under one field, with the values each
// tests there.
type indexGroup struct {
	f      guardField
	rules  []int
	ranges [][][2][]byte
}

// fileRules files each rule under the index field where its values meet
// the fewest others'; rules with no index field are wild. Groups come in
// indexFields order.
func fileRules(rs []planRule) ([]*indexGroup, []int) {
	conds := make([][]guardCond, len(rs))
	byField := map[string][][2][]byte{}
	for i, r := range rs {
		conds[i] = conditions(r.match)
		for _, c := range conds[i] {
			byField[c.f.field.name] = append(byField[c.f.field.name], c.ranges...)
		}
	}
	depth := map[string]*depthMap{}
	for f, rgs := range byField {
		depth[f] = newDepthMap(rgs)
	}
	groups := map[string]*indexGroup{}
	var wild []int
	for i := range rs {
		best, bestCost := -1, 0
		for j, c := range conds[i] {
			cost := depth[c.f.field.name].max(c.ranges)
			if best < 0 || cost < bestCost || cost == bestCost && fieldRank(c.f.field) < fieldRank(conds[i][best].f.field) {
				best, bestCost = j, cost
			}
		}
		if best < 0 {
			wild = append(wild, i)
			continue
		}
		c := conds[i][best]
		g := groups[c.f.field.name]
		if g == nil {
			g = &indexGroup{f: c.f}
			groups[c.f.field.name] = g
		}
		g.rules = append(g.rules, i)
		g.ranges = append(g.ranges, c.ranges)
	}
	var out []*indexGroup
	for _, f := range indexFields {
		if g := groups[f.name]; g != nil {
			out = append(out, g)
		}
	}
	return out, wild
}

func fieldRank(f payloadField) int {
	return slices.IndexFunc(indexFields, func(x payloadField) bool { return x.name == f.name })
}

// conditions is every positive address or port test of a rule's match, one
// per field (see condition).
func conditions(stmts []stmt) []guardCond {
	var out []guardCond
	seen := map[string]bool{}
	for _, s := range stmts {
		c, ok := condition([]stmt{s})
		if !ok || seen[c.f.field.name] {
			continue
		}
		seen[c.f.field.name] = true
		out = append(out, c)
	}
	return out
}

// depthMap counts, for each elementary interval of a field's values, how
// many ranges cover it.
type depthMap struct {
	points [][]byte // interval starts, sorted
	depth  []int
}

func newDepthMap(rgs [][2][]byte) *depthMap {
	pts := boundaries(rgs)
	d := &depthMap{points: pts, depth: make([]int, len(pts))}
	diff := make([]int, len(pts)+1)
	for _, r := range rgs {
		lo, hi := d.span(r)
		diff[lo]++
		diff[hi+1]--
	}
	run := 0
	for i := range pts {
		run += diff[i]
		d.depth[i] = run
	}
	return d
}

// span is the first and last elementary interval inside r.
func (d *depthMap) span(r [2][]byte) (int, int) {
	lo := sort.Search(len(d.points), func(i int) bool { return bytes.Compare(d.points[i], r[0]) >= 0 })
	hi := sort.Search(len(d.points), func(i int) bool { return bytes.Compare(d.points[i], r[1]) > 0 }) - 1
	return lo, hi
}

// max is the deepest interval any of rgs covers.
func (d *depthMap) max(rgs [][2][]byte) int {
	m := 0
	for _, r := range rgs {
		lo, hi := d.span(r)
		for i := lo; i <= hi; i++ {
			m = max(m, d.depth[i])
		}
	}
	return m
}

// boundaries is every point where some range starts or the one after it
// ends, sorted and unique: the starts of the elementary intervals.
func boundaries(rgs [][2][]byte) [][]byte {
	var pts [][]byte
	for _, r := range rgs {
		pts = append(pts, r[0])
		if end, overflow := increment(r[1]); !overflow {
			pts = append(pts, end)
		}
	}
	slices.SortFunc(pts, bytes.Compare)
	return slices.CompactFunc(pts, bytes.Equal)
}

// intervals cuts the group's values into intervals, each with the rules
// whose values cover it, in policy order; neighbours with the same rules
// are one interval, and values no rule covers are left out.
func (g *indexGroup) intervals() ([][2][]byte, [][]int) {
	var all [][2][]byte
	for _, rgs := range g.ranges {
		all = append(all, rgs...)
	}
	pts := boundaries(all)
	d := &depthMap{points: pts}
	cover := make([][]int, len(pts))
	for k, rgs := range g.ranges {
		for _, r := range rgs {
			lo, hi := d.span(r)
			for i := lo; i <= hi; i++ {
				cover[i] = append(cover[i], g.rules[k])
			}
		}
	}
	var elems [][2][]byte
	var lists [][]int
	for i, c := range cover {
		if len(c) == 0 {
			continue
		}
		slices.Sort(c)
		c = slices.Compact(c)
		var hi []byte
		if i+1 < len(pts) {
			hi = decrement(pts[i+1])
		} else {
			hi = bytes.Repeat([]byte{0xff}, len(pts[i]))
		}
		if n := len(elems); n > 0 && slices.Equal(lists[n-1], c) {
			if next, _ := increment(elems[n-1][1]); bytes.Equal(next, pts[i]) {
				elems[n-1][1] = hi
				continue
			}
		}
		elems = append(elems, [2][]byte{pts[i], hi})
		lists = append(lists, c)
	}
	return elems, lists
}

// decrement returns b-1 as a big-endian number of the same length (b > 0).
func decrement(b []byte) []byte {
	out := bytes.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]--
		if out[i] != 0xff {
			break
		}
	}
	return out
}

func listKey(l []int) string {
	var b strings.Builder
	for _, i := range l {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte(',')
	}
	return b.String()
}

// posBefore is `meta mark & mask > value` : the position already found is
// later than value (or none). The mark is host order in the register, so it
// is turned big-endian first, as nft does for an ordering comparison.
type posBefore struct{ mask, value uint32 }

func (s posBefore) exprs() []expr.Any {
	return []expr.Any{
		keyMeta.load(),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: u32(s.mask), Xor: u32(0)},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Cmp{Op: expr.CmpOpGt, Register: 1, Data: binary.BigEndian.AppendUint32(nil, s.value)},
	}
}

func (s posBefore) text() string { return fmt.Sprintf("meta mark & 0x%08x > 0x%08x", s.mask, s.value) }

// vmapElem is one interval of an index map and the chain it jumps to.
type vmapElem struct {
	lo, hi []byte
	chain  string
}

// vmapStmt is `FIELD vmap { lo-hi : jump chain, ... }`, an interval map,
// or with exact `FIELD vmap { key : jump chain, ... }` (lo == hi); with
// gotoChain the verdicts are goto.
type vmapStmt struct {
	load      []expr.Any
	loadText  string
	kt        nftables.SetDatatype
	exact     bool
	gotoChain bool
	show      func([]byte) string
	elems     []vmapElem
}

func (s vmapStmt) verdict() (expr.VerdictKind, string) {
	if s.gotoChain {
		return expr.VerdictGoto, "goto"
	}
	return expr.VerdictJump, "jump"
}

// fieldVmap is an interval map on a header field.
func fieldVmap(f payloadField, kt nftables.SetDatatype) vmapStmt {
	show := beText
	if _, ok := addrKeyType(f); ok {
		show = showAddr
	}
	return vmapStmt{load: []expr.Any{f.load()}, loadText: f.name, kt: kt, show: show}
}

func (s vmapStmt) lookup(set *nftables.Set) []expr.Any {
	l := &expr.Lookup{SourceRegister: 1, IsDestRegSet: true, DestRegister: 0}
	if set != nil {
		l.SetName, l.SetID = set.Name, set.ID
	}
	return append(append([]expr.Any(nil), s.load...), l)
}

func (s vmapStmt) exprs() []expr.Any { return s.lookup(nil) }

func (s vmapStmt) setExprs(c *nftables.Conn, t *nftables.Table) ([]expr.Any, error) {
	set := &nftables.Set{
		Table: t, Anonymous: true, Constant: true, Interval: !s.exact, IsMap: true,
		KeyType: s.kt, DataType: nftables.TypeVerdict,
	}
	kind, _ := s.verdict()
	var elems []nftables.SetElement
	for _, e := range s.elems {
		elems = append(elems, nftables.SetElement{Key: e.lo, VerdictData: &expr.Verdict{Kind: kind, Chain: e.chain}})
		if s.exact {
			continue
		}
		if end, overflow := increment(e.hi); !overflow {
			elems = append(elems, nftables.SetElement{Key: end, IntervalEnd: true})
		}
	}
	if err := addSet(c, set, elems); err != nil {
		return nil, fmt.Errorf("rules: add map for %s: %w", s.loadText, err)
	}
	return s.lookup(set), nil
}

func (s vmapStmt) text() string {
	_, word := s.verdict()
	var parts []string
	for _, e := range s.elems {
		k := s.show(e.lo)
		if !bytes.Equal(e.lo, e.hi) {
			k += "-" + s.show(e.hi)
		}
		parts = append(parts, k+" : "+word+" "+e.chain)
	}
	return fmt.Sprintf("%s vmap { %s }", s.loadText, strings.Join(parts, ", "))
}

// pickVmap is `meta mark & mask vmap { value : goto chain, ... }`, keyed
// by the host-order mark.
func pickVmap(mask uint32) vmapStmt {
	return vmapStmt{
		load: []expr.Any{
			keyMeta.load(),
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: u32(mask), Xor: u32(0)},
		},
		loadText: fmt.Sprintf("meta mark & 0x%08x", mask),
		kt:       nftables.TypeMark, exact: true, gotoChain: true,
		show: func(k []byte) string { return fmt.Sprintf("0x%08x", binary.NativeEndian.Uint32(k)) },
	}
}

// indexMinRules is the fewest rules that get the indexed layout, 0 for
// never.
func (p *Plan) indexMinRules() int {
	switch {
	case p.indexMin < 0:
		return 0
	case p.indexMin == 0:
		return indexMin
	}
	return p.indexMin
}
