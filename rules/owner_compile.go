package rules

import (
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

// How the compiler puts a rule's uid and gid into the kernel.
//
// `meta skuid/skgid` and the queue's NFQA_UID/NFQA_GID read the same
// credentials (the socket file's fsuid/fsgid) from the same socket, and
// both give nothing for a packet without a full socket with a file, so a
// rule without an owner matches neither way. They differ in one place:
// nft takes a request socket's listener (skb_to_full_sk), the queue only a
// full socket. On output a request socket sends only SYN-ACKs, so the
// compiler queues an owner rule's SYN-ACKs (ownerSynAck) and decides the
// rest in the kernel. On input early demux hands the handshake's last ACK
// to the request socket, which no header tells apart from any other ACK:
// there the rule is queued (ownerInputReason). nft also maps ids through
// the socket's network namespace's user namespace and the queue through
// the initial one; the two agree when the namespace belongs to the
// initial user namespace, as the host's does (docs/policy.md).

// ownerInputReason is why an owner rule is queued on the input hook.
const ownerInputReason = "uid/gid on input needs userspace (the kernel gives a request socket's packets the listener's owner, the queue none)"

// hasOwnerID reports whether r tests uid or gid.
func hasOwnerID(m *policies.Match) bool { return m.UID.Set || m.GID.Set }

// ownerStmts are the uid and gid tests of m; ok is false when one can never
// hold (a reference to an empty set).
func ownerStmts(m *policies.Match) (out []stmt, ok bool) {
	for _, x := range []struct {
		im  *policies.IDMatch
		key OwnerKey
	}{{&m.UID, OwnerUID}, {&m.GID, OwnerGID}} {
		if !x.im.Set {
			continue
		}
		if x.im.HasPos && len(x.im.Pos) == 0 {
			return nil, false
		}
		s := ownerMatch{key: x.key}
		for _, r := range x.im.Pos {
			s.pos = append(s.pos, IDRange{r.Lo, r.Hi})
		}
		for _, r := range x.im.Neg {
			s.neg = append(s.neg, IDRange{r.Lo, r.Hi})
		}
		if len(s.pos) == 0 && len(s.neg) == 0 {
			// Set with nothing in it: any owner at all.
			s.pos = []IDRange{{0, ^uint32(0)}}
		}
		out = append(out, s)
	}
	return out, true
}

// ownerSynAck is the conjunction, put in front of an owner rule's own on
// output, that queues the TCP SYN-ACKs its other matches take: the only
// packets a request socket sends. Chain order makes the rule's deciding
// conjunctions see no SYN-ACK.
func ownerSynAck(c conj) conj {
	stmts := append([]stmt(nil), c.stmts...)
	stmts = append(stmts, l4proto(packet.ProtoTCP), maskMatch{field: fieldTCPFlags, mask: packet.TCPSyn | packet.TCPAck, want: packet.TCPSyn | packet.TCPAck})
	return conj{stmts: stmts, queue: true}
}

// isSynAck reports whether in is an output TCP SYN-ACK, the packet
// ownerSynAck queues.
func isSynAck(in *policies.Input) bool {
	p := in.Pkt
	return in.Hook == nf.HookOutput && p != nil && p.Proto == packet.ProtoTCP && p.HasL4 &&
		p.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn|packet.TCPAck
}

// withoutOwner is r with its uid and gid left out: the kernel part of an
// owner rule as a SYN-ACK on output meets it.
func withoutOwner(r *policies.Rule) *policies.Rule {
	k := *r
	k.Match.UID, k.Match.GID = policies.IDMatch{}, policies.IDMatch{}
	return &k
}

// ownerMatch is `meta skuid 1000`, `meta skgid != 0`, `meta skuid {
// 1000-1999, 3000 }`: OwnerIDMatch as a compiled statement.
type ownerMatch struct {
	key      OwnerKey
	pos, neg []IDRange
}

// noSets builds expressions without adding sets, for exprs(): the lookup
// names no set, as setMatch's exprs() does.
type noSets struct{}

func (noSets) AddSet(*nftables.Set, []nftables.SetElement) error         { return nil }
func (noSets) SetAddElements(*nftables.Set, []nftables.SetElement) error { return nil }

func (s ownerMatch) exprs() []expr.Any {
	out, err := OwnerIDMatch(noSets{}, nil, s.key, s.pos, s.neg)
	if err != nil {
		// ownerStmts never builds a match OwnerIDMatch refuses.
		panic(fmt.Sprintf("rules: owner match: %v", err))
	}
	return out
}

func (s ownerMatch) setExprs(c *nftables.Conn, t *nftables.Table) ([]expr.Any, error) {
	return OwnerIDMatch(c, t, s.key, s.pos, s.neg)
}

func (s ownerMatch) text() string {
	name := "meta skuid"
	if s.key == OwnerGID {
		name = "meta skgid"
	}
	one := func(r IDRange) string {
		if r.Lo == r.Hi {
			return fmt.Sprint(r.Lo)
		}
		return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
	}
	var parts []string
	switch {
	case len(s.pos) == 1:
		parts = append(parts, name+" "+one(s.pos[0]))
	case len(s.pos) > 1:
		var vs []string
		for _, r := range s.pos {
			vs = append(vs, one(r))
		}
		parts = append(parts, name+" { "+strings.Join(vs, ", ")+" }")
	}
	for _, r := range s.neg {
		parts = append(parts, name+" != "+one(r))
	}
	return strings.Join(parts, " ")
}
