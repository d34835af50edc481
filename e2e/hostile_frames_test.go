package e2e

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/fwagent/fwagent/internal/testing/checksum"
)

const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
)

// ip4 describes an IPv4 header; zero fields get sane values, and the
// overrides let a test lie in any of them.
type ip4 struct {
	src, dst  netip.Addr
	proto     uint8
	ihl       int // words; 0 means 5
	totalLen  int // 0 means the real length
	flagsFrag uint16
	options   []byte
}

func (h ip4) build(payload []byte) []byte {
	hl := 20 + len(h.options)
	ihl := h.ihl
	if ihl == 0 {
		ihl = hl / 4
	}
	b := make([]byte, hl+len(payload))
	b[0] = 4<<4 | byte(ihl&0x0f)
	tl := h.totalLen
	if tl == 0 {
		tl = len(b)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(tl))
	binary.BigEndian.PutUint16(b[4:], 0x4242)
	binary.BigEndian.PutUint16(b[6:], h.flagsFrag)
	b[8] = 64
	b[9] = h.proto
	copy(b[12:16], h.src.AsSlice())
	copy(b[16:20], h.dst.AsSlice())
	copy(b[20:], h.options)
	binary.BigEndian.PutUint16(b[10:], checksum.Internet(0, b[:hl]))
	copy(b[hl:], payload)
	return b
}

// ip6 builds an IPv6 header; payloadLen 0 means the real length.
type ip6 struct {
	src, dst   netip.Addr
	next       uint8
	payloadLen int
}

func (h ip6) build(payload []byte) []byte {
	b := make([]byte, 40+len(payload))
	b[0] = 6 << 4
	pl := h.payloadLen
	if pl == 0 {
		pl = len(payload)
	}
	binary.BigEndian.PutUint16(b[4:], uint16(pl))
	b[6] = h.next
	b[7] = 64
	copy(b[8:24], h.src.AsSlice())
	copy(b[24:40], h.dst.AsSlice())
	copy(b[40:], payload)
	return b
}

// tcpSeg builds a TCP segment with data offset doff (words; it may lie) and
// a correct checksum, so only the lie makes it malformed.
func tcpSeg(src, dst netip.Addr, sport, dport uint16, flags byte, doff int, data []byte) []byte {
	b := make([]byte, 20+len(data))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 0x01020304)
	b[12] = byte(doff) << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	copy(b[20:], data)
	binary.BigEndian.PutUint16(b[16:], checksum.Internet(checksum.Pseudo(src, dst, 6, len(b)), b))
	return b
}

// udpDgram builds a UDP datagram with a correct checksum.
func udpDgram(src, dst netip.Addr, sport, dport uint16, data []byte) []byte {
	b := make([]byte, 8+len(data))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], data)
	binary.BigEndian.PutUint16(b[6:], checksum.Internet(checksum.Pseudo(src, dst, 17, len(b)), b))
	return b
}

// icmpMsg builds an ICMP (v4) message; ICMPv6 needs the pseudo header, so
// icmp6Msg takes the addresses.
func icmpMsg(typ, code byte, body []byte) []byte {
	b := make([]byte, 8+len(body))
	b[0], b[1] = typ, code
	copy(b[8:], body)
	binary.BigEndian.PutUint16(b[2:], checksum.Internet(0, b))
	return b
}

func icmp6Msg(src, dst netip.Addr, typ, code byte, body []byte) []byte {
	b := make([]byte, 8+len(body))
	b[0], b[1] = typ, code
	copy(b[8:], body)
	binary.BigEndian.PutUint16(b[2:], checksum.Internet(checksum.Pseudo(src, dst, 58, len(b)), b))
	return b
}

// destOpts is one 8-byte IPv6 destination options header (PadN) followed by
// next; hdrLen is its length field (units of 8 bytes beyond the first 8),
// which may lie.
func destOpts(next uint8, hdrLen byte) []byte {
	return []byte{next, hdrLen, 1, 4, 0, 0, 0, 0}
}

// fragHdr is an IPv6 fragment header.
func fragHdr(next uint8, offset8 uint16, more bool) []byte {
	v := offset8 << 3
	if more {
		v |= 1
	}
	b := []byte{next, 0, 0, 0, 0, 0, 0x42, 0x42}
	binary.BigEndian.PutUint16(b[2:], v)
	return b
}

// garbage is n bytes that parse as nothing in particular.
func garbage(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*73 + 0x5a)
	}
	return b
}

// rawDNSQuery builds a DNS query message for name (dotted, no escapes).
func rawDNSQuery(name string) []byte {
	b := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	return append(append(b, dnsName(name)...), 0, 1, 0, 1)
}

// dnsName is name in DNS wire form: length-prefixed labels and the root.
func dnsName(name string) []byte {
	var b []byte
	for _, label := range splitDots(name) {
		b = append(b, byte(len(label)))
		b = append(b, label...)
	}
	return append(b, 0)
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

// rawClientHello builds a TLS record with a ClientHello naming sni; the fix
// callback may then lie in any length field.
func rawClientHello(sni string, fix func(b []byte)) []byte {
	name := []byte(sni)
	sniExt := slices.Concat(
		[]byte{0, 0}, // server_name
		u16(len(name)+5),
		u16(len(name)+3),
		[]byte{0}, // host_name
		u16(len(name)), name,
	)
	body := slices.Concat(
		[]byte{3, 3}, garbage(32), // version, random
		[]byte{0},                  // session id
		u16(2), []byte{0x13, 0x01}, // one cipher suite
		[]byte{1, 0}, // null compression
		u16(len(sniExt)), sniExt,
	)
	hs := slices.Concat([]byte{1, byte(len(body) >> 16)}, u16(len(body)&0xffff), body)
	rec := slices.Concat([]byte{22, 3, 1}, u16(len(hs)), hs)
	if fix != nil {
		fix(rec)
	}
	return rec
}

func u16(v int) []byte { return []byte{byte(v >> 8), byte(v)} }
