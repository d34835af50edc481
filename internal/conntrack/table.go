package conntrack

import (
	"context"
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
)

const (
	// DefaultMaxFlows is the flow cap when Config.MaxFlows is zero, the
	// kernel's nf_conntrack_max on large hosts. At ~130 bytes a flow the
	// full table takes ~35 MB.
	DefaultMaxFlows = 1 << 18
	// DefaultShards is the shard count when Config.Shards is zero: many more
	// shards than workers, so two workers rarely want the same lock.
	DefaultShards = 64
	// DefaultExpireBatch is how many entries one Expire call examines.
	DefaultExpireBatch = 1024

	// evictWindow is how many live entries eviction compares.
	evictWindow = 8
	// Entries live in fixed chunks so the table grows without copying and
	// without keeping twice the memory it needs.
	chunkBits = 10
	chunkSize = 1 << chunkBits
	minSlots  = 64
)

// entry flags.
const (
	fInUse uint8 = 1 << iota
	fOrigIsB
	fSeenReply
	fHasCache
	fFinOrig // fFinOrig<<dir is the FIN bit of direction dir
	fFinReply
	fFinAckedOrig // fFinAckedOrig<<dir: direction dir's FIN was acknowledged
	fFinAckedReply
)

// entry is one flow. It holds no pointers, so the garbage collector never
// scans the table, and has a fixed size (112 bytes).
type entry struct {
	key      flowKey
	deadline int64     // expires when now >= deadline
	pkts     [2]uint64 // by direction: 0 original, 1 reply
	bytes    [2]uint64
	cacheVal uint64 // the cached decision; the free-list link while free
	cacheGen uint32
	ver      uint32 // bumped whenever the entry stops being this flow
	finEnd   [2]uint32
	tcp      TCPState
	flags    uint8
}

// Cache is a decision stored on a flow, opaque to the table. Gen is the
// policy generation that produced it: a caller holding a newer program
// ignores a cache with an older Gen, which makes a policy reload invalidate
// every cached decision at once without touching the table.
type Cache struct {
	Gen   uint32
	Value uint64
}

// FlowID is a handle on a tracked flow, valid until the flow ends (expiry,
// eviction, Flush, or a TCP reopen). A stale handle is detected by a version
// check: it never reads or changes another flow. The zero FlowID is no flow.
type FlowID struct {
	shard uint32
	idx   uint32
	ver   uint32
}

// Valid reports whether id names a flow (it may still have ended since).
func (id FlowID) Valid() bool { return id.ver != 0 }

// Result is what Track says about one packet.
//
// It is three fields in 32 bytes, the most the compiler keeps in registers
// (four fields, four words). A bigger Result went through memory: track
// stored it field by field, and each copy of it, made with 16-byte loads,
// waited for those stores to complete (see bench/README.md, Figures behind
// design choices).
// TestResultStaysInRegisters holds the line.
type Result struct {
	// Flow is the packet's flow, for SetCache; zero when the packet belongs
	// to no flow (invalid, untracked or related packets).
	Flow FlowID
	Status
	// Cache is the decision stored on the flow, valid iff HasCache. It is
	// never returned for invalid or related packets.
	Cache Cache
}

// Status is the part of a Result that says where the packet stands.
type Status struct {
	State nf.State
	// Reply is set when the packet travels in the reply direction, against
	// the flow's originator.
	Reply bool
	// HasCache says whether Result.Cache holds a decision.
	HasCache bool
}

// answer is the Result of a packet that belongs to no flow.
func answer(st nf.State) Result { return Result{Status: Status{State: st}} }

// Cached returns the cached decision if the flow has one from policy
// generation gen; a decision of another generation is as good as none.
func (r Result) Cached(gen uint32) (uint64, bool) {
	if r.HasCache && r.Cache.Gen == gen {
		return r.Cache.Value, true
	}
	return 0, false
}

