package packet

import "net/netip"

// Family is the IP version of a decoded packet.
type Family uint8

const (
	FamilyUnknown Family = 0
	IPv4          Family = 4
	IPv6          Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return "unknown"
}

// IP protocol numbers the agent understands beyond the network layer.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoGRE    uint8 = 47
	ProtoESP    uint8 = 50
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132
)

// TCP flag bits as they appear in byte 13 of the TCP header.
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPPsh uint8 = 0x08
	TCPAck uint8 = 0x10
	TCPUrg uint8 = 0x20
	TCPEce uint8 = 0x40
	TCPCwr uint8 = 0x80
)

// Packet is a decoded view of one IP packet. A Decoder fills it in place and
// reuses it for the next packet, so slices in it alias the decoded buffer and
// are valid only until the buffer is reused.
type Packet struct {
	Family Family
	Src    netip.Addr
	Dst    netip.Addr
	// Proto is the transport protocol: for IPv6, the one after the extension
	// headers.
	Proto uint8
	// Length is the IP packet length from the header (total length for IPv4,
	// 40 + payload length for IPv6).
	Length int
	// TTL is the IPv4 TTL or IPv6 hop limit.
	TTL uint8
	// HeaderLen is the length of the IP header with IPv4 options or IPv6
	// extension headers: the offset of the transport header in the buffer.
	HeaderLen int

	// Fragment is set for any IPv4 or IPv6 fragment; NonFirstFragment for
	// fragments with a non-zero offset, which carry no transport header, so
	// ports, flags and payload are not valid for them.
	Fragment         bool
	NonFirstFragment bool

	// HasL4 is set when a transport header (TCP, UDP, SCTP, ICMP, ICMPv6) was
	// decoded; the fields below are valid only then, for their protocol.
	HasL4 bool

	// SrcPort and DstPort are valid iff Proto is TCP, UDP or SCTP.
	SrcPort uint16
	DstPort uint16

	// TCPFlags, TCPSeq, TCPAck, TCPWindow are valid iff Proto == TCP.
	TCPFlags  uint8
	TCPSeq    uint32
	TCPAck    uint32
	TCPWindow uint16

	// ICMPType and ICMPCode are valid iff Proto is ICMP or ICMPv6; ICMPID and
	// ICMPSeq iff it is an echo request or reply.
	ICMPType uint8
	ICMPCode uint8
	ICMPID   uint16
	ICMPSeq  uint16

	// Inner is the flow quoted by an ICMP or ICMPv6 error message (destination
	// unreachable, time exceeded, ...), used to relate the error to a tracked
	// flow. Valid iff Inner.Valid.
	Inner Quoted

	// Payload is the transport payload (after the TCP/UDP/SCTP header, or the
	// ICMP body after the first 8 bytes). Without a decoded transport header
	// (non-first fragments, GRE, ESP, other protocols) it is everything after
	// the IP headers. It aliases the decoded buffer.
	Payload []byte
}

// Quoted is the 5-tuple of the packet quoted inside an ICMP error. Valid is set
// only when the quote holds the whole key for its protocol: the addresses, and
// the ports for TCP, UDP and SCTP (the ICMPID for an ICMP echo), so a consumer
// can look the flow up without further checks.
type Quoted struct {
	Valid   bool
	Src     netip.Addr
	Dst     netip.Addr
	Proto   uint8
	SrcPort uint16
	DstPort uint16
	// ICMPID is the echo identifier when the quoted packet is an ICMP echo.
	ICMPID uint16
}
