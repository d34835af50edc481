package packet

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// netLayer is the network layer as a gopacket DecodingLayer, written by hand
// rather than using layers.IPv4 and layers.IPv6 because those fall short on
// the hot path:
//   - their errors are built with fmt.Errorf, an allocation per bad packet;
//   - layers.IPv6 decodes hop-by-hop options into freshly allocated structs
//     (every MLD packet carries one), and IPv6ExtensionSkipper neither stops
//     at non-first fragments nor bounds a repeating chain.
//
// It also validates the transport header gopacket's layer is about to read
// (length, data offset, options), so that layer cannot fail and allocate an
// error either. It fills the network fields of its own Packet, which Decode
// copies out: holding the caller's pointer instead would make every Packet
// passed to Decode escape to the heap.
type netLayer struct {
	class gopacket.LayerClass
	p     Packet
	// cut allows the buffer to end before the IP and UDP lengths say
	// (DecodeHeaders).
	cut     bool
	payload []byte
	next    gopacket.LayerType
}

func (n *netLayer) CanDecode() gopacket.LayerClass    { return n.class }
func (n *netLayer) NextLayerType() gopacket.LayerType { return n.next }
func (n *netLayer) LayerPayload() []byte              { return n.payload }

func (n *netLayer) DecodeFromBytes(data []byte, _ gopacket.DecodeFeedback) error {
	n.p, n.payload, n.next = Packet{}, nil, gopacket.LayerTypeZero
	if data[0]>>4 == 4 {
		return n.decode4(data)
	}
	return n.decode6(data)
}