// Stats are cumulative counters, except Flows.
type Stats struct {
	Flows     uint64 // flows tracked now
	Inserts   uint64 // flows created (a TCP reopen counts as one)
	Evictions uint64 // live flows dropped to make room at the cap
	Expired   uint64 // flows dropped because their timeout passed
	Invalid   uint64 // packets answered StateInvalid
}

// Config configures a Table. Zero fields take defaults.
type Config struct {
	// MaxFlows is the hard cap on tracked flows (--max-flows). A new flow
	// that would exceed it first evicts one (see evict).
	MaxFlows int
	// Shards is rounded up to a power of two, and down to at most MaxFlows.
	Shards int
	// Timeouts per state; zero fields take DefaultTimeouts.
	Timeouts Timeouts
	// Now is a monotonic clock in nanoseconds, for Track and Run. Default:
	// time since New. Tests inject a fake clock.
	Now func() int64
	// ExpireBatch is how many entries one Expire call examines.
	ExpireBatch int
	// Seed seeds the key hash; zero picks a random one. Set it only for
	// reproducible tests: a known seed lets a sender craft colliding tuples.
	Seed uint64
}

// Table is the flow table. It is safe for concurrent use.
type Table struct {
	shards      []shard
	shardShift  uint // shard = hash >> shardShift
	seed        hashSeed
	timeouts    [numTimeouts]int64
	now         func() int64
	maxFlows    int
	expireBatch int
	expireNext  atomic.Uint32
	count       atomic.Int64  // flows in all shards: the cap is table-wide
	untrackable atomic.Uint64 // invalid packets that have no key, so no shard
}

// New returns an empty table.
func New(cfg Config) *Table {
	maxFlows := cfg.MaxFlows
	if maxFlows <= 0 {
		maxFlows = DefaultMaxFlows
	}
	n := cfg.Shards
	if n <= 0 {
		n = DefaultShards
	}
	n = 1 << bits.Len(uint(n-1)) // round up to a power of two
	for n > maxFlows {
		n >>= 1
	}
	t := &Table{
		shards:      make([]shard, n),
		shardShift:  uint(64 - bits.TrailingZeros(uint(n))),
		timeouts:    cfg.Timeouts.table(),
		now:         cfg.Now,
		maxFlows:    maxFlows,
		expireBatch: cfg.ExpireBatch,
	}
	if t.expireBatch <= 0 {
		t.expireBatch = DefaultExpireBatch
	}
	if t.now == nil {
		start := time.Now()
		t.now = func() int64 { return int64(time.Since(start)) }
	}
	var r *rand.Rand
	if cfg.Seed != 0 {
		r = rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5851f42d4c957f2d))
	} else {
		r = rand.New(rand.NewChaCha8(randomSeed()))
	}
	for i := range t.seed {
		t.seed[i] = r.Uint64() | 1
	}
	for i := range t.shards {
		t.shards[i].setSlots(minSlots)
	}
	return t
}

func randomSeed() (s [32]byte) {
	for i := 0; i < len(s); i += 8 {
		v := rand.Uint64()
		for j := range 8 {
			s[i+j] = byte(v >> (8 * j))
		}
	}
	return s
}

// Now reads the table's clock.
func (t *Table) Now() int64 { return t.now() }

// MaxFlows is the cap on tracked flows.
func (t *Table) MaxFlows() int { return t.maxFlows }

// Track classifies p, creating or advancing its flow, on the table's clock.
// length is the number of bytes to count for the packet (normally the IP
// length). kernelEstablished is the kernel's established hint from the
// packet mark (see doc.go: pickup). It allocates nothing.
func (t *Table) Track(p *packet.Packet, length int, kernelEstablished bool) Result {
	return t.TrackAt(p, length, kernelEstablished, t.now())
}

// TrackAt is Track at time now, for callers that read the clock once per
// batch of packets.
func (t *Table) TrackAt(p *packet.Packet, length int, kernelEstablished bool, now int64) Result {
	var la Lookahead
	return t.track(p, &la, length, kernelEstablished, now)
}

