package policies

import "reflect"

// Copy ranges for CopyRange: how many bytes of each queued packet, from
// the IP header on, the kernel must copy to userspace.
const (
	// HeaderBytes covers an IPv4 header with options (60) or an IPv6 header
	// with a few extension headers, plus a TCP header with options (60) or
	// an ICMP error quoting the headers of the packet it answers. A packet
	// whose headers run past it does not decode and gets on_error.
	HeaderBytes = 256
	// WholePacket asks for the whole packet: NFQUEUE's largest copy range,
	// 0xffff minus the attribute header.
	WholePacket = 0xffff - 4
)

// CopyRange is how many bytes of each packet the policy can look at: the
// headers only when no rule reads the transport payload, the headers plus
// the deepest payload window when every payload rule has a depth, and the
// whole packet otherwise (dns_qname, tls_sni and any other L7 field, which
// parse whole messages and reassemble streams across segments, or a payload
// rule without a depth). A match field this method does not know also asks
// for the whole packet, so a field added to Match later is never starved of
// bytes; it only costs copy time until it is taught here.
func (p *Program) CopyRange() uint32 {
	if p.copyRange == 0 {
		return WholePacket // a Program not made by Compile
	}
	return p.copyRange
}

// copyRangeOf computes CopyRange for rules.
func copyRangeOf(rules []*Rule) uint32 {
	need := HeaderBytes
	for _, r := range rules {
		n := r.Match.bytesNeeded()
		if n >= WholePacket {
			return WholePacket
		}
		need = max(need, n)
	}
	return uint32(need)
}

// bytesNeeded is the copy range one rule's match needs.
func (m *Match) bytesNeeded() int {
	// Zero every field bytesNeeded knows; whatever is left is a field it
	// does not.
	rest := *m
	rest.Protos, rest.Family, rest.Src, rest.Dst = nil, 0, AddrMatch{}, AddrMatch{}
	rest.Sport, rest.Dport, rest.Iif, rest.Oif, rest.States = PortMatch{}, PortMatch{}, nil, nil, 0
	rest.TCPFlags, rest.HasICMPType, rest.ICMP4Types, rest.ICMP6Types = nil, false, nil, nil
	rest.Length = nil
	rest.Payload = nil
	// The socket owner comes with the packet's attributes (uid, gid) or
	// from the socket table (cgroup), never from its bytes.
	rest.UID, rest.GID, rest.Cgroup = IDMatch{}, IDMatch{}, nil
	if !reflect.ValueOf(rest).IsZero() {
		return WholePacket // L7 fields, known or not
	}
	if pl := m.Payload; pl != nil {
		if pl.Depth <= 0 {
			return WholePacket
		}
		return min(HeaderBytes+pl.Offset+pl.Depth, WholePacket)
	}
	return HeaderBytes
}
