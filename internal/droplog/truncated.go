package droplog

import (
	"encoding/binary"
	"errors"

	"github.com/fwagent/fwagent/internal/packet"
)

// decodeCopy decodes a payload that the kernel may have cut at CopyRange.
//
// The packet decoder rejects a packet shorter than its headers claim
// (ErrTruncated), which is right for queued packets but not for a log copy
// that stops after the headers on purpose. So when the IP header claims more
// than was copied, the length fields are rewritten, in a scratch copy, to
// end where the copy ends (and a UDP length to 0, "to the end of the
// packet"), the copy is decoded again, and Length is set back to what the
// header claimed. Everything the event shows lies in the copied headers.
func (r *Reader) decodeCopy(b []byte, p *packet.Packet) error {
	err := r.dec.Decode(b, p)
	if !errors.Is(err, packet.ErrTruncated) {
		return err
	}
	claimed, ok := claimedLength(b)
	if !ok || claimed <= len(b) {
		return err // malformed, not cut by the copy range
	}
	s := append(r.scratch[:0], b...)
	r.scratch = s
	if s[0]>>4 == 4 {
		binary.BigEndian.PutUint16(s[2:4], uint16(len(s)))
	} else {
		binary.BigEndian.PutUint16(s[4:6], uint16(len(s)-40))
	}
	err = r.dec.Decode(s, p)
	if errors.Is(err, packet.ErrTruncated) && p.Proto == packet.ProtoUDP && !p.NonFirstFragment &&
		p.HeaderLen > 0 && p.HeaderLen+8 <= len(s) {
		binary.BigEndian.PutUint16(s[p.HeaderLen+4:], 0)
		err = r.dec.Decode(s, p)
	}
	if err != nil {
		return err
	}
	p.Length = claimed
	return nil
}

// claimedLength is the packet length the IP header claims. A zero IPv4
// total length or IPv6 payload length (GSO, jumbograms) claims nothing.
func claimedLength(b []byte) (int, bool) {
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		n := int(binary.BigEndian.Uint16(b[2:4]))
		return n, n != 0
	case len(b) >= 40 && b[0]>>4 == 6:
		n := int(binary.BigEndian.Uint16(b[4:6]))
		return 40 + n, n != 0
	}
	return 0, false
}
