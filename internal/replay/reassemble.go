package replay

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/fwagent/fwagent/internal/packet"
)

// Bounds of the reassembler, after Linux's defaults where it has one: a
// datagram not complete within fragTimeout (net.ipv4.ipfrag_time, 30 s) of
// its first fragment is given up; at most maxPending datagrams and
// maxFragments fragments each are held, so a hostile capture cannot make
// it hold more than about maxPending × 64 KiB.
const (
	fragTimeout  = int64(30e9)
	maxPending   = 1024
	maxFragments = 256
	maxDatagram  = 65535
)

// Reassembler rebuilds IPv4 and IPv6 datagrams from their fragments, as
// the kernel's defragmenter does before conntrack and the agent's queue see
// them. Fragments that overlap make the datagram invalid (the kernel drops
// such a datagram; RFC 5722 for IPv6); its fragments are then released to
// be decided alone, as are those of a datagram that times out or is pushed
// out by the bounds. It is not safe for concurrent use.
type Reassembler struct {
	pending map[fragKey]*datagram
	order   []fragKey // oldest first
	expired []Fragment
}

// Fragment is a fragment given up on, to be decided by itself.
type Fragment struct {
	Data []byte
	N    int
}

type fragKey struct {
	src, dst netip.Addr
	id       uint32
	proto    uint8 // IPv4 only; IPv6 keys on the id alone, as the kernel does
	v6       bool
}

type piece struct {
	off  int
	data []byte
	n    int
	raw  []byte // the whole fragment, for release
}

type datagram struct {
	first  int64 // capture time of the first fragment seen
	unfrag []byte
	// nextOff is where in unfrag the next-header byte pointing at the
	// fragment header sits (IPv6).
	nextOff int
	next    uint8
	total   int // -1 until the last fragment is seen
	pieces  []piece
}

// NewReassembler returns an empty reassembler.
func NewReassembler() *Reassembler {
	return &Reassembler{pending: map[fragKey]*datagram{}}
}

// Add offers the packet data (from the IP header; frame number n, capture
// time now). consumed is false when data is not a fragment, which the
// caller then decides itself. For a fragment, whole is the reassembled
// datagram once this fragment completes it, else nil; frames are then the
// frame numbers of its fragments, ascending. data is copied; whole is the
// caller's.
func (r *Reassembler) Add(data []byte, n int, now int64) (whole []byte, frames []int, consumed bool) {
	r.expire(now)
	f, ok := parseFragment(data)
	if !ok {
		return nil, nil, false
	}
	d := r.pending[f.key]
	if d == nil {
		if len(r.order) >= maxPending {
			r.release(r.order[0])
		}
		d = &datagram{first: now, total: -1}
		r.pending[f.key] = d
		r.order = append(r.order, f.key)
	}
	end := f.off + len(f.payload)
	for _, p := range d.pieces {
		if f.off < p.off+len(p.data) && p.off < end {
			d.pieces = append(d.pieces, piece{off: f.off, data: nil, n: n, raw: slices.Clone(data)})
			r.release(f.key)
			return nil, nil, true
		}
	}
	bad := end > maxDatagram || len(d.pieces) >= maxFragments ||
		!f.more && d.total >= 0 || // two last fragments
		d.total >= 0 && end > d.total || !f.more && slices.ContainsFunc(d.pieces, func(p piece) bool { return p.off+len(p.data) > end })
	d.pieces = append(d.pieces, piece{off: f.off, data: slices.Clone(f.payload), n: n, raw: slices.Clone(data)})
	if bad {
		r.release(f.key)
		return nil, nil, true
	}
	if !f.more {
		d.total = end
	}
	if f.off == 0 {
		d.unfrag, d.nextOff, d.next = slices.Clone(f.unfrag), f.nextOff, f.next
	}
	if d.total < 0 || d.unfrag == nil {
		return nil, nil, true
	}
	slices.SortFunc(d.pieces, func(a, b piece) int { return a.off - b.off })
	at := 0
	for _, p := range d.pieces {
		if p.off != at {
			return nil, nil, true
		}
		at += len(p.data)
	}
	if at != d.total {
		return nil, nil, true
	}
	whole = d.build(f.key.v6)
	for _, p := range d.pieces {
		frames = append(frames, p.n)
	}
	slices.Sort(frames)
	r.drop(f.key)
	return whole, frames, true
}

// Expired returns (and forgets) the fragments given up on since the last
// call, in the order they arrived.
func (r *Reassembler) Expired() []Fragment {
	out := r.expired
	r.expired = nil
	return out
}

