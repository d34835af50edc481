package quic

import "encoding/binary"

const (
	formLong = 0x80 // header form bit: long header
	fixedBit = 0x40 // must be 1 in v1 and v2 (RFC 9000 section 17.2)
)

// varint reads a variable-length integer (RFC 9000 section 16) at the start
// of b and returns it with its encoded length, or n == 0 when b is too short.
func varint(b []byte) (v uint64, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	n = 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0
	}
	v = uint64(b[0] & 0x3f)
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	return v, n
}

// longHeader is the part of a long header read before header protection is
// removed. Offsets are into the datagram slice the packet starts.
type longHeader struct {
	version uint32
	typ     longType
	dcid    []byte
	// pnOffset is where the (protected) packet number starts.
	pnOffset int
	// end is where the packet ends: the next coalesced packet starts there.
	end int
}

// parseLongHeader reads the long header at the start of b. Retry packets
// (no Length field, never sent by clients) and versions other than 1 and 2
// yield ErrNotInitial: a walk over coalesced packets stops there.
func parseLongHeader(b []byte) (longHeader, *versionInfo, error) {
	var h longHeader
	if len(b) < 7 || b[0]&formLong == 0 {
		return h, nil, ErrNotInitial
	}
	h.version = binary.BigEndian.Uint32(b[1:5])
	v := lookupVersion(h.version)
	if v == nil || b[0]&fixedBit == 0 {
		return h, v, ErrNotInitial
	}
	h.typ = v.types[b[0]>>4&3]
	if h.typ == typeRetry {
		return h, v, ErrNotInitial
	}
	off := 5
	dl := int(b[off])
	off++
	if dl > maxConnIDLen || off+dl+1 > len(b) {
		return h, v, ErrMalformed
	}
	h.dcid = b[off : off+dl]
	off += dl
	sl := int(b[off])
	off++
	if sl > maxConnIDLen || off+sl > len(b) {
		return h, v, ErrMalformed
	}
	off += sl
	if h.typ == typeInitial {
		tl, n := varint(b[off:])
		if n == 0 || tl > uint64(len(b)-off-n) {
			return h, v, ErrMalformed
		}
		off += n + int(tl)
	}
	length, n := varint(b[off:])
	if n == 0 || length > uint64(len(b)-off-n) {
		return h, v, ErrMalformed
	}
	h.pnOffset = off + n
	h.end = h.pnOffset + int(length)
	return h, v, nil
}

// openWork holds what openInitial hands to the ciphers. Passed through
// interface methods, a local array would escape to the heap on every call.
type openWork struct {
	mask  [aesBlock]byte
	nonce [ivLen]byte
}

// openInitial removes header protection from the Initial packet pkt (the
// datagram bytes from its first byte to h.end) and decrypts its payload,
// working in scratch, which must be at least len(pkt) long; pkt itself is
// left as it was. It returns the plaintext frames, a subslice of scratch.
func openInitial(pkt []byte, h *longHeader, k *initialKeys, scratch []byte, w *openWork) ([]byte, error) {
	// The sample is taken as if the packet number were 4 bytes long
	// (RFC 9001 section 5.4.2); a packet too short for it is invalid.
	if h.pnOffset+4+sampleLen > len(pkt) {
		return nil, ErrMalformed
	}
	s := scratch[:len(pkt)]
	copy(s, pkt)
	mask := w.mask[:]
	k.hp.Encrypt(mask, s[h.pnOffset+4:h.pnOffset+4+sampleLen])
	s[0] ^= mask[0] & 0x0f
	pnLen := int(s[0]&3) + 1
	var pn uint64
	for i := range pnLen {
		s[h.pnOffset+i] ^= mask[1+i]
		pn = pn<<8 | uint64(s[h.pnOffset+i])
	}
	payload := h.pnOffset + pnLen
	if payload+tagLen > len(s) {
		return nil, ErrMalformed
	}
	// The truncated packet number is the full one: a client's Initial
	// packet numbers start at 0 and stay far below 2^8.
	w.nonce = k.iv
	for i := range 8 {
		w.nonce[ivLen-1-i] ^= byte(pn >> (8 * i))
	}
	pt, err := k.aead.Open(s[payload:payload], w.nonce[:], s[payload:], s[:payload])
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

const aesBlock = 16
