package rules

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TestLookupsHandOutWhatIntervalsDo compares the exact maps (and their
// interval remainder) with the one interval map they replace: for random
// groups of port and address ranges and random values, the rules the
// lookups hand a value to, together, are the rules whose ranges hold it.
func TestLookupsHandOutWhatIntervalsDo(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 13))
	fields := []guardField{
		{field: fieldDport, kt: nftables.TypeInetService},
		{field: fieldIPSaddr, kt: nftables.TypeIPAddr},
		{field: fieldIP6Daddr, kt: nftables.TypeIP6Addr},
	}
	for round := range 300 {
		f := fields[round%len(fields)]
		g := randomGroup(rng, f)
		ls := g.lookups()
		exact, interval := 0, 0
		for _, l := range ls {
			if l.vm.exact {
				exact++
			} else {
				interval++
			}
		}
		if interval > 1 {
			t.Fatalf("round %d: %d interval maps, want at most one", round, interval)
		}
		if _, addr := addrKeyType(f.field); addr && exact > maxPrefixMaps {
			t.Fatalf("round %d: %d prefix maps, want at most %d", round, exact, maxPrefixMaps)
		}
		for range 200 {
			v := g.sampleValue(rng)
			want := g.covering(v)
			var got []int
			for _, l := range ls {
				got = append(got, l.handOut(v)...)
			}
			got = ruleList(got)
			if !slices.Equal(got, want) {
				t.Fatalf("round %d, field %s, value %x: lookups give rules %v, the ranges hold %v\ngroup %v", round, f.field.name, v, got, want, g.ranges)
			}
		}
	}
}

func TestRangePrefixes(t *testing.T) {
	for _, tt := range []struct{ lo, hi, want string }{
		{"10.0.0.0", "10.0.0.255", "[10.0.0.0/24]"},
		{"10.0.0.1", "10.0.0.6", "[10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32]"},
		{"0.0.0.0", "255.255.255.255", "[0.0.0.0/0]"},
		{"255.255.255.254", "255.255.255.255", "[255.255.255.254/31]"},
		{"2001:db8::", "2001:db8::1:0", "[2001:db8::/112 2001:db8::1:0/128]"},
	} {
		r := [2][]byte{netip.MustParseAddr(tt.lo).AsSlice(), netip.MustParseAddr(tt.hi).AsSlice()}
		if got := fmtPrefixes(rangePrefixes(r)); got != tt.want {
			t.Errorf("rangePrefixes(%s-%s) = %s, want %s", tt.lo, tt.hi, got, tt.want)
		}
	}
}

func fmtPrefixes(ps []netip.Prefix) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.String())
	}
	b.WriteByte(']')
	return b.String()
}

// randomGroup is 1-40 rules of 1-3 ranges each: single values, narrow and
// wide ranges, prefixes and arbitrary address ranges, clustered so they
// overlap.
func randomGroup(rng *rand.Rand, f guardField) *indexGroup {
	g := &indexGroup{f: f}
	n := 1 + rng.IntN(40)
	for i := range n {
		var rgs [][2][]byte
		for range 1 + rng.IntN(3) {
			rgs = append(rgs, randomRange(rng, int(f.field.len)))
		}
		g.rules = append(g.rules, 3*i) // positions need not be dense
		g.ranges = append(g.ranges, mergeRanges(rgs))
	}
	return g
}

func randomRange(rng *rand.Rand, n int) [2][]byte {
	base := make([]byte, n)
	// A small neighbourhood, so that ranges overlap.
	base[0] = byte(rng.IntN(2))
	if n > 2 {
		base[0] = 10
		base[n-2] = byte(rng.IntN(4))
	}
	base[n-1] = byte(rng.IntN(256))
	switch rng.IntN(4) {
	case 0: // one value
		return [2][]byte{base, bytes.Clone(base)}
	case 1: // a prefix
		if n == 2 {
			size := uint16(1) << rng.IntN(12)
			lo := binary.BigEndian.Uint16(base) &^ (size - 1)
			return [2][]byte{bigEndian16(lo), bigEndian16(lo + size - 1)}
		}
		return prefixRange(netip.PrefixFrom(addrOf(base), n*8-rng.IntN(20)).Masked())
	default: // an arbitrary range, narrow or wide
		hi := bytes.Clone(base)
		span := rng.IntN(3000)
		if rng.IntN(5) == 0 {
			span = rng.IntN(40000)
		}
		for i := 0; i < span; i++ {
			next, overflow := increment(hi)
			if overflow {
				break
			}
			hi = next
		}
		return [2][]byte{base, hi}
	}
}

func addrOf(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}

// sampleValue is a value at or next to the edge of one of the group's
// ranges, or anywhere near them.
func (g *indexGroup) sampleValue(rng *rand.Rand) []byte {
	rgs := g.ranges[rng.IntN(len(g.ranges))]
	r := rgs[rng.IntN(len(rgs))]
	switch rng.IntN(5) {
	case 0:
		return r[0]
	case 1:
		return r[1]
	case 2:
		if v, overflow := increment(r[1]); !overflow {
			return v
		}
		return r[1]
	case 3:
		if !bytes.Equal(r[0], make([]byte, len(r[0]))) {
			return decrement(r[0])
		}
		return r[0]
	}
	v := bytes.Clone(r[0])
	v[len(v)-1] ^= byte(rng.IntN(256))
	return v
}

// covering is the rules whose ranges hold v, in policy order.
func (g *indexGroup) covering(v []byte) []int {
	var out []int
	for k, rgs := range g.ranges {
		for _, r := range rgs {
			if bytes.Compare(r[0], v) <= 0 && bytes.Compare(v, r[1]) <= 0 {
				out = append(out, g.rules[k])
				break
			}
		}
	}
	return ruleList(out)
}

// handOut is what the map does with v: the rules of the element whose key
// the (masked) value equals, or whose interval holds it.
func (l indexLookup) handOut(v []byte) []int {
	key := bytes.Clone(v)
	for _, e := range l.vm.load {
		if b, ok := e.(*expr.Bitwise); ok {
			for i := range key {
				key[i] &= b.Mask[i]
			}
		}
	}
	for k, e := range l.vm.elems {
		if bytes.Compare(e.lo, key) <= 0 && bytes.Compare(key, e.hi) <= 0 {
			return l.lists[k]
		}
	}
	return nil
}
