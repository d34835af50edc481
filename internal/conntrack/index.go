package conntrack

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// shard is an open-addressing index (linear probing, backward-shift deletion,
// no tombstones) over a dense array of entries.
type shard struct {
	mu sync.Mutex
	// slots: 0 is empty; else the key hash's low 32 bits <<32 | entry index+1.
	// Keeping the hash bits makes probing compare keys only on a 32-bit
	// match, and lets the index grow and delete without touching entries.
	slots []uint64
	// slotsAddr and slotsMask publish slots for Prefetch, which runs
	// without the lock. A reader may pair an address with the other array's
	// mask while grow runs: it then prefetches a useless line, which is
	// harmless (see package prefetch).
	slotsAddr atomic.Uintptr
	slotsMask atomic.Uint64
	chunks    []*[chunkSize]entry
	used      uint32 // entries handed out so far: the scan bound
	free      uint32 // head of the free list, index+1; 0 when empty
	n         int
	expCur    uint32 // Expire's position in the entries
	evCur     uint32 // eviction's position in the entries

	inserts, evictions, expired, invalid uint64
	_                                    [64]byte // keep neighbouring shards' locks off this cache line
}

// entry returns the entry at idx, which must be below s.used.
func (s *shard) entry(idx uint32) *entry {
	return &s.chunks[idx>>chunkBits][idx&(chunkSize-1)]
}

func (s *shard) lookupID(id FlowID) *entry {
	if id.ver == 0 || id.idx >= s.used {
		return nil
	}
	e := s.entry(id.idx)
	if e.flags&fInUse == 0 || e.ver != id.ver {
		return nil
	}
	return e
}

// find probes for k. On a hit it returns the slot and the entry index; on a
// miss, the empty slot where k would go.
func (s *shard) find(k *flowKey, h uint64) (pos uint64, idx uint32, ok bool) {
	mask := uint64(len(s.slots) - 1)
	tag := h & 0xffffffff
	for i := tag & mask; ; i = (i + 1) & mask {
		v := s.slots[i]
		if v == 0 {
			return i, 0, false
		}
		if v>>32 == tag {
			idx := uint32(v) - 1
			if s.entry(idx).key.equal(k) {
				return i, idx, true
			}
		}
	}
}

// peek returns the entry of the first slot whose hash bits match h: the
// flow find would return, but for a 32-bit hash collision. It reads the
// index only.
func (s *shard) peek(h uint64) *entry {
	mask := uint64(len(s.slots) - 1)
	tag := h & 0xffffffff
	for i := tag & mask; ; i = (i + 1) & mask {
		v := s.slots[i]
		if v == 0 {
			return nil
		}
		if v>>32 == tag {
			return s.entry(uint32(v) - 1)
		}
	}
}

// insert adds k in slot pos (from a missed find) and returns the new entry,
// zeroed but for its key, version and fInUse. At the cap it first evicts a
// flow, which may move slots, so it probes again. It fails only when the
// table is full and nothing could be evicted without blocking.
func (t *Table) insert(s *shard, k *flowKey, h uint64, pos uint64, now int64) (uint32, bool) {
	again := false
	for tries := 0; t.count.Add(1) > int64(t.maxFlows); tries++ {
		t.count.Add(-1)
		if tries == 4 || !t.makeRoom(s, now) {
			return 0, false
		}
		again = true
	}
	if (s.n+1)*4 > len(s.slots)*3 {
		s.grow()
		again = true
	}
	if again {
		pos, _, _ = s.find(k, h)
	}
	var idx uint32
	if s.free != 0 {
		idx = s.free - 1
		s.free = uint32(s.entry(idx).cacheVal)
	} else {
		if s.used == uint32(len(s.chunks))*chunkSize {
			s.chunks = append(s.chunks, new([chunkSize]entry))
		}
		idx = s.used
		s.used++
	}
	e := s.entry(idx)
	ver := e.ver + 1
	if ver == 0 {
		ver = 1
	}
	*e = entry{key: *k, ver: ver, flags: fInUse}
	s.slots[pos] = (h&0xffffffff)<<32 | uint64(idx+1)
	s.n++
	s.inserts++
	return idx, true
}

