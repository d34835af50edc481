package packet

import "strconv"

// AppendProtoName appends the protocol's name as the agent spells it in
// events and eval output (tcp, udp, icmp, icmpv6, sctp, gre, esp), or its
// number for protocols without one. It allocates nothing when b has room.
func AppendProtoName(b []byte, p uint8) []byte {
	switch p {
	case ProtoTCP:
		return append(b, "tcp"...)
	case ProtoUDP:
		return append(b, "udp"...)
	case ProtoICMP:
		return append(b, "icmp"...)
	case ProtoICMPv6:
		return append(b, "icmpv6"...)
	case ProtoSCTP:
		return append(b, "sctp"...)
	case ProtoGRE:
		return append(b, "gre"...)
	case ProtoESP:
		return append(b, "esp"...)
	}
	return strconv.AppendUint(b, uint64(p), 10)
}
