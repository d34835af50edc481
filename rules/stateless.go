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

// RuleMalformed is the rule at the top of a stateless table's policy chain
// that sends each protocol's packets to the guards of that protocol.
const RuleMalformed = "malformed"

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

func (cfg Config) stateless() bool { return cfg.Plan.Stateless() }

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

// statelessGuards are the queue rules at the top of a stateless table's
// policy chains (see above).
func (p *Plan) statelessGuards() []planRule {
	comment := commentQueue + guardMalformed
	out := []planRule{{comment: comment, queue: true, match: []stmt{
		nfproto(unix.NFPROTO_IPV4), nibbleNeq{field: fieldIPHdrLen, mask: 0x0f, value: 5},
	}}, p.extHeaderGuard()}
	for _, fam := range []struct {
		nfp uint8
		hdr uint32
	}{{unix.NFPROTO_IPV4, 20}, {unix.NFPROTO_IPV6, 40}} {
		for _, t := range minTransport {
			if t.proto == unix.IPPROTO_ICMP && fam.nfp == unix.NFPROTO_IPV6 || t.proto == unix.IPPROTO_ICMPV6 && fam.nfp == unix.NFPROTO_IPV4 {
				continue
			}
			out = append(out, planRule{comment: comment, queue: true, match: []stmt{
				l4proto(t.proto), nfproto(fam.nfp), metaLenMatch(0, int(fam.hdr+t.len-1)),
			}})
		}
	}
	return append(out,
		planRule{comment: comment, queue: true, match: []stmt{l4proto(unix.IPPROTO_TCP), nibbleRange{field: fieldTCPDoff, mask: 0xf0, lo: 0x00, hi: 0x40, show: "tcp doff 0-4"}}},
		planRule{comment: comment, queue: true, match: []stmt{l4proto(unix.IPPROTO_UDP), rangeMatch{field: fieldUDPLen, lo: []byte{0, 1}, hi: []byte{0, 7}, show: beText}}},
	)
}

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

// nibbleNeq is `FIELD != value` for a field nft reads as a masked byte
// (ip hdrlength).
type nibbleNeq struct {
	field       payloadField
	mask, value uint8
}

func (s nibbleNeq) exprs() []expr.Any {
	return []expr.Any{
		s.field.load(),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{s.mask}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{s.value}},
	}
}

func (s nibbleNeq) text() string { return fmt.Sprintf("%s != %d", s.field.name, s.value) }

// nibbleRange is a range test of a masked byte, as nft writes `tcp doff
// 0-4`: the byte masked, then compared with the masked bounds.
type nibbleRange struct {
	field        payloadField
	mask, lo, hi uint8
	show         string
}

func (s nibbleRange) exprs() []expr.Any {
	return []expr.Any{
		s.field.load(),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{s.mask}, Xor: []byte{0}},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{s.lo}, ToData: []byte{s.hi}},
	}
}

func (s nibbleRange) text() string { return s.show }

// guardHead takes the guards off the top of a stateless table's rules rs
// and returns the rules that stand for them at the top of the main chain:
// one lookup by protocol into a chain of that protocol's guards (adding
// those chains to out), after the guards that test no protocol. A packet
// then meets two or three guards, not all of them.
func (p *Plan) guardHead(rs []planRule, q queueStmt, mainName string, out *chainLayout) ([]rule, []planRule) {
	var head []rule
	byProto := map[uint8]*blockChain{}
	var order []uint8
	for len(rs) > 0 && rs[0].comment == commentQueue+guardMalformed {
		r := rs[0]
		rs = rs[1:]
		pr, ok := r.match[0].(l4proto)
		if !ok {
			head = append(head, r.rule(q))
			continue
		}
		c := byProto[uint8(pr)]
		if c == nil {
			c = &blockChain{name: fmt.Sprintf("%s_%d", mainName, len(out.blocks)+len(order))}
			byProto[uint8(pr)] = c
			order = append(order, uint8(pr))
		}
		c.rules = append(c.rules, r.rule(q))
	}
	if len(order) == 0 {
		return head, rs
	}
	vm := vmapStmt{load: &expr.Meta{Register: 1, Key: expr.MetaKeyL4PROTO}, loadText: "meta l4proto", kt: nftables.TypeInetProto, exact: true, show: beText}
	slices.Sort(order)
	for _, pr := range order {
		c := byProto[pr]
		out.blocks = append(out.blocks, *c)
		vm.elems = append(vm.elems, vmapElem{lo: []byte{pr}, hi: []byte{pr}, chain: c.name})
	}
	return append(head, rule{RuleMalformed, []stmt{vm}}), rs
}

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