// prepare fills la from p: its kind, its key and, for a flow, the key's
// hash. It returns the kind.
func (t *Table) prepare(p *packet.Packet, la *Lookahead) kind {
	la.kd, la.fromB = classify(p, &la.k)
	if la.kd == kindFlow {
		la.h = la.k.hash(&t.seed)
	}
	return la.kd
}

// track is TrackAt with the work Prefetch did, if it ran, kept in la. The
// per-packet path of a known flow stays here; packets without a flow, new
// flows and unusual TCP segments go to their own functions.
func (t *Table) track(p *packet.Packet, la *Lookahead, length int, kernelEstablished bool, now int64) Result {
	if la.kd == kindUnclassified {
		t.prepare(p, la)
	}
	if la.kd != kindFlow {
		return t.notFlow(p, la.kd, now)
	}
	k, h, fromB := &la.k, la.h, la.fromB
	si := uint32(h >> t.shardShift)
	s := &t.shards[si]
	s.mu.Lock()
	pos, idx, ok := s.find(k, h)
	if !ok || s.entry(idx).deadline <= now {
		var st nf.State
		if idx, st, ok = t.start(s, la, p, pos, idx, ok, kernelEstablished, now); !ok {
			s.mu.Unlock()
			return answer(st)
		}
	}
	e := s.entry(idx)
	dir := 0
	if fromB != (e.flags&fOrigIsB != 0) {
		dir = 1
	}
	if k.proto() == packet.ProtoTCP {
		if got := tcpStep(e, p, dir); got != stepOK {
			if dir, ok = t.unusualStep(s, e, got, dir, fromB, kernelEstablished); !ok {
				s.mu.Unlock()
				return Result{Status: Status{State: nf.StateInvalid, Reply: dir == 1}}
			}
		}
	}
	// The kernel saw a reply the table may never see (with only input
	// filtered, replies leave by output unqueued): its word on any packet,
	// not only the first, makes the flow established (#13).
	if dir == 1 || kernelEstablished {
		e.flags |= fSeenReply
	}
	e.pkts[dir]++
	e.bytes[dir] += uint64(length)
	e.deadline = now + t.timeouts[timeoutClass(e)]
	r := Result{
		Flow:   FlowID{shard: si, idx: idx, ver: e.ver},
		Status: Status{State: nf.StateNew, Reply: dir == 1},
	}
	if e.flags&fSeenReply != 0 {
		r.State = nf.StateEstablished
	}
	if e.flags&fHasCache != 0 {
		r.Cache = Cache{Gen: e.cacheGen, Value: e.cacheVal}
		r.HasCache = true
	}
	s.mu.Unlock()
	return r
}

// notFlow answers a packet of kind kd, which belongs to no flow of its own.
func (t *Table) notFlow(p *packet.Packet, kd kind, now int64) Result {
	switch kd {
	case kindInvalid:
		t.untrackable.Add(1)
		return answer(nf.StateInvalid)
	case kindRelated:
		return t.related(p, now)
	}
	return answer(nf.StateNew) // kindUntracked
}

// start begins the flow of la's key in s, whose lock the caller holds: the
// key was not found at pos, or found at idx (found) but expired and not yet
// swept, which start reclaims first. It returns the new flow's index, or
// false and the state to answer without one.
func (t *Table) start(s *shard, la *Lookahead, p *packet.Packet, pos uint64, idx uint32, found, kernelEstablished bool, now int64) (uint32, nf.State, bool) {
	k, h := &la.k, la.h
	if found {
		t.removeAt(s, pos, idx)
		s.expired++
		pos, _, _ = s.find(k, h)
	}
	tcp, create, st := firstPacket(k, p, kernelEstablished)
	if !create {
		if st == nf.StateInvalid {
			s.invalid++
		}
		return 0, st, false
	}
	idx, ok := t.insert(s, k, h, pos, now)
	if !ok {
		// The table is full and no flow could be evicted without waiting
		// for another shard: answer without tracking.
		return 0, st, false
	}
	e := s.entry(idx)
	e.tcp = tcp
	if la.fromB && !isEcho(k.proto()) {
		e.flags |= fOrigIsB
	}
	if kernelEstablished {
		e.flags |= fSeenReply
	}
	return idx, st, true
}

