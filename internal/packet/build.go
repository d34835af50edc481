package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Spec describes a packet for Build. The address family follows Src and Dst
// (IPv4-mapped IPv6 addresses count as IPv4). Fields that do not apply to
// Proto are ignored.
type Spec struct {
	Src, Dst netip.Addr
	// Proto is TCP, UDP, SCTP, ICMP (IPv4 only) or ICMPv6 (IPv6 only); any
	// other number builds an IP packet of that protocol carrying Payload.
	Proto            uint8
	SrcPort, DstPort uint16
	TCPFlags         uint8
	Seq, Ack         uint32
	ICMPType         uint8
	ICMPCode         uint8
	// ICMPID and ICMPSeq fill bytes 4-8 of the ICMP header whatever the
	// type: identifier and sequence for echo, unused or MTU for others.
	ICMPID, ICMPSeq uint16
	Payload         []byte
	// TTL is the IPv4 TTL or IPv6 hop limit; zero means 64.
	TTL uint8
}

const defaultTTL = 64

// Build serialises s as a valid IPv4 or IPv6 packet, with lengths and
// checksums computed. The result starts at the IP header, like a queued
// payload.
func Build(s Spec) ([]byte, error) {
	src, dst := s.Src.Unmap(), s.Dst.Unmap()
	if !src.IsValid() || !dst.IsValid() {
		return nil, errors.New("packet: build: source and destination address required")
	}
	if src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("packet: build: %s and %s are of different families", src, dst)
	}
	ttl := s.TTL
	if ttl == 0 {
		ttl = defaultTTL
	}
	ip := ipLayer(src, dst, s.Proto, ttl)
	netLayer := ip.(gopacket.NetworkLayer)
	payload := gopacket.Payload(s.Payload)
	ls := []gopacket.SerializableLayer{ip}
	switch s.Proto {
	case ProtoTCP:
		tcp := &layers.TCP{
			SrcPort: layers.TCPPort(s.SrcPort),
			DstPort: layers.TCPPort(s.DstPort),
			Seq:     s.Seq,
			Ack:     s.Ack,
			Window:  65535,
			FIN:     s.TCPFlags&TCPFin != 0,
			SYN:     s.TCPFlags&TCPSyn != 0,
			RST:     s.TCPFlags&TCPRst != 0,
			PSH:     s.TCPFlags&TCPPsh != 0,
			ACK:     s.TCPFlags&TCPAck != 0,
			URG:     s.TCPFlags&TCPUrg != 0,
			ECE:     s.TCPFlags&TCPEce != 0,
			CWR:     s.TCPFlags&TCPCwr != 0,
		}
		if err := tcp.SetNetworkLayerForChecksum(netLayer); err != nil {
			return nil, fmt.Errorf("packet: build: %w", err)
		}
		ls = append(ls, tcp)
	case ProtoUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(s.SrcPort), DstPort: layers.UDPPort(s.DstPort)}
		if err := udp.SetNetworkLayerForChecksum(netLayer); err != nil {
			return nil, fmt.Errorf("packet: build: %w", err)
		}
		ls = append(ls, udp)
	case ProtoSCTP:
		ls = append(ls, &layers.SCTP{SrcPort: layers.SCTPPort(s.SrcPort), DstPort: layers.SCTPPort(s.DstPort)})
	case ProtoICMP:
		if !src.Is4() {
			return nil, errors.New("packet: build: ICMP needs IPv4 addresses (use ICMPv6)")
		}
		ls = append(ls, &layers.ICMPv4{
			TypeCode: layers.CreateICMPv4TypeCode(s.ICMPType, s.ICMPCode),
			Id:       s.ICMPID,
			Seq:      s.ICMPSeq,
		})
	case ProtoICMPv6:
		if src.Is4() {
			return nil, errors.New("packet: build: ICMPv6 needs IPv6 addresses (use ICMP)")
		}
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(s.ICMPType, s.ICMPCode)}
		if err := icmp.SetNetworkLayerForChecksum(netLayer); err != nil {
			return nil, fmt.Errorf("packet: build: %w", err)
		}
		// gopacket writes only the first 4 bytes of the ICMPv6 header;
		// the echo layer writes the other 4 for any type.
		ls = append(ls, icmp, &layers.ICMPv6Echo{Identifier: s.ICMPID, SeqNumber: s.ICMPSeq})
	}
	ls = append(ls, payload)
	return serialize(ls)
}

