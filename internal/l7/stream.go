package l7

import "errors"

// ErrStreamLimit reports that a stream would hold more bytes, or more
// out-of-order segments, than its bound: the reassembly gives up.
var ErrStreamLimit = errors.New("l7: stream: reassembly bound exceeded")

// maxGaps bounds the out-of-order segments a Stream keeps ahead of its
// first hole. Real reordering of a handshake is one or two segments; more is
// a client spraying segments to make the agent buffer them.
const maxGaps = 4

// Stream reassembles one direction of a TCP stream, by sequence number, from
// the segments the pipeline sees of it, so that a parser reads the bytes the
// receiving socket reads: in order, each byte once, the first copy of a
// retransmitted byte winning (as Linux keeps the bytes it already queued).
//
// It keeps only the bytes its reader has not consumed yet, plus at most
// maxGaps segments that arrived ahead of a hole, all within a byte limit.
// Mark and Rewind undo what one segment added and what was consumed since:
// the pipeline rewinds a segment it drops, so that the stream stays what the
// receiver holds and the segment's retransmission is read, and decided,
// again.
//
// The zero Stream is not usable; Start one at the sequence number of its
// first byte.
type Stream struct {
	// next is the sequence number of the byte after buf.
	next uint32
	// buf[start:] are the in-order bytes not consumed yet.
	buf   []byte
	start int
	limit int
	gaps  [maxGaps]gap
	ngaps int
}

// gap is a segment that arrived ahead of a hole.
type gap struct {
	seq  uint32
	data []byte
}

// StreamMark is the state of a Stream at one point, for Rewind.
type StreamMark struct {
	next  uint32
	end   int
	start int
	gaps  [maxGaps]gap
	ngaps int
}

// Start resets s to an empty stream whose next byte has sequence number
// seq, holding at most limit bytes. The buffer is kept for reuse.
func (s *Stream) Start(seq uint32, limit int) {
	*s = Stream{next: seq, buf: s.buf[:0], limit: limit}
}

// Next is the sequence number of the first byte the stream is missing.
func (s *Stream) Next() uint32 { return s.next }

// Bytes are the in-order bytes not consumed yet. The slice is valid until
// the next call to Add, Mark or Rewind.
func (s *Stream) Bytes() []byte { return s.buf[s.start:] }

// Consume drops the first n bytes of Bytes (all of them if n is larger).
func (s *Stream) Consume(n int) {
	s.start = min(s.start+max(n, 0), len(s.buf))
}

// Mem is the memory the stream holds, in bytes, for the caller's account.
func (s *Stream) Mem() int {
	n := cap(s.buf)
	for _, g := range s.gaps[:s.ngaps] {
		n += cap(g.data)
	}
	return n
}

// Mark returns the stream's state for Rewind. It first moves the unconsumed
// bytes to the front of the buffer, so that Add only appends until Rewind.
func (s *Stream) Mark() StreamMark {
	if s.start > 0 {
		n := copy(s.buf, s.buf[s.start:])
		s.buf, s.start = s.buf[:n], 0
	}
	return StreamMark{next: s.next, end: len(s.buf), start: s.start, gaps: s.gaps, ngaps: s.ngaps}
}

// Rewind restores the state m, returned by the last Mark: bytes added and
// consumed since are forgotten.
func (s *Stream) Rewind(m StreamMark) {
	s.next, s.buf, s.start, s.gaps, s.ngaps = m.next, s.buf[:m.end], m.start, m.gaps, m.ngaps
	for i := s.ngaps; i < maxGaps; i++ {
		s.gaps[i] = gap{}
	}
}

// held is the number of bytes the stream holds against its limit.
func (s *Stream) held() int {
	n := len(s.buf) - s.start
	for _, g := range s.gaps[:s.ngaps] {
		n += len(g.data)
	}
	return n
}

// Add adds the segment whose first byte has sequence number seq and returns
// how many bytes it added to Bytes. A segment ahead of a hole is kept
// (copied) until the hole fills; bytes the stream already has are ignored.
// ErrStreamLimit means the segment would exceed the bound; the stream is
// then unchanged.
func (s *Stream) Add(seq uint32, data []byte) (int, error) {
	rel := int64(int32(seq - s.next))
	end := rel + int64(len(data))
	if len(data) == 0 || end <= 0 {
		return 0, nil
	}
	if rel > 0 {
		for _, g := range s.gaps[:s.ngaps] {
			if g.seq == seq && len(g.data) >= len(data) {
				return 0, nil // a retransmission of a kept segment
			}
		}
		if s.ngaps == maxGaps || int64(s.held())+end > int64(s.limit) {
			return 0, ErrStreamLimit
		}
		s.gaps[s.ngaps] = gap{seq: seq, data: append([]byte(nil), data...)}
		s.ngaps++
		return 0, nil
	}
	fresh := data[-rel:]
	if s.held()+len(fresh) > s.limit {
		return 0, ErrStreamLimit
	}
	before := len(s.buf)
	s.buf = append(s.buf, fresh...)
	s.next += uint32(len(fresh))
	s.fillGaps()
	return len(s.buf) - before, nil
}

// fillGaps appends the kept segments that the stream now reaches and drops
// those it has passed.
func (s *Stream) fillGaps() {
	for moved := true; moved; {
		moved = false
		for i := 0; i < s.ngaps; i++ {
			g := s.gaps[i]
			rel := int64(int32(g.seq - s.next))
			if rel > 0 {
				continue
			}
			if end := rel + int64(len(g.data)); end > 0 {
				s.buf = append(s.buf, g.data[-rel:]...)
				s.next += uint32(end)
			}
			s.ngaps--
			s.gaps[i], s.gaps[s.ngaps] = s.gaps[s.ngaps], gap{}
			i--
			moved = true
		}
	}
}
