package packet

import (
	"encoding/binary"
	"net/netip"
)

// parseQuoted decodes the packet an ICMP error quotes (b is the ICMP body
// after the first 8 bytes) into q, leaving q invalid when the quote cannot
// name a flow. Hand-written: a quote is cut short by design (RFC 792 keeps
// the IP header and 8 bytes, RFC 4443 as much as fits in 1280), so the
// lengths in the quoted header exceed the bytes present and must not be
// enforced, which no gopacket layer allows without flagging an error or
// allocating. Family must match the outer packet's: ICMP quotes IPv4,
// ICMPv6 quotes IPv6.
func parseQuoted(b []byte, fam Family, q *Quoted) {
	// Filled in r and copied once complete, so a failed parse leaves q zero.
	var r Quoted
	var l4 []byte
	var icmpProto uint8
	var echoRequest, echoReply uint8
	switch fam {
	case IPv4:
		if len(b) < 20 || b[0]>>4 != 4 {
			return
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || ihl > len(b) {
			return
		}
		r.Src = netip.AddrFrom4([4]byte(b[12:16]))
		r.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		r.Proto = b[9]
		if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
			l4 = nil // a non-first fragment carries no ports
		} else {
			l4 = b[ihl:]
		}
		icmpProto, echoRequest, echoReply = ProtoICMP, icmp4EchoRequest, icmp4EchoReply
	case IPv6:
		if len(b) < 40 || b[0]>>4 != 6 {
			return
		}
		r.Src = netip.AddrFrom16([16]byte(b[8:24]))
		r.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		proto, off, frag, err := walkIPv6(b)
		if err != nil {
			// The chain runs past the quote (or is bogus): the
			// upper-layer protocol is unknown.
			return
		}
		r.Proto = proto
		if frag != fragNonFirst {
			l4 = b[off:]
		}
		icmpProto, echoRequest, echoReply = ProtoICMPv6, icmp6EchoRequest, icmp6EchoReply
	default:
		return
	}
	switch r.Proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
		if len(l4) < 4 {
			return
		}
		r.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		r.DstPort = binary.BigEndian.Uint16(l4[2:4])
	case icmpProto:
		if len(l4) < 8 {
			return
		}
		if t := l4[0]; t == echoRequest || t == echoReply {
			r.ICMPID = binary.BigEndian.Uint16(l4[4:6])
		}
	}
	r.Valid = true
	*q = r
}