// BuildICMPError builds an ICMP (IPv4 addresses) or ICMPv6 (IPv6 addresses)
// error message of the given type and code from src to dst, quoting the
// packet in quoted, cut so the whole message stays within the minimum MTU
// (576 bytes for IPv4 as RFC 1812 asks, 1280 for IPv6 as RFC 4443 asks). A
// fragmentation-needed or packet-too-big message announces that MTU.
func BuildICMPError(typ, code uint8, quoted []byte, src, dst netip.Addr) ([]byte, error) {
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() || !dst.IsValid() {
		return nil, errors.New("packet: build ICMP error: source and destination address required")
	}
	if src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("packet: build ICMP error: %s and %s are of different families", src, dst)
	}
	const (
		minMTU4, minMTU6       = 576, 1280
		overhead4, overhead6   = 20 + 8, 40 + 8
		fragNeeded, packetBig6 = 4, icmp6PacketTooBig
	)
	s := Spec{Src: src, Dst: dst, ICMPType: typ, ICMPCode: code, TTL: defaultTTL}
	if src.Is4() {
		s.Proto = ProtoICMP
		quoted = quoted[:min(len(quoted), minMTU4-overhead4)]
		if typ == icmp4DestUnreachable && code == fragNeeded {
			s.ICMPSeq = minMTU4 // next-hop MTU lives in bytes 6-8 (RFC 1191)
		}
	} else {
		s.Proto = ProtoICMPv6
		quoted = quoted[:min(len(quoted), minMTU6-overhead6)]
		if typ == packetBig6 {
			s.ICMPSeq = minMTU6 // the MTU is bytes 4-8; it fits the low half
		}
	}
	s.Payload = quoted
	return Build(s)
}

func ipLayer(src, dst netip.Addr, proto, ttl uint8) gopacket.SerializableLayer {
	if src.Is4() {
		s4, d4 := src.As4(), dst.As4()
		return &layers.IPv4{
			Version:  4,
			TTL:      ttl,
			Protocol: layers.IPProtocol(proto),
			SrcIP:    net.IP(s4[:]),
			DstIP:    net.IP(d4[:]),
		}
	}
	s16, d16 := src.As16(), dst.As16()
	return &layers.IPv6{
		Version:    6,
		NextHeader: layers.IPProtocol(proto),
		HopLimit:   ttl,
		SrcIP:      net.IP(s16[:]),
		DstIP:      net.IP(d16[:]),
	}
}

func serialize(ls []gopacket.SerializableLayer) ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		return nil, fmt.Errorf("packet: build: %w", err)
	}
	b := buf.Bytes()
	// gopacket truncates the 16-bit length fields silently.
	if v := b[0] >> 4; (v == 4 && len(b) > 0xffff) || (v == 6 && len(b) > 40+0xffff) {
		return nil, fmt.Errorf("packet: build: %d bytes do not fit an IP length field", len(b))
	}
	return b, nil
}

// Fragment4 splits the IPv4 packet pkt (a 20-byte header, no options) into
// fragments carrying at most size bytes of its payload each (a multiple of
// 8), with identification id and their header checksums computed, as a
// router would send them.
func Fragment4(pkt []byte, id uint16, size int) [][]byte {
	payload := pkt[20:]
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		h := bytes.Clone(pkt[:20])
		binary.BigEndian.PutUint16(h[2:4], uint16(20+end-off))
		binary.BigEndian.PutUint16(h[4:6], id)
		fo := uint16(off / 8)
		if end < len(payload) {
			fo |= 0x2000 // more fragments
		}
		binary.BigEndian.PutUint16(h[6:8], fo)
		h[10], h[11] = 0, 0
		binary.BigEndian.PutUint16(h[10:12], IPv4Checksum(h))
		out = append(out, append(h, payload[off:end]...))
	}
	return out
}

// IPv4Checksum is the Internet checksum (RFC 1071) of the IPv4 header h,
// whose checksum field the caller has zeroed.
func IPv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
