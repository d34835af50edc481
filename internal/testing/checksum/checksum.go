// Package checksum computes the Internet checksum (RFC 1071) for tests that
// build packets by hand, written independently of the code under test.
package checksum

import (
	"encoding/binary"
	"net/netip"
)

// Internet is the one's-complement checksum of b, with sum (a pseudo
// header's, or 0) folded in. Over bytes that carry a correct checksum it is
// 0.
func Internet(sum uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// Pseudo is the sum of the TCP/UDP/ICMPv6 pseudo header of a length-byte
// segment of protocol proto from src to dst, for Internet.
func Pseudo(src, dst netip.Addr, proto uint8, length int) uint32 {
	var sum uint32
	for _, a := range [][]byte{src.AsSlice(), dst.AsSlice()} {
		for i := 0; i < len(a); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(a[i:]))
		}
	}
	return sum + uint32(proto) + uint32(length)
}