// unusualStep handles the TCP segment of e, from direction dir, that tcpStep
// did not accept as it is (st is not stepOK), in s, whose lock the caller
// holds. It returns the segment's direction after it, and false if the
// segment is invalid.
func (t *Table) unusualStep(s *shard, e *entry, st step, dir int, fromB, kernelEstablished bool) (int, bool) {
	switch st {
	case stepReopen:
		t.reopen(s, e, fromB)
		if kernelEstablished {
			e.flags |= fSeenReply
		}
		return 0, true
	case stepInvalid:
		if !kernelEstablished {
			s.invalid++
			return dir, false
		}
		// The kernel, which tracks sequence windows, calls this packet
		// established: believe it and resynchronise.
		if e.tcp < TCPEstablished {
			e.tcp = TCPEstablished
		}
		e.flags |= fSeenReply
	}
	return dir, true
}

func isEcho(proto uint8) bool { return proto == packet.ProtoICMP || proto == packet.ProtoICMPv6 }

// firstPacket decides whether a packet without a flow starts one, with
// which TCP state, or else what to answer.
func firstPacket(k *flowKey, p *packet.Packet, hint bool) (tcp TCPState, create bool, st nf.State) {
	switch k.proto() {
	case packet.ProtoTCP:
		switch classOf(p.TCPFlags) {
		case tcpBad:
			return TCPNone, false, nf.StateInvalid
		case tcpSYN:
			if hint {
				return TCPSynSent, true, nf.StateEstablished
			}
			return TCPSynSent, true, nf.StateNew
		case tcpRST:
			// A reset of a flow the kernel knows but we do not: let it
			// through as established, but do not start tracking a flow
			// that is ending.
			if hint {
				return TCPNone, false, nf.StateEstablished
			}
			return TCPNone, false, nf.StateInvalid
		}
		if hint {
			return TCPEstablished, true, nf.StateEstablished
		}
		return TCPNone, false, nf.StateInvalid
	case packet.ProtoICMP, packet.ProtoICMPv6:
		if _, reply := echoType(p.Proto, p.ICMPType); reply && !hint {
			return TCPNone, false, nf.StateInvalid
		}
	}
	if hint {
		return TCPNone, true, nf.StateEstablished
	}
	return TCPNone, true, nf.StateNew
}

// timeoutClass picks the timeout for e's current state.
func timeoutClass(e *entry) int {
	switch e.key.proto() {
	case packet.ProtoTCP:
		return int(e.tcp)
	case packet.ProtoUDP:
		if e.flags&fSeenReply != 0 {
			return toUDPReplied
		}
		return toUDPUnreplied
	case packet.ProtoICMP, packet.ProtoICMPv6:
		return toICMP
	}
	return toGeneric
}

// related answers an ICMP error: related if it quotes a live flow, else
// invalid. It changes nothing.
func (t *Table) related(p *packet.Packet, now int64) Result {
	var k flowKey
	if innerKey(p, &k) {
		if t.live(&k, now) {
			return answer(nf.StateRelated)
		}
		if isEcho(k.proto()) {
			// The quote may be the reply; then its destination asked.
			k.w[0], k.w[2] = k.w[2], k.w[0]
			k.w[1], k.w[3] = k.w[3], k.w[1]
			if t.live(&k, now) {
				return answer(nf.StateRelated)
			}
		}
	}
	t.untrackable.Add(1)
	return answer(nf.StateInvalid)
}

func (t *Table) live(k *flowKey, now int64) bool {
	h := k.hash(&t.seed)
	s := &t.shards[h>>t.shardShift]
	s.mu.Lock()
	_, idx, ok := s.find(k, h)
	ok = ok && s.entry(idx).deadline > now
	s.mu.Unlock()
	return ok
}

