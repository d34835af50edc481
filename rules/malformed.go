package rules

import (
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

// A packet the agent cannot decode gets the hook's on_error; compiled
// rules would decide it by whatever header fields the kernel can read. So
// that both paths give it on_error, every policy chain starts by queueing
// the packets that may be malformed (docs/policy.md, "Malformed packets"):
//
//   - those the kernel's conntrack calls invalid: it refuses a truncated
//     transport header or one whose length fields do not fit (TCP, UDP,
//     ICMP, ICMPv6), and an IPv6 extension chain it cannot walk;
//   - IPv6 packets with an extension header: the decoder also refuses
//     chains conntrack walks (a repeated header, hop-by-hop not first),
//     and no nft expression sees a repeat.
//
// The agent decides them with the whole policy, so a well-formed packet
// among them (a stray FIN, a packet with destination options) gets the
// verdict it would get in the kernel. A TCP option list that runs past
// its header is the one malformation neither conntrack nor an nft
// expression sees: the kernel decides it by its headers, the agent gives
// it on_error (docs/policy.md names the difference).

// guardMalformed is the name in the comment of the queue rules that hand
// possibly malformed packets to userspace.
const guardMalformed = "(possibly malformed)"

// ipv6ExtHeaders are the next-header values the decoder (and the kernel's
// ipv6_ext_hdr) walk as extension headers.
var ipv6ExtHeaders = []uint8{0, 43, 44, 51, 60}

// fieldIP6Nexthdr is the IPv6 fixed header's next header.
var fieldIP6Nexthdr = payloadField{expr.PayloadBaseNetworkHeader, 6, 1, "ip6 nexthdr"}

// malformedRules are the queue rules at the top of every policy chain.
func (p *Plan) malformedRules() []planRule {
	if p.stateless {
		// Each family and protocol gets its own guards (splitLayout).
		return nil
	}
	inv := p.marks.InvalidBit()
	return []planRule{
		{comment: commentQueue + guardMalformed, queue: true, match: []stmt{maskedCmp{key: keyMeta, mask: inv, value: inv}}},
		p.extHeaderGuard(),
	}
}

// extHeaderGuard queues IPv6 packets with an extension header.
func (p *Plan) extHeaderGuard() planRule {
	var ext [][2][]byte
	for _, h := range ipv6ExtHeaders {
		ext = append(ext, [2][]byte{{h}, {h}})
	}
	return planRule{comment: commentQueue + guardMalformed, queue: true, match: []stmt{
		nfproto(unix.NFPROTO_IPV6),
		setMatch{load: fieldIP6Nexthdr.load(), loadText: fieldIP6Nexthdr.name, keyType: nftables.TypeInetProto, ranges: ext, show: beText},
	}}
}

// Guarded reports whether the packet in describes is one malformedRules
// queue: the kernel called it invalid, or it is IPv6 with an extension
// header (the decoder walked past the fixed header).
func (p *Plan) Guarded(in *policies.Input) bool {
	if p.stateless {
		return statelessGuarded(in)
	}
	if in.State == nf.StateInvalid {
		return true
	}
	pk := in.Pkt
	return pk != nil && pk.Family == packet.IPv6 && pk.HeaderLen > 40
}
