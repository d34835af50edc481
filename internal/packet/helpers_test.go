package packet

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// Hand-built packets: the builders below write headers byte by byte, so
// tests can produce exactly the malformations a serialiser would refuse.

var (
	v4a = netip.MustParseAddr("10.0.0.1")
	v4b = netip.MustParseAddr("10.0.0.2")
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8::2")
)

// ipv4Raw builds an IPv4 packet from 10.0.0.1 to 10.0.0.2 with the given
// options (a multiple of 4 bytes), protocol, flags/fragment-offset word and
// transport bytes.
func ipv4Raw(opts []byte, proto uint8, flagsFrag uint16, l4 []byte) []byte {
	ihl := 20 + len(opts)
	b := make([]byte, ihl+len(l4))
	b[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	binary.BigEndian.PutUint16(b[6:8], flagsFrag)
	b[8] = 64
	b[9] = proto
	copy(b[12:16], v4a.AsSlice())
	copy(b[16:20], v4b.AsSlice())
	copy(b[20:], opts)
	copy(b[ihl:], l4)
	return b
}

// ipv6Raw builds an IPv6 packet from 2001:db8::1 to 2001:db8::2 whose first
// next-header value is next, followed by ext (extension headers already
// chained) and l4.
func ipv6Raw(next uint8, ext, l4 []byte) []byte {
	b := make([]byte, 40, 40+len(ext)+len(l4))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:6], uint16(len(ext)+len(l4)))
	b[6] = next
	b[7] = 64
	copy(b[8:24], v6a.AsSlice())
	copy(b[24:40], v6b.AsSlice())
	b = append(b, ext...)
	return append(b, l4...)
}

// extHdr builds a generic extension header ((units+1)*8 bytes) naming next.
func extHdr(next, units uint8) []byte {
	h := make([]byte, (int(units)+1)*8)
	h[0], h[1] = next, units
	if units == 0 {
		h[2], h[3] = 1, 4 // a PadN option filling the header, as a sender would
	}
	return h
}

// fragHdr builds an IPv6 fragment header.
func fragHdr(next uint8, offset uint16, more bool) []byte {
	h := make([]byte, 8)
	h[0] = next
	w := offset << 3
	if more {
		w |= 1
	}
	binary.BigEndian.PutUint16(h[2:4], w)
	binary.BigEndian.PutUint32(h[4:8], 0xabcd)
	return h
}

func tcpRaw(sport, dport uint16, flags uint8, opts, payload []byte) []byte {
	hl := 20 + len(opts)
	b := make([]byte, hl+len(payload))
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	binary.BigEndian.PutUint32(b[4:8], 1000)
	binary.BigEndian.PutUint32(b[8:12], 2000)
	b[12] = byte(hl/4) << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:16], 512)
	copy(b[20:], opts)
	copy(b[hl:], payload)
	return b
}

func udpRaw(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	binary.BigEndian.PutUint16(b[4:6], uint16(len(b)))
	copy(b[8:], payload)
	return b
}

func icmpRaw(typ, code uint8, id, seq uint16, body []byte) []byte {
	b := make([]byte, 8+len(body))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint16(b[4:6], id)
	binary.BigEndian.PutUint16(b[6:8], seq)
	copy(b[8:], body)
	return b
}

// with returns a copy of b with f applied.
func with(b []byte, f func([]byte)) []byte {
	c := append([]byte(nil), b...)
	f(c)
	return c
}

func mustBuild(t testing.TB, s Spec) []byte {
	t.Helper()
	b, err := Build(s)
	if err != nil {
		t.Fatalf("Build(%+v): %v", s, err)
	}
	return b
}
