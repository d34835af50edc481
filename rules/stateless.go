package rules

import (
	"fmt"
	"slices"

	"github.com/google/nftables"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

// A policy whose every rule runs in the kernel and none reads `state` needs
// no connection tracking: nothing is offloaded (userspace decides no flow),
// no rule tests a state bit. Its table then holds no ct expression at all,
// so the kernel never starts conntrack in the namespace for it, and each
// packet meets a base chain of four rules instead of twenty. Conntrack costs
// a lookup per packet and an entry per flow; for a policy that does not use
// it, that is all cost (bench/README.md, "Kernel fast path").
//
// What such a table gives up is conntrack's `invalid`, by which the stateful
// table queues possibly malformed packets (malformed.go). The stateless
// table queues instead, by header tests alone, every packet whose transport
// header may be cut short or impossible: IPv4 with options (the transport
// header's offset then varies), a packet shorter than its protocol's
// header, a TCP data offset under 5, a UDP length under 8. The agent decides
// those with the whole policy, as it decides every queued packet. What
// neither the kernel's header tests nor nft can see (docs/policy.md,
// "Malformed packets"): a TCP data offset or option list that runs past the
// packet, and a UDP length beyond the datagram; the stateless table decides
// those by their headers.

// RuleVerdicts is the base chain rule of a stateless table that sends a
// packet carrying the agent's answer to the chain that carries it out.
const RuleVerdicts = "verdicts"

// RuleFamilyProto is the rule at the top of a stateless table's policy
// chain that sends a packet to the chain of its family and protocol.
const RuleFamilyProto = "family-proto"

// statelessRules reports whether the rules can run without conntrack.
func statelessRules(src []policies.Rule, why []string, owner []bool) bool {
	for i := range src {
		if why[i] != "" || owner[i] || src[i].Match.States != 0 {
			return false
		}
	}
	return true
}

// Stateless reports whether the plan's table needs no conntrack.
func (p *Plan) Stateless() bool { return p != nil && p.stateless }

func (cfg Config) stateless() bool { return !cfg.QueueAll && cfg.Plan.Stateless() }

// verdictsChain is the regular chain of a stateless table's hook h that
// carries out the agent's answers.
func verdictsChain(h nf.Hook) string { return h.String() + "_verdicts" }

// statelessChainRules is the base chain of a stateless table: answers from
// the agent (only queued malformed-looking packets get one) to the verdicts
// chain, then loopback and neighbour discovery, then the policy.
func statelessChainRules(cfg Config, h nf.Hook) []rule {
	rs := []rule{{RuleVerdicts, []stmt{
		maskedCmp{key: keyMeta, mask: cfg.Marks.ActionMask(), value: 0, op: expr.CmpOpNeq},
		jumpStmt(verdictsChain(h)),
	}}}
	rs = append(rs, acceptRules(cfg, h)...)
	return append(rs, rule{RulePolicy, []stmt{jumpStmt(policyChain(h))}})
}

// minTransport is the shortest transport header the decoder accepts, by
// protocol.
var minTransport = []struct {
	proto uint8
	len   uint32
}{{unix.IPPROTO_TCP, 20}, {unix.IPPROTO_UDP, 8}, {unix.IPPROTO_SCTP, 12}, {unix.IPPROTO_ICMP, 8}, {unix.IPPROTO_ICMPV6, 8}}

// fieldIPHdrLen is the IPv4 header length nibble's byte; fieldTCPDoff the
// TCP data offset's; fieldUDPLen the UDP length.
var (
	fieldIPHdrLen = payloadField{expr.PayloadBaseNetworkHeader, 0, 1, "ip hdrlength"}
	fieldTCPDoff  = payloadField{expr.PayloadBaseTransportHeader, 12, 1, "tcp doff"}
	fieldUDPLen   = payloadField{expr.PayloadBaseTransportHeader, 4, 2, "udp length"}
)

// statelessGuarded is Guarded for a stateless table: whether the guards
// queue the packet in describes.
func statelessGuarded(in *policies.Input) bool {
	pk := in.Pkt
	if pk == nil {
		return true
	}
	if pk.Family == packet.IPv4 && pk.HeaderLen != 20 || pk.Family == packet.IPv6 && pk.HeaderLen > 40 {
		return true
	}
	for _, t := range minTransport {
		if t.proto == pk.Proto && pk.Length-pk.HeaderLen < int(t.len) {
			return true
		}
	}
	return false
}

// nibbleRange is a range test of a masked byte, as nft writes `tcp doff
// 0-4`: the byte masked, then compared with the masked bounds.
type nibbleRange struct {
	field        payloadField
	mask, lo, hi uint8
	show         string
}

func (s nibbleRange) exprs() []expr.Any {
	return append(maskedLoad(s.field, s.mask), &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{s.lo}, ToData: []byte{s.hi}})
}

