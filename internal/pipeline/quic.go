package pipeline

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/l7"
	"github.com/fwagent/fwagent/internal/l7/quic"
)

// Bounds of the QUIC Initial reassembly. A pending flow holds an Assembler
// (its ~1 KB self, its keys, the hello so far, one packet of scratch); a
// decided one keeps its answer and keys without the buffers, so that a later
// packet of the flow that is decided again (its decision was not cacheable,
// or a reload invalidated it) meets the same name instead of restarting
// reassembly from a retransmitted fragment, and a new connection on the same
// flow (a reused socket) is told from the old one.
const (
	quicMaxFlows = 4096
	quicMaxBytes = 8 << 20
	// A hello not complete after quicPendingTTL without a packet is
	// abandoned: clients retransmit their first flight far sooner.
	quicPendingTTL = int64(10 * time.Second)
	// quicDecidedTTL is how long an answer is kept after the flow's last
	// long-header packet: UDP's replied timeout.
	quicDecidedTTL = int64(2 * time.Minute)
	// quicSweepEvery inserts, expired entries are swept even below the cap;
	// at the cap, at most once per quicSweepGap, so that a flood of new
	// flows against a full table does not walk it for each one.
	quicSweepEvery = 1024
	quicSweepGap   = int64(time.Second)
	// quicEntrySize is what a map entry costs besides its Assembler.
	quicEntrySize = int(unsafe.Sizeof(quicFlow{})) + 64
)

// quicNames reassembles the Initial packets of UDP flows, keyed by flow, to
// give the policy the server name of each QUIC connection (Input.ServerName).
// Memory is bounded in entries and bytes; when the bounds are reached and
// nothing has expired, a new flow is refused (its name is NameFailed, which
// matches no tls_sni rule) and counted.
type quicNames struct {
	mu      sync.Mutex
	flows   map[conntrack.FlowID]*quicFlow
	bytes   int
	inserts uint64
	swept   int64 // when the last sweep ran

	refused atomic.Uint64
	// entries and held mirror len(flows) and bytes for the metrics,
	// which must not take mu.
	entries, held atomic.Int64
}

type quicFlow struct {
	asm  *quic.Assembler
	size int   // bytes counted for this flow
	seen int64 // last packet fed, monotonic ns
}

func newQUICNames() *quicNames {
	return &quicNames{flows: make(map[conntrack.FlowID]*quicFlow)}
}

// QUICStats describe the QUIC Initial reassembly.
type QUICStats struct {
	Flows   int64  // flows followed now (pending or decided)
	Bytes   int64  // memory they hold, counted against the cap
	Refused uint64 // flows not followed, or given up, because the table was full
}

// QUICStats is a snapshot of the QUIC reassembly's state.
func (s *Shared) QUICStats() QUICStats {
	return QUICStats{Flows: s.quic.entries.Load(), Bytes: s.quic.held.Load(), Refused: s.quic.refused.Load()}
}

// name feeds the UDP payload of a packet the flow's client sent and returns
// what is known of the connection's server name, copied into dst (which
// must hold quic.MaxName bytes). A flow is followed from its first datagram
// holding a QUIC Initial; before that (and for UDP that is not QUIC) the
// answer is NameUnknown, so the policy reads the packet alone. fresh says
// the packet starts a new connection on the flow: a decision cached for the
// flow's previous connection does not speak for it.
func (q *quicNames) name(id conntrack.FlowID, payload, dst []byte, now int64) (name []byte, st l7.NameState, fresh bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	f := q.flows[id]
	switch {
	case f == nil:
		if !quic.HasInitial(payload) {
			return nil, l7.NameUnknown, false
		}
		if f = q.insert(id, now); f == nil {
			// Not fresh: a decision the flow has stays.
			q.refused.Add(1)
			return nil, l7.NameFailed, false
		}
		fresh = true
	case f.asm.NewConnection(payload):
		f.asm.Reset()
		fresh = true
	}
	f.seen = now
	st, name = f.asm.Feed(payload)
	size := quicEntrySize + f.asm.Size()
	if st <= l7.NamePending && q.bytes+size-f.size > quicMaxBytes {
		// The hello grew past what the cap leaves: give up on it
		// rather than hold more than the cap.
		f.asm.Abandon()
		st, name = l7.NameFailed, nil
		size = quicEntrySize + f.asm.Size()
		q.refused.Add(1)
	}
	q.account(f, size)
	return append(dst[:0], name...), st, fresh
}

func (q *quicNames) account(f *quicFlow, size int) {
	q.bytes += size - f.size
	f.size = size
	q.held.Store(int64(q.bytes))
	q.entries.Store(int64(len(q.flows)))
}

// insert adds a pending flow, sweeping expired ones first when the table
// is full (and every quicSweepEvery inserts, so that idle answers do not
// linger until the cap). It returns nil when there is no room.
func (q *quicNames) insert(id conntrack.FlowID, now int64) *quicFlow {
	q.inserts++
	full := len(q.flows) >= quicMaxFlows || q.bytes+quicMaxBytes/quicMaxFlows > quicMaxBytes
	if full && now-q.swept >= quicSweepGap || q.inserts%quicSweepEvery == 0 {
		q.sweep(now)
		full = len(q.flows) >= quicMaxFlows || q.bytes+quicMaxBytes/quicMaxFlows > quicMaxBytes
	}
	if full {
		return nil
	}
	f := &quicFlow{asm: new(quic.Assembler), seen: now}
	q.flows[id] = f
	q.account(f, quicEntrySize+f.asm.Size())
	return f
}

func (q *quicNames) sweep(now int64) {
	q.swept = now
	for id, f := range q.flows {
		ttl := quicDecidedTTL
		if f.asm.State() <= l7.NamePending {
			ttl = quicPendingTTL
		}
		if now-f.seen > ttl {
			q.bytes -= f.size
			delete(q.flows, id)
		}
	}
	q.held.Store(int64(q.bytes))
	q.entries.Store(int64(len(q.flows)))
}

// forgetDirection clears the cached decision of one direction of a flow
// (see encodeCache), keeping the other's.
func forgetDirection(cached uint64, reply bool) uint64 {
	return cached &^ (uint64(^uint32(0)) << slotShift(reply))
}
