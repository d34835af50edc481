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
// (its ~1 KB self, the hello so far, one packet of scratch); a decided one
// only its answer, so that a later packet of the flow that is decided again
// (its decision was not cacheable, or a reload invalidated it) meets the same
// name instead of restarting reassembly from a retransmitted fragment.
const (
	quicMaxFlows = 4096
	quicMaxBytes = 8 << 20
	// A hello not complete after quicPendingTTL without a packet is
	// abandoned: clients retransmit their first flight far sooner.
	quicPendingTTL = int64(10 * time.Second)
	// quicDecidedTTL is how long an answer is kept after the flow's last
	// reassembled packet: UDP's replied timeout.
	quicDecidedTTL = int64(2 * time.Minute)
	// quicSweepEvery inserts, expired entries are swept even below the cap.
	quicSweepEvery  = 1024
	quicDecidedSize = int(unsafe.Sizeof(quicFlow{})) + 64 // the map slot, roughly
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

	refused atomic.Uint64
	// entries and held mirror len(flows) and bytes for the metrics,
	// which must not take mu.
	entries, held atomic.Int64
}

type quicFlow struct {
	asm   *quic.Assembler // nil once decided
	state l7.NameState
	name  []byte
	size  int   // bytes counted for this flow
	seen  int64 // last packet fed, monotonic ns
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
// what is known of the connection's server name. A flow is followed from
// its first datagram holding a QUIC Initial; before that (and for UDP that
// is not QUIC) the answer is NameUnknown, so the policy reads the packet
// alone.
func (q *quicNames) name(id conntrack.FlowID, payload []byte, now int64) ([]byte, l7.NameState) {
	q.mu.Lock()
	defer q.mu.Unlock()
	f := q.flows[id]
	if f == nil {
		if !quic.HasInitial(payload) {
			return nil, l7.NameUnknown
		}
		if f = q.insert(id, now); f == nil {
			q.refused.Add(1)
			return nil, l7.NameFailed
		}
	}
	f.seen = now
	if f.asm == nil {
		return f.name, f.state
	}
	st, name := f.asm.Feed(payload)
	size := f.asm.Size()
	if st <= l7.NamePending && q.bytes+size-f.size > quicMaxBytes {
		// The hello grew past what the cap leaves: give up on it
		// rather than hold more than the cap.
		st, name = l7.NameFailed, nil
		q.refused.Add(1)
	}
	if st > l7.NamePending {
		f.state, f.name, f.asm = st, append([]byte(nil), name...), nil
		size = quicDecidedSize + len(f.name)
	}
	q.account(f, size)
	return f.name, st
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
	if full || q.inserts%quicSweepEvery == 0 {
		q.sweep(now)
		full = len(q.flows) >= quicMaxFlows || q.bytes+quicMaxBytes/quicMaxFlows > quicMaxBytes
	}
	if full {
		return nil
	}
	f := &quicFlow{asm: new(quic.Assembler), state: l7.NamePending, seen: now}
	q.flows[id] = f
	q.account(f, f.asm.Size())
	return f
}

func (q *quicNames) sweep(now int64) {
	for id, f := range q.flows {
		ttl := quicDecidedTTL
		if f.asm != nil {
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
