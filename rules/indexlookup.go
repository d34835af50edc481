package rules

import (
	"bytes"
	"encoding/binary"
	"maps"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// An index group's lookups. An interval map walks a tree for every packet,
// a map of exact keys probes a hash once, several times faster (see
// bench/README.md, "Kernel path: index and stateless tables"). So a group's
// values go into exact maps where a few of them hold it: ports value by
// value, addresses one map per prefix length (the address masked to the
// length is the key). What they cannot hold stays in one interval map, as
// before. The maps together hand a packet the same rules the one interval
// map did: each rule is under its own values in one of them, and the index
// keeps the earliest rule the packet matches, whichever map found it.

const (
	// maxPortSpan is the widest port range written out value by value.
	maxPortSpan = 1024
	// maxExactPorts bounds a port map's keys.
	maxExactPorts = 16384
	// maxPrefixMaps is how many prefix lengths of an address field get a
	// map of their own; the rarer lengths share the interval map.
	maxPrefixMaps = 3
)

// indexLookup is one map of a group and, for each of its elements, the
// rules it hands the packet to, in policy order (vmap elements have no
// chain yet).
type indexLookup struct {
	vm    vmapStmt
	lists [][]int
}

// lookups splits the group's values into exact maps and at most one
// interval map.
func (g *indexGroup) lookups() []indexLookup {
	var out []indexLookup
	rest := &indexGroup{f: g.f}
	if _, ok := addrKeyType(g.f.field); ok {
		out = g.prefixLookups(rest)
	} else {
		out = g.portLookups(rest)
	}
	if len(rest.rules) > 0 {
		elems, lists := rest.intervals()
		vm := fieldVmap(g.f.field, g.f.kt)
		for _, e := range elems {
			vm.elems = append(vm.elems, vmapElem{lo: e[0], hi: e[1]})
		}
		out = append(out, indexLookup{vm: vm, lists: lists})
	}
	return out
}

// add files range r of rule i in the group.
func (g *indexGroup) add(i int, r [2][]byte) {
	if n := len(g.rules); n > 0 && g.rules[n-1] == i {
		g.ranges[n-1] = append(g.ranges[n-1], r)
		return
	}
	g.rules = append(g.rules, i)
	g.ranges = append(g.ranges, [][2][]byte{r})
}

// portLookups is one exact map of every port in the group's narrow
// ranges, when they are few enough; the rest goes to rest.
func (g *indexGroup) portLookups(rest *indexGroup) []indexLookup {
	narrow := func(r [2][]byte) bool {
		return binary.BigEndian.Uint16(r[1])-binary.BigEndian.Uint16(r[0]) < maxPortSpan
	}
	keys := map[uint16][]int{}
	for k, rgs := range g.ranges {
		for _, r := range rgs {
			if !narrow(r) {
				rest.add(g.rules[k], r)
				continue
			}
			for v := int(binary.BigEndian.Uint16(r[0])); v <= int(binary.BigEndian.Uint16(r[1])); v++ {
				keys[uint16(v)] = append(keys[uint16(v)], g.rules[k])
			}
		}
		if len(keys) > maxExactPorts {
			*rest = *g
			return nil
		}
	}
	if len(keys) == 0 {
		return nil
	}
	vm := fieldVmap(g.f.field, g.f.kt)
	vm.exact = true
	var lists [][]int
	for _, v := range slices.Sorted(maps.Keys(keys)) {
		k := bigEndian16(v)
		vm.elems = append(vm.elems, vmapElem{lo: k, hi: k})
		lists = append(lists, ruleList(keys[v]))
	}
	return []indexLookup{{vm: vm, lists: lists}}
}

// prefixLookups cuts the group's address ranges into prefixes and gives
// each of the maxPrefixMaps commonest prefix lengths an exact map keyed by
// the address masked to that length; the other prefixes go to rest.
func (g *indexGroup) prefixLookups(rest *indexGroup) []indexLookup {
	type entry struct {
		pfx  netip.Prefix
		rule int
	}
	byLen := map[int][]entry{}
	for k, rgs := range g.ranges {
		for _, r := range rgs {
			for _, p := range rangePrefixes(r) {
				byLen[p.Bits()] = append(byLen[p.Bits()], entry{p, g.rules[k]})
			}
		}
	}
	lens := slices.SortedFunc(maps.Keys(byLen), func(a, b int) int {
		if d := len(byLen[b]) - len(byLen[a]); d != 0 {
			return d
		}
		return a - b
	})
	var out []indexLookup
	for n, l := range lens {
		if n >= maxPrefixMaps {
			for _, e := range byLen[l] {
				rest.add(e.rule, prefixRange(e.pfx))
			}
			continue
		}
		keys := map[netip.Addr][]int{}
		for _, e := range byLen[l] {
			keys[e.pfx.Addr()] = append(keys[e.pfx.Addr()], e.rule)
		}
		vm := maskedVmap(g.f.field, g.f.kt, l)
		var lists [][]int
		for _, a := range slices.SortedFunc(maps.Keys(keys), netip.Addr.Compare) {
			k := a.AsSlice()
			vm.elems = append(vm.elems, vmapElem{lo: k, hi: k})
			lists = append(lists, ruleList(keys[a]))
		}
		out = append(out, indexLookup{vm: vm, lists: lists})
	}
	// rest.add wants one rule's ranges together and in order.
	rest.sortRules()
	return out
}

// sortRules puts the group's rules in policy order, merging a rule's
// ranges into one entry.
func (g *indexGroup) sortRules() {
	byRule := map[int][][2][]byte{}
	for k, i := range g.rules {
		byRule[i] = append(byRule[i], g.ranges[k]...)
	}
	g.rules, g.ranges = nil, nil
	for _, i := range slices.Sorted(maps.Keys(byRule)) {
		g.rules = append(g.rules, i)
		g.ranges = append(g.ranges, byRule[i])
	}
}

// maskedVmap is an exact map on an address field masked to bits (no mask
// for a full-length prefix).
func maskedVmap(f payloadField, kt nftables.SetDatatype, bits int) vmapStmt {
	vm := fieldVmap(f, kt)
	vm.exact = true
	if bits == int(f.len)*8 {
		return vm
	}
	m := bytes.Repeat([]byte{0xff}, int(f.len))
	for i := bits; i < len(m)*8; i++ {
		m[i/8] &^= 0x80 >> (i % 8)
	}
	vm.load = append(vm.load, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: f.len, Mask: m, Xor: make([]byte, f.len)})
	vm.loadText += " & " + showAddr(m)
	return vm
}

// rangePrefixes is the fewest prefixes covering exactly the address range
// r, in order.
func rangePrefixes(r [2][]byte) []netip.Prefix {
	lo, _ := netip.AddrFromSlice(r[0])
	hi, _ := netip.AddrFromSlice(r[1])
	var out []netip.Prefix
	for {
		var p netip.Prefix
		for bits := 0; bits <= lo.BitLen(); bits++ {
			p = netip.PrefixFrom(lo, bits)
			if p.Masked().Addr() != lo {
				continue
			}
			if end := prefixRange(p)[1]; bytes.Compare(end, r[1]) <= 0 {
				break
			}
		}
		out = append(out, p)
		last, _ := netip.AddrFromSlice(prefixRange(p)[1])
		if last.Compare(hi) >= 0 {
			return out
		}
		lo = last.Next()
	}
}

// ruleList is rules sorted and without repeats.
func ruleList(rules []int) []int {
	slices.Sort(rules)
	return slices.Compact(rules)
}
