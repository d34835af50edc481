package capture

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"time"
)

// Captures are assembled by hand here, byte by byte, so every link type and
// both byte orders can be produced without the tools that would write them.

type record struct {
	ts      time.Time
	data    []byte
	origLen int // 0 means len(data)
}

// pcapFile builds a classic pcap file.
func pcapFile(link uint32, bo binary.ByteOrder, nanos bool, recs ...record) []byte {
	var b bytes.Buffer
	hdr := make([]byte, 24)
	magic := uint32(0xa1b2c3d4)
	if nanos {
		magic = 0xa1b23c4d
	}
	bo.PutUint32(hdr[0:], magic)
	bo.PutUint16(hdr[4:], 2)
	bo.PutUint16(hdr[6:], 4)
	bo.PutUint32(hdr[16:], 65535)
	bo.PutUint32(hdr[20:], link)
	b.Write(hdr)
	for _, r := range recs {
		rh := make([]byte, 16)
		bo.PutUint32(rh[0:], uint32(r.ts.Unix()))
		frac := r.ts.Nanosecond() / 1000
		if nanos {
			frac = r.ts.Nanosecond()
		}
		bo.PutUint32(rh[4:], uint32(frac))
		bo.PutUint32(rh[8:], uint32(len(r.data)))
		orig := r.origLen
		if orig == 0 {
			orig = len(r.data)
		}
		bo.PutUint32(rh[12:], uint32(orig))
		b.Write(rh)
		b.Write(r.data)
	}
	return b.Bytes()
}

// ngBlock frames a pcapng block body with type and both lengths.
func ngBlock(bo order, typ uint32, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	n := uint32(12 + len(body))
	b := make([]byte, 8, n)
	bo.PutUint32(b[0:], typ)
	bo.PutUint32(b[4:], n)
	b = append(b, body...)
	return bo.AppendUint32(b, n)
}

func ngSHB(bo order) []byte {
	body := bo.AppendUint32(nil, ngByteOrder)
	body = bo.AppendUint16(body, 1)
	body = bo.AppendUint16(body, 0)
	body = bo.AppendUint64(body, ^uint64(0)) // section length unknown
	return ngBlock(bo, ngSectionHeader, body)
}

// ngOpt encodes one option, padded.
func ngOpt(bo order, code uint16, v []byte) []byte {
	b := bo.AppendUint16(nil, code)
	b = bo.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func ngIDB(bo order, link uint16, snaplen uint32, opts ...[]byte) []byte {
	body := bo.AppendUint16(nil, link)
	body = bo.AppendUint16(body, 0)
	body = bo.AppendUint32(body, snaplen)
	for _, o := range opts {
		body = append(body, o...)
	}
	if len(opts) > 0 {
		body = append(body, 0, 0, 0, 0)
	}
	return ngBlock(bo, ngInterface, body)
}

// ngEPB builds an enhanced packet block; ts is in the interface's units.
func ngEPB(bo order, iface uint32, ts uint64, data []byte, origLen int) []byte {
	if origLen == 0 {
		origLen = len(data)
	}
	body := bo.AppendUint32(nil, iface)
	body = bo.AppendUint32(body, uint32(ts>>32))
	body = bo.AppendUint32(body, uint32(ts))
	body = bo.AppendUint32(body, uint32(len(data)))
	body = bo.AppendUint32(body, uint32(origLen))
	body = append(body, data...)
	return ngBlock(bo, ngEnhanced, body)
}

func ngSPB(bo order, data []byte) []byte {
	return ngBlock(bo, ngSimplePacket, append(bo.AppendUint32(nil, uint32(len(data))), data...))
}

var (
	v4a = netip.MustParseAddr("192.0.2.1")
	v4b = netip.MustParseAddr("192.0.2.2")
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8::2")
)

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

var (
	macs   = []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2}
	arpPkt = make([]byte, 28)
)

func ether(etherType uint16, payload []byte) []byte {
	return slices.Concat(macs, u16(etherType), payload)
}

// tag is the rest of a VLAN tag after its TPID: the TCI and the next type.
func tag(id, next uint16) []byte { return slices.Concat(u16(id), u16(next)) }

// sll is a Linux cooked v1 header.
func sll(proto uint16, payload []byte) []byte {
	h := make([]byte, 16)
	binary.BigEndian.PutUint16(h[0:], 0) // packet to us
	binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
	binary.BigEndian.PutUint16(h[4:], 6)
	copy(h[6:], macs[:6])
	binary.BigEndian.PutUint16(h[14:], proto)
	return slices.Concat(h, payload)
}

// sll2 is a Linux cooked v2 header.
func sll2(proto uint16, payload []byte) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], proto)
	binary.BigEndian.PutUint32(h[4:], 3) // ifindex
	binary.BigEndian.PutUint16(h[8:], 1) // ARPHRD_ETHER
	h[10] = 4                            // outgoing
	h[11] = 6
	copy(h[12:], macs[:6])
	return slices.Concat(h, payload)
}

// order is a byte order that can also append.
type order interface {
	binary.ByteOrder
	binary.AppendByteOrder
}
