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

// ipPayload returns the IP packet inside a frame of the given link type, or
// nil when the frame does not carry IPv4 or IPv6 (or is too short to tell).
// The result aliases frame.
func ipPayload(link uint32, frame []byte) []byte {
	switch link {
	case linkRawDLT, linkRawBSD, linkRaw:
		return versioned(frame, 0)
	case linkIPv4:
		return versioned(frame, 4)
	case linkIPv6:
		return versioned(frame, 6)
	case linkNull, linkLoop:
		if len(frame) < 4 {
			return nil
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
		return nil
	case linkEthernet:
		if len(frame) < 14 {
			return nil
		}
		return etherPayload(binary.BigEndian.Uint16(frame[12:14]), frame[14:])
	case linkSLL:
		if len(frame) < 16 {
			return nil
		}
		return etherPayload(binary.BigEndian.Uint16(frame[14:16]), frame[16:])
	case linkSLL2:
		if len(frame) < 20 {
			return nil
		}
		return etherPayload(binary.BigEndian.Uint16(frame[0:2]), frame[20:])
	}
	return nil
}

// etherPayload strips VLAN tags and returns b if the Ethernet type says IP.
func etherPayload(etherType uint16, b []byte) []byte {
	for range maxVLANTags {
		if etherType != etherVLAN && etherType != etherQinQ && etherType != etherQinQv1 {
			break
		}
		if len(b) < 4 {
			return nil
		}
		etherType = binary.BigEndian.Uint16(b[2:4])
		b = b[4:]
	}
	switch etherType {
	case etherIPv4:
		return versioned(b, 4)
	case etherIPv6:
		return versioned(b, 6)
	}
	return nil
}

// versioned returns b if its first nibble is the IP version want (4 or 6,
// or either when want is 0). A link header that says IP over a payload that
// is not is a frame the decoder could only reject.
func versioned(b []byte, want byte) []byte {
	if len(b) == 0 {
		return nil
	}
	switch v := b[0] >> 4; {
	case want == 0 && (v == 4 || v == 6), want != 0 && v == want:
		return b
	}
	return nil
}