func (s nibbleRange) text() string { return s.show }

// splitLayout lays out a stateless table's hook: one lookup by family and
// protocol into a chain of that pair's guards and of the rules a packet of
// that family and protocol can match, in policy order, ending in the
// default. A packet so meets only its own protocol's guards and rules, and
// the index or blocks below hold fewer rules. Packets of other protocols go
// on through the family guards and the rules that name no protocol.
func (p *Plan) splitLayout(rs []planRule, q queueStmt, mainName string) chainLayout {
	var out chainLayout
	tail := len(rs)
	for tail > 0 && rs[tail-1].comment == commentDefault {
		tail--
	}
	defaults := rs[tail:]
	body := rs[:tail]
	kt, err := nftables.ConcatSetType(nftables.TypeNFProto, nftables.TypeInetProto)
	if err != nil {
		panic(err) // two fixed types: cannot fail
	}
	vm := vmapStmt{load: famProtoLoad(), loadText: "@nh,0,8 . meta l4proto", kt: kt, exact: true, show: showFamProto}
	for _, fam := range []uint8{unix.NFPROTO_IPV4, unix.NFPROTO_IPV6} {
		for _, pr := range keyProtos(body) {
			if pr == unix.IPPROTO_ICMP && fam == unix.NFPROTO_IPV6 || pr == unix.IPPROTO_ICMPV6 && fam == unix.NFPROTO_IPV4 {
				continue
			}
			sub := p.pairGuards(fam, pr)
			for _, r := range body {
				if ruleAdmits(r.match, fam, pr) {
					sub = append(sub, r)
				}
			}
			rules := p.layoutRules(append(sub, defaults...), q, mainName, &out, false)
			name := fmt.Sprintf("%s_%d", mainName, len(out.blocks))
			out.blocks = append(out.blocks, blockChain{name: name, rules: rules})
			for _, b0 := range firstBytes(fam) {
				key := []byte{b0, 0, 0, 0, pr, 0, 0, 0}
				vm.elems = append(vm.elems, vmapElem{lo: key, hi: key, chain: name})
			}
		}
	}
	other := []planRule{p.ipv4OptionsGuard(), p.extHeaderGuard()}
	for _, r := range body {
		if ruleProtos(r.match) == nil {
			other = append(other, r)
		}
	}
	out.main = append([]rule{{RuleFamilyProto, []stmt{vm}}}, p.layoutRules(append(other, defaults...), q, mainName, &out, false)...)
	return out
}

// keyProtos is the protocols a stateless table looks up: those with a
// transport header the guards check, and every one a rule names.
func keyProtos(rs []planRule) []uint8 {
	out := []uint8{unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_SCTP, unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6}
	for _, r := range rs {
		for _, pr := range ruleProtos(r.match) {
			if !slices.Contains(out, pr) {
				out = append(out, pr)
			}
		}
	}
	return out
}

