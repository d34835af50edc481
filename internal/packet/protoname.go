package packet

import "strconv"

// protoNames are the protocols' names as the agent spells them in events
// and eval output; the protocols without one have "".
var protoNames = [256]string{
	ProtoTCP:    "tcp",
	ProtoUDP:    "udp",
	ProtoICMP:   "icmp",
	ProtoICMPv6: "icmpv6",
	ProtoSCTP:   "sctp",
	ProtoGRE:    "gre",
	ProtoESP:    "esp",
}

// AppendProtoName appends the protocol's name as the agent spells it in
// events and eval output (tcp, udp, icmp, icmpv6, sctp, gre, esp), or its
// number for protocols without one. It allocates nothing when b has room.
func AppendProtoName(b []byte, p uint8) []byte {
	if name := protoNames[p]; name != "" {
		return append(b, name...)
	}
	return strconv.AppendUint(b, uint64(p), 10)
}

// ProtoByName is the protocol AppendProtoName spells name, the inverse for
// names; ok is false for any other string, a number included.
func ProtoByName(name string) (p uint8, ok bool) {
	if name == "" {
		return 0, false
	}
	for i, n := range protoNames {
		if n == name {
			return uint8(i), true
		}
	}
	return 0, false
}
