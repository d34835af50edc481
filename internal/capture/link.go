package capture

import "encoding/binary"

// Link-layer header types (https://www.tcpdump.org/linktypes.html). Kept as
// plain numbers: gopacket's layers.LinkType is a uint8 and cannot hold SLL2.
const (
	linkNull     = 0   // BSD loopback: 4-byte address family, host byte order
	linkEthernet = 1   // Ethernet II, possibly with 802.1Q/802.1ad tags
	linkRawDLT   = 12  // DLT_RAW on most platforms
	linkRawBSD   = 14  // DLT_RAW on OpenBSD
	linkRaw      = 101 // LINKTYPE_RAW: the packet starts at the IP header
	linkLoop     = 108 // OpenBSD loopback: address family in network byte order
	linkSLL      = 113 // Linux cooked capture v1 (tcpdump -i any)
	linkIPv4     = 228
	linkIPv6     = 229
	linkSLL2     = 276 // Linux cooked capture v2 (newer tcpdump -i any)
)

// supported reports whether frames of the link type can be turned into IP.
func supported(link uint32) bool {
	switch link {
	case linkNull, linkEthernet, linkRawDLT, linkRawBSD, linkRaw, linkLoop, linkSLL, linkIPv4, linkIPv6, linkSLL2:
		return true
	}
	return false
}

const (
	etherIPv4   = 0x0800
	etherIPv6   = 0x86dd
	etherVLAN   = 0x8100 // 802.1Q
	etherQinQ   = 0x88a8 // 802.1ad service tag
	etherQinQv1 = 0x9100 // pre-standard double tagging
)

// maxVLANTags bounds tag stripping; real frames carry one or two.
const maxVLANTags = 8

// Why a frame carries no IP packet the reader can give, as counted by
// Reader.SkippedBy.
const (
	SkipNotIP        = "not IP (ARP, LLDP, ...)"
	SkipShort        = "too short for its link header"
	SkipVersion      = "IP version nibble disagrees with the link type"
	SkipVLAN         = "more than 8 VLAN tags"
	SkipLinkType     = "unsupported link type"
	SkipBadRecord    = "bad record (captured length exceeds original length)"
	SkipUnknownAF    = "loopback address family not IP"
	skipUnknownCause = "unknown"
)

// ipPayload returns the IP packet inside a frame of the given link type, or
// nil and the reason when the frame does not carry IPv4 or IPv6 (or is too
// short to tell). The result aliases frame.
func ipPayload(link uint32, frame []byte) ([]byte, string) {
	switch link {
	case linkRawDLT, linkRawBSD, linkRaw:
		return versioned(frame, 0)
	case linkIPv4:
		return versioned(frame, 4)
	case linkIPv6:
		return versioned(frame, 6)
	case linkNull, linkLoop:
		if len(frame) < 4 {
			return nil, SkipShort
		}
		// The family is in the capturing host's byte order for Null, in
		// network order for Loop; the values below are unambiguous either
		// way, so both orders are accepted for both.
		af := binary.LittleEndian.Uint32(frame)
		if af > 0xffff {
			af = binary.BigEndian.Uint32(frame)
		}
		switch af {
		case 2: // AF_INET everywhere
			return versioned(frame[4:], 4)
		case 10, 24, 28, 30: // AF_INET6: Linux, NetBSD/OpenBSD, FreeBSD, Darwin
			return versioned(frame[4:], 6)
		}
		return nil, SkipUnknownAF
	case linkEthernet:
		if len(frame) < 14 {
			return nil, SkipShort
		}
		return etherPayload(binary.BigEndian.Uint16(frame[12:14]), frame[14:])
	case linkSLL:
		if len(frame) < 16 {
			return nil, SkipShort
		}
		return etherPayload(binary.BigEndian.Uint16(frame[14:16]), frame[16:])
	case linkSLL2:
		if len(frame) < 20 {
			return nil, SkipShort
		}
		return etherPayload(binary.BigEndian.Uint16(frame[0:2]), frame[20:])
	}
	return nil, SkipLinkType
}

// Direction is which way a frame went through the capturing host, where
// the capture says.
type Direction uint8

const (
	DirUnknown Direction = iota
	// DirIn: the frame was addressed to the host (unicast, broadcast or
	// multicast it received).
	DirIn
	// DirOut: the host sent it.
	DirOut
	// DirOther: the host received a frame addressed to another host (seen
	// in promiscuous mode, or routed through it).
	DirOther
)

func (d Direction) String() string {
	switch d {
	case DirIn:
		return "in"
	case DirOut:
		return "out"
	case DirOther:
		return "other"
	}
	return "unknown"
}

// linkDirection reads the direction a Linux cooked header records in its
// packet type (PACKET_HOST, _BROADCAST, _MULTICAST, _OTHERHOST,
// _OUTGOING); other link types say nothing.
func linkDirection(link uint32, frame []byte) Direction {
	var t uint16
	switch {
	case link == linkSLL && len(frame) >= 2:
		t = binary.BigEndian.Uint16(frame[0:2])
	case link == linkSLL2 && len(frame) >= 11:
		t = uint16(frame[10])
	default:
		return DirUnknown
	}
	switch t {
	case 0, 1, 2:
		return DirIn
	case 3:
		return DirOther
	case 4:
		return DirOut
	}
	return DirUnknown
}

// etherPayload strips VLAN tags and returns b if the Ethernet type says IP.
func etherPayload(etherType uint16, b []byte) ([]byte, string) {
	for range maxVLANTags {
		if etherType != etherVLAN && etherType != etherQinQ && etherType != etherQinQv1 {
			break
		}
		if len(b) < 4 {
			return nil, SkipShort
		}
		etherType = binary.BigEndian.Uint16(b[2:4])
		b = b[4:]
	}
	switch etherType {
	case etherIPv4:
		return versioned(b, 4)
	case etherIPv6:
		return versioned(b, 6)
	case etherVLAN, etherQinQ, etherQinQv1:
		return nil, SkipVLAN
	}
	return nil, SkipNotIP
}

// versioned returns b if its first nibble is the IP version want (4 or 6,
// or either when want is 0). A link header that says IP over a payload that
// is not is a frame the decoder could only reject.
func versioned(b []byte, want byte) ([]byte, string) {
	if len(b) == 0 {
		return nil, SkipShort
	}
	switch v := b[0] >> 4; {
	case want == 0 && (v == 4 || v == 6), want != 0 && v == want:
		return b, ""
	}
	return nil, SkipVersion
}