// reopen turns a closed TCP flow into a new connection on the same tuple,
// started by the sender of the SYN.
func (t *Table) reopen(s *shard, e *entry, fromB bool) {
	ver := e.ver + 1
	if ver == 0 {
		ver = 1
	}
	*e = entry{key: e.key, ver: ver, tcp: TCPSynSent, flags: fInUse}
	if fromB {
		e.flags |= fOrigIsB
	}
	s.inserts++
}

// SetCache stores a decision on a flow. It reports false, changing nothing,
// when the handle is stale.
func (t *Table) SetCache(id FlowID, c Cache) bool {
	return t.withFlow(id, func(e *entry) {
		e.cacheGen, e.cacheVal = c.Gen, c.Value
		e.flags |= fHasCache
	})
}

// ClearCache removes the decision stored on a flow; false if the handle is
// stale.
func (t *Table) ClearCache(id FlowID) bool {
	return t.withFlow(id, func(e *entry) { e.flags &^= fHasCache })
}

// withFlow calls f with the entry of id under its shard's lock; false,
// without calling f, when the handle is stale (a forged shard number
// included, as handles come back from callers).
func (t *Table) withFlow(id FlowID, f func(e *entry)) bool {
	if int(id.shard) >= len(t.shards) {
		return false
	}
	s := &t.shards[id.shard]
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.lookupID(id)
	if e == nil {
		return false
	}
	f(e)
	return true
}

// Len is the number of flows tracked now (expired flows not yet swept
// included).
func (t *Table) Len() int { return int(t.count.Load()) }

// Stats returns the counters.
func (t *Table) Stats() Stats {
	st := Stats{Invalid: t.untrackable.Load(), Flows: uint64(t.count.Load())}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		st.Inserts += s.inserts
		st.Evictions += s.evictions
		st.Expired += s.expired
		st.Invalid += s.invalid
		s.mu.Unlock()
	}
	return st
}

// Expire removes expired flows from a bounded slice of one shard (at most
// Config.ExpireBatch entries, under that shard's lock alone) and returns how
// many it removed. Successive calls walk the shards in turn, so calling it
// from a ticker sweeps the whole table without ever stopping it.
func (t *Table) Expire(now int64) int {
	s := &t.shards[int((t.expireNext.Add(1)-1)%uint32(len(t.shards)))]
	s.mu.Lock()
	removed := 0
	n := min(t.expireBatch, int(s.used))
	for range n {
		if s.expCur >= s.used {
			s.expCur = 0
		}
		idx := s.expCur
		s.expCur++
		e := s.entry(idx)
		if e.flags&fInUse != 0 && e.deadline <= now {
			t.remove(s, idx)
			removed++
		}
	}
	s.expired += uint64(removed)
	s.mu.Unlock()
	return removed
}

// Run sweeps expired flows until ctx is done: every interval it calls Expire
// once per shard, so each shard advances by one batch (Config.ExpireBatch)
// per tick, each call holding one shard's lock only. With 64 shards, the
// default batch and a 1 s interval it examines ~65k entries a second: a
// million-flow table is swept every ~16 s. Flows that expire in between are
// reclaimed anyway when their tuple is seen again or at the cap.
func (t *Table) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			now := t.now()
			for range t.shards {
				if ctx.Err() != nil {
					return
				}
				t.Expire(now)
			}
		}
	}
}

// Flush drops every flow, one shard at a time. Handles of the dropped flows
// go stale. Memory stays allocated for the flows to come.
func (t *Table) Flush() {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		s.free = 0
		for idx := s.used; idx > 0; idx-- {
			e := s.entry(idx - 1)
			if e.flags&fInUse != 0 {
				e.flags = 0
				e.ver++
			}
			e.cacheVal = uint64(s.free)
			s.free = idx
		}
		t.count.Add(-int64(s.n))
		s.n = 0
		s.setSlots(minSlots)
		s.expCur, s.evCur = 0, 0
		s.mu.Unlock()
	}
}