// ruleAdmits reports whether a rule's match can hold for a packet of
// family fam and protocol pr: its family test (meta nfproto) and its
// protocol test (meta l4proto), where it has them.
func ruleAdmits(stmts []stmt, fam, pr uint8) bool {
	for _, s := range stmts {
		if f, ok := s.(nfproto); ok && uint8(f) != fam {
			return false
		}
	}
	ps := ruleProtos(stmts)
	return ps == nil || slices.Contains(ps, pr)
}

// pairGuards are the guards for packets of family fam and protocol pr.
func (p *Plan) pairGuards(fam, pr uint8) []planRule {
	comment := commentQueue + guardMalformed
	// IPv4 packets with options never get here (firstBytes).
	var out []planRule
	hdr := uint32(20)
	if fam == unix.NFPROTO_IPV6 {
		out, hdr = []planRule{p.extHeaderGuard()}, 40
	}
	for _, t := range minTransport {
		if t.proto == pr {
			out = append(out, planRule{comment: comment, queue: true, match: []stmt{metaLenMatch(0, int(hdr+t.len-1))}})
		}
	}
	switch pr {
	case unix.IPPROTO_TCP:
		out = append(out, planRule{comment: comment, queue: true, match: []stmt{l4proto(unix.IPPROTO_TCP), nibbleRange{field: fieldTCPDoff, mask: 0xf0, lo: 0x00, hi: 0x40, show: "tcp doff 0-4"}}})
	case unix.IPPROTO_UDP:
		out = append(out, planRule{comment: comment, queue: true, match: []stmt{l4proto(unix.IPPROTO_UDP), rangeMatch{field: fieldUDPLen, lo: []byte{0, 1}, hi: []byte{0, 7}, show: beText}}})
	}
	return out
}

// ipv4OptionsGuard queues IPv4 packets with options.
func (p *Plan) ipv4OptionsGuard() planRule {
	return planRule{comment: commentQueue + guardMalformed, queue: true, match: []stmt{
		nfproto(unix.NFPROTO_IPV4), maskMatch{field: fieldIPHdrLen, mask: 0x0f, want: 5, neq: true, show: "ip hdrlength != 5"},
	}}
}

// famProtoLoad loads `@nh,0,8 . meta l4proto` for a concatenated lookup,
// into the registers nft uses for it. The network header's first byte is
// the version and, for IPv4, the header length: 0x45 is IPv4 without
// options, so the lookup itself sends IPv4 packets with options past the
// family and protocol chains, to the guard after it, for one load where a
// guard in every chain would cost a rule.
func famProtoLoad() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 1},
		&expr.Meta{Register: 9, Key: expr.MetaKeyL4PROTO},
	}
}

// firstBytes is the network header's first bytes the lookup sends to a
// family's chains: IPv4 without options; IPv6 with any traffic class.
func firstBytes(fam uint8) []byte {
	if fam == unix.NFPROTO_IPV4 {
		return []byte{0x45}
	}
	out := make([]byte, 16)
	for i := range out {
		out[i] = 0x60 | byte(i)
	}
	return out
}

func showFamProto(k []byte) string { return fmt.Sprintf("0x%02x . %d", k[0], k[4]) }

// statelessAnswers is a stateless table's verdicts chain: the answer rules,
// with, before the looped rule, one that accepts an offload request of the
// current generation. It does what the looped rule would (there is no
// conntrack to offload in), but it carries the generation, which is how an
// agent tells its table from another agent's (owner.go).
func statelessAnswers(cfg Config) []rule {
	m := cfg.Marks
	answers := answerRules(cfg)
	current := rule{RuleOffloadSet, []stmt{
		maskedCmp{key: keyMeta, mask: m.ActionMask() | m.IDMask(), value: m.OffloadRequest(cfg.generation())},
		markSet{keep: ^m.Mask},
		verdict(expr.VerdictAccept),
	}}
	out := append([]rule(nil), answers[:len(answers)-1]...)
	return append(out, current, answers[len(answers)-1])
}
