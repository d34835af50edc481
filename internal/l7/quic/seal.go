package quic

import (
	"encoding/binary"
	"fmt"
)

// MinInitialSize is the smallest datagram a client's Initial may travel in
// (RFC 9000 section 14.1); SealInitial pads to it.
const MinInitialSize = 1200

// SealInitial appends to dst a client Initial packet of version v (Version1
// or Version2) with the given connection IDs and packet number, carrying
// frames (see AppendCrypto), padded with PADDING frames to MinInitialSize,
// encrypted and header-protected as RFC 9001 section 5 says. The packet
// number is encoded in 4 bytes and the Length field in 2, as in RFC 9001
// Appendix A, whose client Initial it reproduces byte for byte.
//
// It builds test traffic (tests, the policy test runner); clients build
// their own.
func SealInitial(dst []byte, v uint32, dcid, scid []byte, pn uint32, frames []byte) ([]byte, error) {
	return sealInitial(dst, v, dcid, dcid, scid, pn, frames, MinInitialSize)
}

// sealInitial protects with the keys of keyID, the client's first
// connection ID, a packet that carries dcid (a client's later Initials after
// it switched to the server's connection ID), padded to size bytes.
func sealInitial(dst []byte, v uint32, keyID, dcid, scid []byte, pn uint32, frames []byte, size int) ([]byte, error) {
	vi := lookupVersion(v)
	if vi == nil {
		return nil, fmt.Errorf("quic: seal: unknown version %#x", v)
	}
	if len(dcid) > maxConnIDLen || len(scid) > maxConnIDLen {
		return nil, fmt.Errorf("quic: seal: connection ID longer than %d bytes", maxConnIDLen)
	}
	k, err := clientInitialKeys(vi, keyID)
	if err != nil {
		return nil, err
	}
	const pnLen = 4
	hdrLen := 1 + 4 + 1 + len(dcid) + 1 + len(scid) + 1 + 2 + pnLen
	// The sample for header protection needs 4+16 bytes after the
	// packet number's start, whatever the size asked for.
	payloadLen := max(len(frames), size-hdrLen-tagLen, sampleLen+4-pnLen)
	if pnLen+payloadLen+tagLen >= 1<<14 {
		return nil, fmt.Errorf("quic: seal: %d bytes of frames do not fit one packet", len(frames))
	}
	start := len(dst)
	dst = append(dst, formLong|fixedBit|vi.initialType<<4|(pnLen-1))
	dst = binary.BigEndian.AppendUint32(dst, v)
	dst = append(dst, byte(len(dcid)))
	dst = append(dst, dcid...)
	dst = append(dst, byte(len(scid)))
	dst = append(dst, scid...)
	dst = append(dst, 0) // no token
	dst = binary.BigEndian.AppendUint16(dst, 0x4000|uint16(pnLen+payloadLen+tagLen))
	pnOffset := len(dst) - start
	dst = binary.BigEndian.AppendUint32(dst, pn)
	hdr := len(dst)
	dst = append(dst, frames...)
	for range payloadLen - len(frames) {
		dst = append(dst, framePadding)
	}
	nonce := k.iv
	for i := range 8 {
		nonce[ivLen-1-i] ^= byte(uint64(pn) >> (8 * i))
	}
	dst = k.aead.Seal(dst[:hdr], nonce[:], dst[hdr:], dst[start:hdr])

	p := dst[start:]
	var mask [aesBlock]byte
	k.hp.Encrypt(mask[:], p[pnOffset+4:pnOffset+4+sampleLen])
	p[0] ^= mask[0] & 0x0f
	for i := range pnLen {
		p[pnOffset+i] ^= mask[1+i]
	}
	return dst, nil
}

// AppendCrypto appends a CRYPTO frame carrying data at stream offset off.
func AppendCrypto(dst []byte, off uint64, data []byte) []byte {
	dst = append(dst, frameCrypto)
	dst = appendVarint(dst, off)
	dst = appendVarint(dst, uint64(len(data)))
	return append(dst, data...)
}

// appendVarint appends v in the shortest encoding of RFC 9000 section 16.
func appendVarint(dst []byte, v uint64) []byte {
	switch {
	case v < 1<<6:
		return append(dst, byte(v))
	case v < 1<<14:
		return binary.BigEndian.AppendUint16(dst, uint16(v)|0x4000)
	case v < 1<<30:
		return binary.BigEndian.AppendUint32(dst, uint32(v)|0x80000000)
	}
	return binary.BigEndian.AppendUint64(dst, v|0xc0<<56)
}

// ClientInitial is a whole client first flight for a ClientHello handshake
// message hello (no TLS record header): one Initial packet per datagram,
// version v, the hello cut into CRYPTO frames of at most 1100 bytes.
func ClientInitial(v uint32, dcid []byte, hello []byte) ([][]byte, error) {
	const chunk = 1100
	var out [][]byte
	for off := 0; off == 0 || off < len(hello); off += chunk {
		end := min(off+chunk, len(hello))
		pkt, err := SealInitial(nil, v, dcid, nil, uint32(len(out)), AppendCrypto(nil, uint64(off), hello[off:end]))
		if err != nil {
			return nil, err
		}
		out = append(out, pkt)
	}
	return out, nil
}
