package ratelimit

import (
	"encoding/binary"
	"math"
	"math/bits"
	"math/rand/v2"
	"sync"
)

// Key identifies one bucket of a Table: a 16-byte address (IPv4 mapped into
// IPv6) and 4 bytes of ports and protocol, or a flow hash.
type Key [20]byte

const (
	// window is how many slots a key may live in: its hash slot and the
	// next ones. Small enough to scan in a few cache lines, large enough
	// that a table rarely evicts while it has free slots.
	window = 8
	// maxShards bounds the shard count; with two to a few dozen workers,
	// 64 mutexes make contention rare.
	maxShards = 64
)

type slot struct {
	key  Key
	used bool
	tat  int64
}

type shard struct {
	mu    sync.Mutex
	slots []slot
	n     int
	// Keep shards on separate cache lines so that workers locking
	// neighbouring shards do not slow each other down.
	_ [64]byte
}

// Table holds one token bucket per key in a fixed amount of memory, for
// limits `per: src|dst|flow`. It is safe for concurrent use and does not
// allocate after construction.
//
// The table never grows: when a new key finds no free slot in its window of
// eight, it takes over the bucket in that window that is closest to full,
// preferring one that has completely refilled (dropping such a bucket loses
// nothing: a new bucket starts full). So an attacker spraying sources cannot
// grow memory; at worst, when every slot holds a bucket still refilling, it
// can evict buckets and so refill them early, which lets a limited key send
// another burst. The hash is seeded per table, so which keys share a window
// cannot be chosen from outside.
type Table struct {
	g gcra
	// seed keys the hash, so which keys share a window cannot be chosen
	// from outside.
	seed   [4]uint64
	shards []shard
	// shardMask selects a shard from a hash; the shard count is a power
	// of two.
	shardMask uint64
	perShard  uint64
	window    int
}

// NewTable returns a table of buckets with ratePerSec and burst (see
// NewBucket) for at most maxKeys keys (at least 1). All memory, about 32
// bytes a key, is allocated here.
func NewTable(ratePerSec float64, burst int, maxKeys int) *Table {
	maxKeys = max(maxKeys, 1)
	shards := 1
	for shards < maxShards && shards*2*window*4 <= maxKeys {
		shards *= 2
	}
	perShard := maxKeys / shards
	t := &Table{
		g:         newGCRA(ratePerSec, burst),
		seed:      [4]uint64{rand.Uint64(), rand.Uint64(), rand.Uint64(), rand.Uint64()},
		shards:    make([]shard, shards),
		shardMask: uint64(shards - 1),
		perShard:  uint64(perShard),
		window:    min(window, perShard),
	}
	for i := range t.shards {
		t.shards[i].slots = make([]slot, perShard)
	}
	return t
}

// Allow reports whether a packet of key at now (monotonic nanoseconds) is
// within the rate, and if so takes a token from key's bucket.
func (t *Table) Allow(key Key, now int64) bool {
	h := t.hash(&key)
	s := &t.shards[h&t.shardMask]
	start := (h >> 32) % t.perShard

	s.mu.Lock()
	sl := s.lookup(key, start, t.window)
	next, ok := t.g.next(sl.tat, now)
	sl.tat = next
	s.mu.Unlock()
	return ok
}

// hash mixes a key with the table's seed the way wyhash does: two 64x64
// to 128-bit multiplications folded to 64 bits: faster than hash/maphash on
// a 20-byte array (see bench/README.md, Figures behind design choices), and
// keyed all the same.
func (t *Table) hash(k *Key) uint64 {
	a := binary.LittleEndian.Uint64(k[0:8]) ^ t.seed[0]
	b := binary.LittleEndian.Uint64(k[8:16]) ^ t.seed[1]
	c := uint64(binary.LittleEndian.Uint32(k[16:20])) ^ t.seed[2]
	return mum(mum(a, b)^c, t.seed[3])
}

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// lookup returns key's slot in the window at start, claiming one for it if
// it has none: a free slot, else the one with the smallest TAT. Every bucket
// that has fully refilled (TAT <= now) has a smaller TAT than every bucket
// that has not, so refilled buckets go first.
func (s *shard) lookup(key Key, start uint64, window int) *slot {
	var victim *slot
	i := start
	for range window {
		sl := &s.slots[i]
		if sl.used && sl.key == key {
			return sl
		}
		switch {
		case victim == nil:
			victim = sl
		case !victim.used:
		case !sl.used || sl.tat < victim.tat:
			victim = sl
		}
		if i++; i == uint64(len(s.slots)) {
			i = 0
		}
	}
	if !victim.used {
		s.n++
	}
	*victim = slot{key: key, used: true, tat: math.MinInt64}
	return victim
}

// Len returns the number of keys that hold a bucket.
func (t *Table) Len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += s.n
		s.mu.Unlock()
	}
	return n
}