// Flush gives up on every pending datagram, at the end of a capture.
func (r *Reassembler) Flush() []Fragment {
	for len(r.order) > 0 {
		r.release(r.order[0])
	}
	return r.Expired()
}

func (r *Reassembler) expire(now int64) {
	for len(r.order) > 0 {
		d := r.pending[r.order[0]]
		if now-d.first < fragTimeout {
			return
		}
		r.release(r.order[0])
	}
}

// release gives up on a datagram: its fragments go to expired.
func (r *Reassembler) release(k fragKey) {
	d := r.pending[k]
	if d == nil {
		return
	}
	ps := slices.Clone(d.pieces)
	slices.SortStableFunc(ps, func(a, b piece) int { return a.n - b.n })
	for _, p := range ps {
		r.expired = append(r.expired, Fragment{Data: p.raw, N: p.n})
	}
	r.drop(k)
}

func (r *Reassembler) drop(k fragKey) {
	delete(r.pending, k)
	if i := slices.Index(r.order, k); i >= 0 {
		r.order = slices.Delete(r.order, i, i+1)
	}
}

func (d *datagram) build(v6 bool) []byte {
	out := make([]byte, 0, len(d.unfrag)+d.total)
	out = append(out, d.unfrag...)
	for _, p := range d.pieces {
		out = append(out, p.data...)
	}
	if v6 {
		out[d.nextOff] = d.next
		binary.BigEndian.PutUint16(out[4:6], uint16(len(out)-40))
		return out
	}
	ihl := len(d.unfrag)
	binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
	// Keep DF, clear MF and the offset.
	binary.BigEndian.PutUint16(out[6:8], binary.BigEndian.Uint16(out[6:8])&0x4000)
	out[10], out[11] = 0, 0
	binary.BigEndian.PutUint16(out[10:12], packet.IPv4Checksum(out[:ihl]))
	return out
}

type fragInfo struct {
	key     fragKey
	off     int
	more    bool
	payload []byte
	unfrag  []byte // the header(s) before the fragmentable part
	nextOff int
	next    uint8
}

// parseFragment reads a fragment's place in its datagram; ok is false for
// anything that is not a fragment, or not one that can be reassembled.
func parseFragment(b []byte) (fragInfo, bool) {
	if len(b) < 1 {
		return fragInfo{}, false
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return fragInfo{}, false
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || total < ihl || total > len(b) {
			return fragInfo{}, false
		}
		fo := binary.BigEndian.Uint16(b[6:8])
		more, off := fo&0x2000 != 0, int(fo&0x1fff)*8
		if !more && off == 0 {
			return fragInfo{}, false
		}
		payload := b[ihl:total]
		if more && len(payload)%8 != 0 || len(payload) == 0 {
			return fragInfo{}, false
		}
		return fragInfo{
			key: fragKey{src: netip.AddrFrom4([4]byte(b[12:16])), dst: netip.AddrFrom4([4]byte(b[16:20])),
				id: uint32(binary.BigEndian.Uint16(b[4:6])), proto: b[9]},
			off: off, more: more, payload: payload, unfrag: b[:ihl],
		}, true
	case 6:
		if len(b) < 40 {
			return fragInfo{}, false
		}
		end := 40 + int(binary.BigEndian.Uint16(b[4:6]))
		if end > len(b) {
			return fragInfo{}, false
		}
		next, nextOff, at := b[6], 6, 40
		// Only the extension headers that may precede a fragment header.
		for next == 0 || next == 43 || next == 60 {
			if at+8 > end {
				return fragInfo{}, false
			}
			l := (int(b[at+1]) + 1) * 8
			if at+l > end {
				return fragInfo{}, false
			}
			next, nextOff, at = b[at], at, at+l
		}
		if next != 44 || at+8 > end {
			return fragInfo{}, false
		}
		fh := b[at : at+8]
		fo := binary.BigEndian.Uint16(fh[2:4])
		more, off := fo&1 != 0, int(fo>>3)*8
		if !more && off == 0 {
			return fragInfo{}, false // an atomic fragment: the decoder reads it whole
		}
		payload := b[at+8 : end]
		if more && len(payload)%8 != 0 || len(payload) == 0 {
			return fragInfo{}, false
		}
		return fragInfo{
			key: fragKey{src: netip.AddrFrom16([16]byte(b[8:24])).Unmap(), dst: netip.AddrFrom16([16]byte(b[24:40])).Unmap(),
				id: binary.BigEndian.Uint32(fh[4:8]), v6: true},
			off: off, more: more, payload: payload, unfrag: b[:at], nextOff: nextOff, next: fh[0],
		}, true
	}
	return fragInfo{}, false
}
