package pipeline

import (
	"sync"
	"sync/atomic"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/l7"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

// The per-flow stream table: what the L7 rules need of a TCP stream beyond
// the packet at hand (a ClientHello split across segments, DNS messages and
// HTTP requests framed across segments). It is a side table beside the flow
// table, which stays free of pointers, and holds only flows that met a rule
// reading such a field: policies.Decide asks for a stream only then, so
// every other flow costs nothing here.
const (
	// DefaultStreamMemory caps the bytes all streams hold together.
	DefaultStreamMemory = 32 << 20
	// maxStreams caps the number of streams, whatever their size: a
	// stream is created at the first packet a rule asks about (often the
	// SYN), so a SYN flood must not grow the table without bound.
	maxStreams = 1 << 16
	// streamOverhead is what a stream costs besides its buffers, for the
	// memory account: the entry, its map slot and its readers.
	streamOverhead = 256
	// sweepEvery: the table looks for streams of ended flows after this
	// many new ones, and whenever it is full.
	sweepEvery = 1024
)

// streamKey is one direction of one flow.
type streamKey struct {
	flow  conntrack.FlowID
	reply bool
}

// streamEntry is one direction of a flow: a reader per L7 field that asked.
// Its lock is held from the first question about a packet to the packet's
// verdict, so that packets of one flow decided by two workers at once see
// the stream one after the other.
type streamEntry struct {
	mu   sync.Mutex
	tls  *tlsStream
	dns  *msgStream[l7.DNSReader]
	http *msgStream[l7.HTTPReader]
	// mem is what this entry last added to the table's account.
	mem  int64
	dead bool // removed from the table; the holder drops it
}

type tlsStream struct {
	s l7.Stream
	// done: the hello was decided (and the packet that decided it was
	// accepted); state and name stand for the rest of the flow.
	done  bool
	state l7.NameState
	name  []byte
}

// msgStream is a direction read message by message: DNS over TCP
// (l7.DNSReader), HTTP/1.x request heads (l7.HTTPReader).
type msgStream[R any] struct {
	s l7.Stream
	r R
}

// streamTable holds the streams of all workers.
type streamTable struct {
	mu    sync.Mutex
	m     map[streamKey]*streamEntry
	flows *conntrack.Table
	limit int64
	mem   atomic.Int64
	added int

	full    atomic.Uint64 // streams not created: table full
	failed  atomic.Uint64 // streams given up (bounds, malformed)
	pending atomic.Uint64 // packets accepted while a stream was pending
}

func newStreamTable(flows *conntrack.Table, limit int64) *streamTable {
	return &streamTable{m: make(map[streamKey]*streamEntry), flows: flows, limit: limit}
}

// StreamStats is a snapshot of the stream table.
type StreamStats struct {
	// Streams and Bytes are held now; Limit is the cap on Bytes.
	Streams int
	Bytes   int64
	Limit   int64
	// Full counts streams not kept because the table was full (their
	// packets are read one by one); Failed streams given up; Pending
	// packets accepted while their stream had not decided.
	Full, Failed, Pending uint64
}

func (t *streamTable) stats() StreamStats {
	t.mu.Lock()
	n := len(t.m)
	t.mu.Unlock()
	return StreamStats{
		Streams: n, Bytes: t.mem.Load(), Limit: t.limit,
		Full: t.full.Load(), Failed: t.failed.Load(), Pending: t.pending.Load(),
	}
}

// get returns the locked entry of k, creating it if there is room; nil if
// there is none.
func (t *streamTable) get(k streamKey) *streamEntry {
	t.mu.Lock()
	e := t.m[k]
	if e == nil {
		if t.added++; t.added >= sweepEvery || len(t.m) >= maxStreams || t.mem.Load()+streamOverhead > t.limit {
			t.added = 0
			t.sweepLocked()
		}
		if len(t.m) >= maxStreams || t.mem.Load()+streamOverhead > t.limit {
			t.mu.Unlock()
			t.full.Add(1)
			return nil
		}
		e = &streamEntry{mem: streamOverhead}
		t.mem.Add(streamOverhead)
		t.m[k] = e
	}
	t.mu.Unlock()
	e.mu.Lock()
	if e.dead {
		// Swept between the two locks: its flow ended.
		e.mu.Unlock()
		return nil
	}
	return e
}

// sweepLocked drops the streams of flows the flow table no longer has. An
// entry busy with a packet is left for the next sweep.
func (t *streamTable) sweepLocked() {
	for k, e := range t.m {
		if _, ok := t.flows.Lookup(k.flow); ok || !e.mu.TryLock() {
			continue
		}
		t.dropLocked(k, e)
		e.mu.Unlock()
	}
}

// dropLocked removes e (locked by the caller) from the table, under t.mu.
func (t *streamTable) dropLocked(k streamKey, e *streamEntry) {
	delete(t.m, k)
	t.mem.Add(-e.mem)
	e.mem, e.dead = 0, true
}

// drop removes e, which the caller holds locked.
func (t *streamTable) drop(k streamKey, e *streamEntry) {
	t.mu.Lock()
	if t.m[k] == e {
		t.dropLocked(k, e)
	}
	t.mu.Unlock()
}

// account brings the table's memory count up to date with e's buffers.
func (t *streamTable) account(e *streamEntry) {
	mem := int64(streamOverhead)
	if e.tls != nil {
		mem += int64(e.tls.s.Mem() + cap(e.tls.name))
	}
	if e.dns != nil {
		mem += int64(e.dns.s.Mem())
	}
	if e.http != nil {
		mem += int64(e.http.s.Mem())
	}
	t.mem.Add(mem - e.mem)
	e.mem = mem
}

// streamCtx is one worker's view of the stream of the packet it decides:
// the policies.Streams that Decide asks. It answers each question once per
// packet and remembers what to undo if the packet is not accepted.
type streamCtx struct {
	t   *streamTable
	pkt *packet.Packet
	key streamKey
	// ent is the packet's entry, locked, once a question needed it.
	ent    *streamEntry
	looked bool

	tlsAsked bool
	tlsMark  l7.StreamMark
	tlsState l7.NameState
	tlsName  []byte
	dns      msgQuestion[l7.DNSReader]
	http     msgQuestion[l7.HTTPReader]
}

// msgQuestion is what a packet asked of a msgStream: the answer, once
// asked, and the stream's mark and reader before the packet, to undo what
// the packet added.
type msgQuestion[R any] struct {
	asked bool
	mark  l7.StreamMark
	saved R
	state l7.NameState
	msgs  [][]byte
}

// begin readies c for the TCP packet pkt of flow id.
func (c *streamCtx) begin(t *streamTable, pkt *packet.Packet, id conntrack.FlowID, reply bool) {
	c.t, c.pkt, c.key = t, pkt, streamKey{flow: id, reply: reply}
	c.ent, c.looked = nil, false
	c.tlsAsked, c.dns.asked, c.http.asked = false, false, false
	c.tlsName, c.dns.msgs, c.http.msgs = nil, c.dns.msgs[:0], c.http.msgs[:0]
}

func (c *streamCtx) entry() *streamEntry {
	if !c.looked {
		c.looked = true
		c.ent = c.t.get(c.key)
	}
	return c.ent
}

// segment is where the packet's payload starts in the stream: a SYN's
// sequence number counts one byte before its data (RFC 9293 section 3.4).
func (c *streamCtx) segment() uint32 {
	if c.pkt.TCPFlags&packet.TCPSyn != 0 {
		return c.pkt.TCPSeq + 1
	}
	return c.pkt.TCPSeq
}

// start begins s at this packet: at its SYN's first data byte, or, for a
// flow first asked about later (picked up mid-stream, or its SYN decided by
// an earlier rule), at this segment, taken as the stream's start as a
// single-packet reader would.
func (c *streamCtx) start(s *l7.Stream, limit int) {
	s.Start(c.segment(), limit)
}

// TLSName implements policies.Streams.
func (c *streamCtx) TLSName(in *policies.Input) {
	if !c.tlsAsked {
		c.tlsAsked = true
		c.tlsName, c.tlsState = c.tlsName0()
	}
	in.NameState, in.ServerName = c.tlsState, c.tlsName
}

func (c *streamCtx) tlsName0() ([]byte, l7.NameState) {
	e := c.entry()
	if e == nil {
		return nil, l7.NameUnknown
	}
	if e.tls == nil {
		e.tls = &tlsStream{}
		c.start(&e.tls.s, l7.TLSHelloLimit)
	}
	ts := e.tls
	if ts.done {
		return ts.name, ts.state
	}
	c.tlsMark = ts.s.Mark()
	if _, err := ts.s.Add(c.segment(), c.pkt.Payload); err != nil {
		return nil, l7.NameFailed
	}
	return l7.TLSHelloName(ts.s.Bytes())
}

// DNSMessages implements policies.Streams.
func (c *streamCtx) DNSMessages(in *policies.Input) ([][]byte, l7.NameState) {
	return ask(c, &c.dns, func(e *streamEntry) **msgStream[l7.DNSReader] { return &e.dns })
}

// HTTPHosts implements policies.Streams: the Host values of the request
// heads the packet completes.
func (c *streamCtx) HTTPHosts(in *policies.Input) ([][]byte, l7.NameState) {
	return ask(c, &c.http, func(e *streamEntry) **msgStream[l7.HTTPReader] { return &e.http })
}

// streamReader is what reads a msgStream: *l7.DNSReader, *l7.HTTPReader.
type streamReader[R any] interface {
	*R
	Read(s *l7.Stream, dst [][]byte) ([][]byte, l7.NameState)
	Done() l7.NameState
}

// ask answers q once per packet: it adds the packet to its direction's
// msgStream (the one of the entry that stream picks) and collects the
// messages it completes in q.msgs.
func ask[R any, PR streamReader[R]](c *streamCtx, q *msgQuestion[R], stream func(*streamEntry) **msgStream[R]) ([][]byte, l7.NameState) {
	if !q.asked {
		q.asked = true
		q.state = readMsgs[R, PR](c, q, stream)
	}
	return q.msgs, q.state
}

func readMsgs[R any, PR streamReader[R]](c *streamCtx, q *msgQuestion[R], stream func(*streamEntry) **msgStream[R]) l7.NameState {
	e := c.entry()
	if e == nil {
		return l7.NameUnknown
	}
	slot := stream(e)
	if *slot == nil {
		*slot = &msgStream[R]{}
		c.start(&(*slot).s, l7.StreamLimit)
	}
	ms := *slot
	if st := PR(&ms.r).Done(); st != l7.NameUnknown {
		return st
	}
	q.mark, q.saved = ms.s.Mark(), ms.r
	if _, err := ms.s.Add(c.segment(), c.pkt.Payload); err != nil {
		// A stream the segment cannot join has failed.
		q.msgs = q.msgs[:0]
		return l7.NameFailed
	}
	var st l7.NameState
	q.msgs, st = PR(&ms.r).Read(&ms.s, q.msgs[:0])
	return st
}

// settle undoes what the packet added to ms when it was not accepted (its
// retransmission is read again), and drops the buffer of a stream that
// will read nothing more (failed, or not the protocol).
func settle[R any](t *streamTable, q *msgQuestion[R], ms *msgStream[R], accepted bool) {
	if !q.asked || ms == nil {
		return
	}
	switch {
	case !accepted:
		ms.s.Rewind(q.mark)
		ms.r = q.saved
	case q.state == l7.NameFailed:
		ms.s = l7.Stream{}
		t.failed.Add(1)
	case q.state == l7.NameAbsent:
		ms.s = l7.Stream{}
	}
}

// end settles the packet's stream once its verdict is known. A packet that
// is not accepted never reaches the receiver, so what it added is undone:
// its retransmission is read, and decided, again. A stream that failed, or
// whose direction ended, is dropped.
func (c *streamCtx) end(d policies.Decision) {
	e := c.ent
	if e == nil {
		return
	}
	c.ent = nil
	t := c.t
	accepted := d.Effective() == policies.ActionAccept
	if d.Pending {
		t.pending.Add(1)
	}
	if c.tlsAsked && e.tls != nil && !e.tls.done {
		ts := e.tls
		switch {
		case c.tlsState != l7.NamePending:
			// Decided: the name (copied out of the buffer) stands for
			// the flow, whatever became of this packet (a client that
			// retransmits the last segment of a refused hello is
			// refused again, even if its bytes changed); the buffer
			// goes.
			ts.done, ts.state = true, c.tlsState
			ts.name = append([]byte(nil), c.tlsName...)
			ts.s = l7.Stream{}
			if c.tlsState == l7.NameFailed {
				t.failed.Add(1)
			}
		case !accepted:
			ts.s.Rewind(c.tlsMark)
		}
	}
	settle(t, &c.dns, e.dns, accepted)
	settle(t, &c.http, e.http, accepted)
	// The other direction may go on after a FIN; nothing follows a reset.
	if accepted && c.pkt.TCPFlags&(packet.TCPFin|packet.TCPRst) != 0 {
		t.drop(c.key, e)
	} else {
		t.account(e)
	}
	e.mu.Unlock()
}
