package conntrack

import (
	"encoding/binary"
	"math/bits"
	"net/netip"

	"github.com/fwagent/fwagent/internal/packet"
)

// flowKey is the canonical bidirectional key of a flow: endpoint a and
// endpoint b, ordered so that both directions of a flow build the same key.
// Addresses are stored as native-endian words (see addrWords): any total order
// serves to canonicalise, and native loads skip a byte swap.
//
//	w[0], w[1]  address a
//	w[2], w[3]  address b
//	w[4]        port a <<48 | port b <<32 | proto <<8 | family
type flowKey struct {
	w [5]uint64
}

// addrWords is the key form of an address. An IPv4 address takes the short
// path (one 4-byte word); the family byte in the key keeps it apart from the
// IPv6 address with the same words.
func addrWords(a netip.Addr) (hi, lo uint64) {
	if a.Is4() {
		b := a.As4()
		return 0, uint64(binary.NativeEndian.Uint32(b[:]))
	}
	b := a.As16()
	return binary.NativeEndian.Uint64(b[:8]), binary.NativeEndian.Uint64(b[8:])
}

// set fills the key with a as endpoint a and b as endpoint b, in that order.
func (k *flowKey) set(fam packet.Family, proto uint8, a netip.Addr, pa uint16, b netip.Addr, pb uint16) {
	k.w[0], k.w[1] = addrWords(a)
	k.w[2], k.w[3] = addrWords(b)
	k.w[4] = uint64(pa)<<48 | uint64(pb)<<32 | uint64(proto)<<8 | uint64(fam)
}

// canonical orders the endpoints (by address words, then port) and
// reports whether it swapped them, i.e. whether the packet came from
// endpoint b.
func (k *flowKey) canonical() (swapped bool) {
	pa, pb := uint16(k.w[4]>>48), uint16(k.w[4]>>32)
	switch {
	case k.w[0] != k.w[2]:
		swapped = k.w[0] > k.w[2]
	case k.w[1] != k.w[3]:
		swapped = k.w[1] > k.w[3]
	default:
		swapped = pa > pb
	}
	if swapped {
		k.w[0], k.w[2] = k.w[2], k.w[0]
		k.w[1], k.w[3] = k.w[3], k.w[1]
		k.w[4] = uint64(pb)<<48 | uint64(pa)<<32 | k.w[4]&0xffffffff
	}
	return swapped
}

// equal compares word by word, inline; == on the struct calls memequal.
func (k *flowKey) equal(o *flowKey) bool {
	return k.w[0] == o.w[0] && k.w[1] == o.w[1] && k.w[2] == o.w[2] && k.w[3] == o.w[3] && k.w[4] == o.w[4]
}

func (k *flowKey) proto() uint8          { return uint8(k.w[4] >> 8) }
func (k *flowKey) family() packet.Family { return packet.Family(k.w[4]) }
func (k *flowKey) ports() (a, b uint16)  { return uint16(k.w[4] >> 48), uint16(k.w[4] >> 32) }
func (k *flowKey) addrs() (a, b netip.Addr) {
	v4 := k.family() == packet.IPv4
	return wordsAddr(v4, k.w[0], k.w[1]), wordsAddr(v4, k.w[2], k.w[3])
}