func (n *netLayer) decode4(data []byte) error {
	p := &n.p
	if len(data) < 20 {
		return ErrTruncated
	}
	ihl := int(data[0]&0x0f) * 4
	if ihl < 20 {
		return ErrHeader
	}
	if ihl > len(data) {
		return ErrTruncated
	}
	total := int(binary.BigEndian.Uint16(data[2:4]))
	switch {
	case total == 0:
		// TSO and BIG TCP super-packets (GSO queueing) leave the total
		// length zero; the buffer is the packet.
		total = len(data)
	case total < ihl:
		return ErrHeader
	case total > len(data) && !n.cut:
		return ErrTruncated
	}
	data = data[:min(total, len(data))]
	if !validOptions(data[20:ihl]) {
		return ErrOptions
	}
	p.Family = IPv4
	p.Src = netip.AddrFrom4([4]byte(data[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(data[16:20]))
	p.Proto = data[9]
	p.Length = total
	p.TTL = data[8]
	p.HeaderLen = ihl
	flagsFrag := binary.BigEndian.Uint16(data[6:8])
	const moreFragments, offsetMask = 0x2000, 0x1fff
	p.NonFirstFragment = flagsFrag&offsetMask != 0
	p.Fragment = p.NonFirstFragment || flagsFrag&moreFragments != 0
	return n.transport(data[ihl:])
}

func (n *netLayer) decode6(data []byte) error {
	p := &n.p
	if len(data) < 40 {
		return ErrTruncated
	}
	total := 40 + int(binary.BigEndian.Uint16(data[4:6]))
	switch {
	case total == 40:
		// A zero payload length means a jumbogram (RFC 2675), which is
		// also how BIG TCP GSO packets arrive: the buffer is the packet.
		// A genuinely empty payload is indistinguishable and harmless.
		total = len(data)
	case total > len(data) && !n.cut:
		return ErrTruncated
	}
	data = data[:min(total, len(data))]
	p.Family = IPv6
	p.Src = netip.AddrFrom16([16]byte(data[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(data[24:40]))
	p.Length = total
	p.TTL = data[7]
	proto, off, frag, err := walkIPv6(data)
	if err != nil {
		return err
	}
	p.Proto = proto
	p.HeaderLen = off
	p.Fragment = frag != fragNone
	p.NonFirstFragment = frag == fragNonFirst
	return n.transport(data[off:])
}

// transport checks the transport header of a packet whose network layer is
// decoded, and chooses gopacket's layer for it. Payload defaults to all of
// it, which is what remains for protocols without a decoded header.
func (n *netLayer) transport(l4 []byte) error {
	p := &n.p
	p.Payload = l4
	n.payload = l4
	if p.NonFirstFragment {
		return nil
	}
	switch p.Proto {
	case ProtoTCP:
		if len(l4) < 20 {
			return ErrTruncated
		}
		off := int(l4[12]>>4) * 4
		if off < 20 {
			return ErrHeader
		}
		if off > len(l4) {
			return ErrTruncated
		}
		if !validOptions(l4[20:off]) {
			return ErrOptions
		}
		n.next = layers.LayerTypeTCP
	case ProtoUDP:
		if len(l4) < 8 {
			return ErrTruncated
		}
		// Zero is legal only inside an IPv6 jumbogram and means "the rest
		// of the packet", as gopacket reads it. A first fragment's UDP
		// length counts the whole datagram, and a cut copy ends early, so
		// only whole packets must hold it; gopacket then cuts the payload
		// at what is there.
		if ulen := int(binary.BigEndian.Uint16(l4[4:6])); ulen != 0 {
			if ulen < 8 {
				return ErrHeader
			}
			if ulen > len(l4) && !p.Fragment && !n.cut {
				return ErrTruncated
			}
		}
		n.next = layers.LayerTypeUDP
	case ProtoSCTP:
		if len(l4) < 12 {
			return ErrTruncated
		}
		n.next = layers.LayerTypeSCTP
	case ProtoICMP:
		if p.Family != IPv4 {
			return nil // ICMPv4 inside IPv6 means nothing; leave it opaque
		}
		if len(l4) < 8 {
			return ErrTruncated
		}
		n.next = layers.LayerTypeICMPv4
	case ProtoICMPv6:
		if p.Family != IPv6 {
			return nil
		}
		// RFC 4443: every message has 4 bytes after the checksum.
		if len(l4) < 8 {
			return ErrTruncated
		}
		n.next = layers.LayerTypeICMPv6
	}
	return nil
}

// validOptions reports whether IPv4 or TCP options (the two share a format:
// kind 0 ends the list, kind 1 is a one-byte pad, any other kind is followed
// by a length covering kind and length) parse to the end of b.
func validOptions(b []byte) bool {
	for len(b) > 0 {
		switch b[0] {
		case 0:
			return true
		case 1:
			b = b[1:]
		default:
			if len(b) < 2 {
				return false
			}
			l := int(b[1])
			if l < 2 || l > len(b) {
				return false
			}
			b = b[l:]
		}
	}
	return true
}

// fragKind says whether a packet is a fragment and which one.
type fragKind uint8

const (
	fragNone fragKind = iota
	fragFirst
	fragNonFirst
)

// IPv6 extension headers the walk skips: the ones Linux's ipv6_ext_hdr()
// knows, so Proto agrees with what nftables matches as `meta l4proto`.
const (
	extHopByHop    = 0
	extRouting     = 43
	extFragment    = 44
	extAuth        = 51
	extDestOptions = 60
)

// walkIPv6 walks the extension header chain of the IPv6 packet in data (at
// least 40 bytes) and returns the upper-layer protocol and its offset. For a
// non-first fragment it stops at the fragment header and returns the
// protocol that header names. Each header may appear once, destination
// options twice, hop-by-hop only first: anything else is ErrExtHeaders, which
// also bounds the walk at six headers.
func walkIPv6(data []byte) (proto uint8, off int, frag fragKind, err error) {
	proto, off = data[6], 40
	var seen uint8 // bit per header type; destination options count twice
	var destOpts int
	for {
		var bit uint8
		switch proto {
		case extHopByHop:
			if off != 40 {
				return 0, 0, 0, ErrExtHeaders
			}
			bit = 1 << 0
		case extRouting:
			bit = 1 << 1
		case extFragment:
			bit = 1 << 2
		case extAuth:
			bit = 1 << 3
		case extDestOptions:
			destOpts++
			if destOpts > 2 {
				return 0, 0, 0, ErrExtHeaders
			}
		default:
			return proto, off, frag, nil
		}
		if seen&bit != 0 {
			return 0, 0, 0, ErrExtHeaders
		}
		seen |= bit
		h := data[off:]
		if len(h) < 8 { // every extension header is at least 8 bytes
			return 0, 0, 0, ErrTruncated
		}
		var hlen int
		switch proto {
		case extFragment:
			hlen = 8
			offMore := binary.BigEndian.Uint16(h[2:4])
			switch {
			case offMore&^7 != 0:
				// The rest is the middle of someone else's packet.
				return h[0], off + 8, fragNonFirst, nil
			case offMore&1 != 0:
				frag = fragFirst
			}
			// Offset 0 without more fragments is an atomic fragment
			// (RFC 6946): a whole packet, decoded as one.
		case extAuth:
			hlen = (int(h[1]) + 2) * 4
		default:
			hlen = (int(h[1]) + 1) * 8
		}
		if hlen > len(h) {
			return 0, 0, 0, ErrTruncated
		}
		proto = h[0]
		off += hlen
	}
}