// makeRoom evicts one flow, from s (locked by the caller) when it has any,
// else from the first other shard whose lock is free: waiting for another
// lock while holding s could deadlock.
func (t *Table) makeRoom(s *shard, now int64) bool {
	if s.n > 0 {
		t.evict(s, now)
		return true
	}
	for i := range t.shards {
		o := &t.shards[i]
		if o == s || !o.mu.TryLock() {
			continue
		}
		ok := o.n > 0
		if ok {
			t.evict(o, now)
		}
		o.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// evict makes room at the cap. It looks at the next evictWindow live entries
// after the previous eviction's position and removes the first expired one;
// failing that, the one that has never seen a reply (half-open, unanswered:
// the flows a flood creates) with the earliest deadline; failing that, the
// one with the earliest deadline, which prefers closing flows to established
// ones. The cost is bounded and needs no ordering structure.
func (t *Table) evict(s *shard, now int64) {
	best := uint32(0)
	found := false
	var bestReplied bool
	var bestDeadline int64
	seen := 0
	for range s.used {
		if seen == evictWindow {
			break
		}
		if s.evCur >= s.used {
			s.evCur = 0
		}
		idx := s.evCur
		s.evCur++
		e := s.entry(idx)
		if e.flags&fInUse == 0 {
			continue
		}
		seen++
		if e.deadline <= now {
			t.remove(s, idx)
			s.expired++
			return
		}
		replied := e.flags&fSeenReply != 0
		if !found || (!replied && bestReplied) || (replied == bestReplied && e.deadline < bestDeadline) {
			best, bestReplied, bestDeadline, found = idx, replied, e.deadline, true
		}
	}
	if found {
		t.remove(s, best)
		s.evictions++
	}
}

// remove drops the live entry idx of s, finding its slot from its key's hash.
func (t *Table) remove(s *shard, idx uint32) {
	h := s.entry(idx).key.hash(&t.seed)
	mask := uint64(len(s.slots) - 1)
	want := (h&0xffffffff)<<32 | uint64(idx+1)
	for i := h & 0xffffffff & mask; ; i = (i + 1) & mask {
		if s.slots[i] == want {
			t.removeAt(s, i, idx)
			return
		}
	}
}

// removeAt empties slot pos of s, which holds entry idx, and frees the entry.
func (t *Table) removeAt(s *shard, pos uint64, idx uint32) {
	mask := uint64(len(s.slots) - 1)
	// Backward-shift deletion: pull later members of the probe run into the
	// hole unless that would move one before its home slot.
	i := pos
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		v := s.slots[j]
		if v == 0 {
			break
		}
		home := (v >> 32) & mask
		if (j-home)&mask >= (j-i)&mask {
			s.slots[i] = v
			i = j
		}
	}
	s.slots[i] = 0
	e := s.entry(idx)
	e.flags = 0
	e.ver++
	e.cacheVal = uint64(s.free)
	s.free = idx + 1
	s.n--
	t.count.Add(-1)
}

// setSlots installs a new, empty index of n slots (a power of two).
func (s *shard) setSlots(n int) {
	s.slots = make([]uint64, n)
	s.slotsAddr.Store(uintptr(unsafe.Pointer(&s.slots[0])))
	s.slotsMask.Store(uint64(n - 1))
}

// grow doubles the index, rehashing from the hash bits kept in the slots.
func (s *shard) grow() {
	old := s.slots
	s.setSlots(2 * len(old))
	mask := uint64(len(s.slots) - 1)
	for _, v := range old {
		if v == 0 {
			continue
		}
		i := (v >> 32) & mask
		for s.slots[i] != 0 {
			i = (i + 1) & mask
		}
		s.slots[i] = v
	}
}