// wordsAddr inverts addrWords.
func wordsAddr(v4 bool, hi, lo uint64) netip.Addr {
	if v4 {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], uint32(lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.NativeEndian.PutUint64(b[:8], hi)
	binary.NativeEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}

// hashSeed holds the per-table secrets of the key hash. They are random so a
// sender cannot pick tuples that collide in one probe chain.
type hashSeed [6]uint64

// mix is the wyhash folding multiply.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hash returns 64 well-mixed bits: the low 32 pick the slot and tag inside a
// shard, the high bits pick the shard. The three first multiplies are
// independent, so the chain every lookup waits for is two deep.
func (k *flowKey) hash(s *hashSeed) uint64 {
	h1 := mix(k.w[0]^s[0], k.w[1]^s[1])
	h2 := mix(k.w[2]^s[2], k.w[3]^s[3])
	h3 := mix(k.w[4]^s[4], s[5])
	return mix(h1^h3, h2^0x9e3779b97f4a7c15)
}

// kind is how a packet is tracked.
type kind uint8

const (
	// kindUnclassified: classify has not run yet (a zero Lookahead).
	kindUnclassified kind = iota
	// kindInvalid: nothing to track (unknown family, non-first fragment,
	// a transport protocol whose header did not decode). StateInvalid.
	kindInvalid
	// kindUntracked: an ICMP message that is neither an echo nor an error
	// (neighbour discovery, router advertisements, MLD, timestamps...). It
	// belongs to no flow and is reported as StateNew every time.
	kindUntracked
	// kindRelated: an ICMP error; related to the flow it quotes, if tracked.
	kindRelated
	// kindFlow: a packet of a flow (TCP, UDP, ICMP echo, other protocols).
	kindFlow
)

// ICMP message types (RFC 792, RFC 4443).
const (
	icmp4EchoReply    = 0
	icmp4Unreachable  = 3
	icmp4SourceQuench = 4
	icmp4Redirect     = 5
	icmp4EchoRequest  = 8
	icmp4TimeExceeded = 11
	icmp4ParamProblem = 12

	icmp6Unreachable  = 1
	icmp6TooBig       = 2
	icmp6TimeExceeded = 3
	icmp6ParamProblem = 4
	icmp6EchoRequest  = 128
	icmp6EchoReply    = 129
)

// echoType says whether an ICMP type is an echo request or reply for proto.
func echoType(proto, typ uint8) (echo, reply bool) {
	if proto == packet.ProtoICMP {
		return typ == icmp4EchoRequest || typ == icmp4EchoReply, typ == icmp4EchoReply
	}
	return typ == icmp6EchoRequest || typ == icmp6EchoReply, typ == icmp6EchoReply
}

func errorType(proto, typ uint8) bool {
	if proto == packet.ProtoICMP {
		switch typ {
		case icmp4Unreachable, icmp4SourceQuench, icmp4Redirect, icmp4TimeExceeded, icmp4ParamProblem:
			return true
		}
		return false
	}
	return typ >= icmp6Unreachable && typ <= icmp6ParamProblem
}

// classify builds the key of p's flow and reports from which endpoint p came
// (fromB). ICMP echo keys are ordered by role, not by address: endpoint a is
// the requester, so a request from B to A is a different flow from A's
// request to B even with the same identifier, as in the kernel.
func classify(p *packet.Packet, k *flowKey) (kd kind, fromB bool) {
	if p.Family != packet.IPv4 && p.Family != packet.IPv6 || p.NonFirstFragment {
		return kindInvalid, false
	}
	switch p.Proto {
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoSCTP:
		if !p.HasL4 {
			return kindInvalid, false
		}
		k.set(p.Family, p.Proto, p.Src, p.SrcPort, p.Dst, p.DstPort)
		return kindFlow, k.canonical()
	case packet.ProtoICMP, packet.ProtoICMPv6:
		if !p.HasL4 {
			return kindInvalid, false
		}
		if echo, reply := echoType(p.Proto, p.ICMPType); echo {
			if reply {
				k.set(p.Family, p.Proto, p.Dst, p.ICMPID, p.Src, p.ICMPID)
			} else {
				k.set(p.Family, p.Proto, p.Src, p.ICMPID, p.Dst, p.ICMPID)
			}
			return kindFlow, reply
		}
		if errorType(p.Proto, p.ICMPType) {
			return kindRelated, false
		}
		return kindUntracked, false
	}
	// Other protocols: keyed by addresses and protocol alone.
	k.set(p.Family, p.Proto, p.Src, 0, p.Dst, 0)
	return kindFlow, k.canonical()
}

// innerKey builds the key of the flow quoted by an ICMP error. For a quoted
// echo it assumes the quote is the request (requester = quoted source);
// relatedTo tries the other role too.
func innerKey(p *packet.Packet, k *flowKey) bool {
	q := &p.Inner
	if !q.Valid {
		return false
	}
	switch q.Proto {
	case packet.ProtoICMP, packet.ProtoICMPv6:
		k.set(p.Family, q.Proto, q.Src, q.ICMPID, q.Dst, q.ICMPID)
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoSCTP:
		k.set(p.Family, q.Proto, q.Src, q.SrcPort, q.Dst, q.DstPort)
		k.canonical()
	default:
		k.set(p.Family, q.Proto, q.Src, 0, q.Dst, 0)
		k.canonical()
	}
	return true
}
