package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// rawLink sends hand-built Ethernet frames out of one interface of a
// namespace through an AF_PACKET socket, so no kernel code on the sending
// side repairs a header the test got wrong on purpose.
type rawLink struct {
	fd       int
	ifindex  int
	src, dst net.HardwareAddr
}

// openRawLink opens a packet socket on ifname in from, addressed to the MAC
// of peer's interface peerIf.
func openRawLink(t *testing.T, from *testnet.NS, ifname string, peer *testnet.NS, peerIf string) *rawLink {
	t.Helper()
	l, err := from.Netlink().LinkByName(ifname)
	if err != nil {
		t.Fatalf("find %s: %v", ifname, err)
	}
	pl, err := peer.Netlink().LinkByName(peerIf)
	if err != nil {
		t.Fatalf("find %s: %v", peerIf, err)
	}
	r := &rawLink{ifindex: l.Attrs().Index, src: l.Attrs().HardwareAddr, dst: pl.Attrs().HardwareAddr}
	if err := from.Do(func() (err error) {
		// Protocol 0: send only, receive nothing.
		r.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		return err
	}); err != nil {
		t.Fatalf("packet socket in %s: %v", from.Name(), err)
	}
	t.Cleanup(func() { unix.Close(r.fd) })
	return r
}

// send puts payload (starting at the IP header) on the wire behind an
// Ethernet header of the given type.
func (r *rawLink) send(etherType uint16, payload []byte) error {
	frame := make([]byte, 14+len(payload))
	copy(frame[0:6], r.dst)
	copy(frame[6:12], r.src)
	binary.BigEndian.PutUint16(frame[12:14], etherType)
	copy(frame[14:], payload)
	sa := &unix.SockaddrLinklayer{Ifindex: r.ifindex, Halen: 6, Protocol: htons(etherType)}
	copy(sa.Addr[:], r.dst)
	if err := unix.Sendto(r.fd, frame, 0, sa); err != nil {
		return fmt.Errorf("send %d-byte frame: %w", len(frame), err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
)

// csum is the Internet checksum of b, folded into sum.
func csum(sum uint32, b []byte) uint16 {
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

// pseudoSum is the sum of the TCP/UDP pseudo header.
func pseudoSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	var sum uint32
	for _, a := range [][]byte{src.AsSlice(), dst.AsSlice()} {
		for i := 0; i < len(a); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(a[i:]))
		}
	}
	return sum + uint32(proto) + uint32(length)
}

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
	binary.BigEndian.PutUint16(b[10:], csum(0, b[:hl]))
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
	binary.BigEndian.PutUint16(b[16:], csum(pseudoSum(src, dst, 6, len(b)), b))
	return b
}

// udpDgram builds a UDP datagram with a correct checksum.
func udpDgram(src, dst netip.Addr, sport, dport uint16, data []byte) []byte {
	b := make([]byte, 8+len(data))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], data)
	binary.BigEndian.PutUint16(b[6:], csum(pseudoSum(src, dst, 17, len(b)), b))
	return b
}

// icmpMsg builds an ICMP (v4) message; ICMPv6 needs the pseudo header, so
// icmp6Msg takes the addresses.
func icmpMsg(typ, code byte, body []byte) []byte {
	b := make([]byte, 8+len(body))
	b[0], b[1] = typ, code
	copy(b[8:], body)
	binary.BigEndian.PutUint16(b[2:], csum(0, b))
	return b
}

func icmp6Msg(src, dst netip.Addr, typ, code byte, body []byte) []byte {
	b := make([]byte, 8+len(body))
	b[0], b[1] = typ, code
	copy(b[8:], body)
	binary.BigEndian.PutUint16(b[2:], csum(pseudoSum(src, dst, 58, len(b)), b))
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

func concat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
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
	sniExt := concat(
		[]byte{0, 0}, // server_name
		u16(len(name)+5),
		u16(len(name)+3),
		[]byte{0}, // host_name
		u16(len(name)), name,
	)
	body := concat(
		[]byte{3, 3}, garbage(32), // version, random
		[]byte{0},                  // session id
		u16(2), []byte{0x13, 0x01}, // one cipher suite
		[]byte{1, 0}, // null compression
		u16(len(sniExt)), sniExt,
	)
	hs := concat([]byte{1, byte(len(body) >> 16)}, u16(len(body)&0xffff), body)
	rec := concat([]byte{22, 3, 1}, u16(len(hs)), hs)
	if fix != nil {
		fix(rec)
	}
	return rec
}

func u16(v int) []byte { return []byte{byte(v >> 8), byte(v)} }
