package policies

import "slices"

// bitsets is an arena of equal-length rule bitsets, deduplicated: rules
// that share a field value share one bitset, so a 65,536-entry port table
// or a prefix table holds small indices into it. Each bitset has a summary
// with one bit per word, set when the word is non-zero, so Decide can skip
// runs of rules no field admits without reading them.
type bitsets struct {
	words int      // 64-rule words per bitset
	sumw  int      // summary words per bitset
	bits  []uint64 // bitset i is bits[i*words : (i+1)*words]
	sums  []uint64 // its summary is sums[i*sumw : (i+1)*sumw]

	index map[uint64][]uint32 // content hash → ids, for interning
}

func newBitsets(nrules int) *bitsets {
	w := max(1, (nrules+63)/64)
	return &bitsets{words: w, sumw: (w + 63) / 64, index: map[uint64][]uint32{}}
}

// intern returns the id of a bitset equal to b, adding it if new.
func (s *bitsets) intern(b []uint64) uint32 {
	h := uint64(14695981039346656037)
	for _, w := range b {
		h = (h ^ w) * 1099511628211
		h ^= h >> 29
	}
	for _, id := range s.index[h] {
		if slices.Equal(s.get(id), b) {
			return id
		}
	}
	id := uint32(len(s.bits) / s.words)
	s.bits = append(s.bits, b...)
	sum := make([]uint64, s.sumw)
	for i, w := range b {
		if w != 0 {
			sum[i/64] |= 1 << (i % 64)
		}
	}
	s.sums = append(s.sums, sum...)
	s.index[h] = append(s.index[h], id)
	return id
}

func (s *bitsets) get(id uint32) []uint64 {
	o := int(id) * s.words
	return s.bits[o : o+s.words : o+s.words]
}

// ruleBits is a scratch bitset for building.
type ruleBits []uint64

func newRuleBits(words int) ruleBits { return make(ruleBits, words) }

func (b ruleBits) set(i int)   { b[i/64] |= 1 << (i % 64) }
func (b ruleBits) clear(i int) { b[i/64] &^= 1 << (i % 64) }
func (b ruleBits) assign(i int, v bool) {
	if v {
		b.set(i)
	} else {
		b.clear(i)
	}
}
