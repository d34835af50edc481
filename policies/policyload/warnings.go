package policyload

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/fwagent/fwagent/policies"
)

// maxShadowRules bounds the quadratic shadowing check; larger policies are
// generated, not hand-written, and skip it.
const maxShadowRules = 2000

func (l *loader) warnings() {
	for _, name := range l.setNames {
		if s := l.p.Sets[name]; !l.usedSets[s] {
			l.warnf(s.At, "set $%s is never used", name)
		}
	}
	if rules := l.p.Rules; len(rules) <= maxShadowRules {
		for j, rj := range rules {
			for _, ri := range rules[:j] {
				if covers(ri, rj) {
					l.warnf(rj.Position(), "rule %q is shadowed by rule %q (line %d): it never decides a packet", rj.Name, ri.Name, ri.Position().Line)
					break
				}
			}
		}
	}
	// In file order, the policy's own before its set files'.
	slices.SortStableFunc(l.warns, func(a, b warning) int {
		if (a.pos.File == l.file) != (b.pos.File == l.file) {
			if a.pos.File == l.file {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(a.pos.Line, b.pos.Line); c != 0 {
			return c
		}
		return cmp.Compare(a.pos.Col, b.pos.Col)
	})
	for _, w := range l.warns {
		l.p.Warnings = append(l.p.Warnings, w.pos.String()+": warning: "+w.msg)
	}
}

// covers reports whether every packet rule b matches is matched by a too,
// whatever their actions. It answers false when unsure.
func covers(a, b *policies.Rule) bool {
	if b.Hooks&^a.Hooks != 0 || a.Limit != nil {
		return false
	}
	ma, mb := &a.Match, &b.Match
	if !ownerCovers(ma, mb) {
		return false
	}
	if len(ma.Protos) > 0 && (len(mb.Protos) == 0 || !subset(mb.Protos, ma.Protos)) {
		return false
	}
	if ma.Family != 0 && ma.Family != mb.Family {
		return false
	}
	if !addrCovers(&ma.Src, &mb.Src) || !addrCovers(&ma.Dst, &mb.Dst) {
		return false
	}
	if !portCovers(&ma.Sport, &mb.Sport) || !portCovers(&ma.Dport, &mb.Dport) {
		return false
	}
	if len(ma.Iif) > 0 && !slices.Equal(ma.Iif, mb.Iif) || len(ma.Oif) > 0 && !slices.Equal(ma.Oif, mb.Oif) {
		return false
	}
	if ma.States != 0 && (mb.States == 0 || mb.States&^ma.States != 0) {
		return false
	}
	if ma.TCPFlags != nil && (mb.TCPFlags == nil || *ma.TCPFlags != *mb.TCPFlags) {
		return false
	}
	if ma.HasICMPType && (!mb.HasICMPType || !icmpCovers(ma.ICMP4Types, mb.ICMP4Types) || !icmpCovers(ma.ICMP6Types, mb.ICMP6Types)) {
		return false
	}
	if len(ma.Length) > 0 && (len(mb.Length) == 0 || !slices.Equal(ma.Length, mb.Length)) {
		return false
	}
	if len(ma.DNSQName) > 0 && !slices.Equal(ma.DNSQName, mb.DNSQName) {
		return false
	}
	if len(ma.TLSSNI) > 0 && !slices.Equal(ma.TLSSNI, mb.TLSSNI) {
		return false
	}
	if len(ma.HTTPHost) > 0 && !slices.Equal(ma.HTTPHost, mb.HTTPHost) {
		return false
	}
	if ma.Payload != nil && (mb.Payload == nil || string(ma.Payload.Needle) != string(mb.Payload.Needle) ||
		ma.Payload.Offset != mb.Payload.Offset || ma.Payload.Depth != mb.Payload.Depth) {
		return false
	}
	return true
}

func subset[T comparable](small, big []T) bool {
	for _, x := range small {
		if !slices.Contains(big, x) {
			return false
		}
	}
	return true
}

func addrCovers(a, b *policies.AddrMatch) bool {
	if a.Any() {
		return true
	}
	if len(a.Neg) > 0 {
		return a.HasPos == b.HasPos && slices.Equal(a.Pos, b.Pos) && slices.Equal(a.Neg, b.Neg)
	}
	if !b.HasPos {
		return false
	}
	for _, pb := range b.Pos {
		if !slices.ContainsFunc(a.Pos, func(pa netip.Prefix) bool {
			return pa.Bits() <= pb.Bits() && pa.Contains(pb.Addr())
		}) {
			return false
		}
	}
	return true
}

func portCovers(a, b *policies.PortMatch) bool {
	if !a.Set {
		return true
	}
	if len(a.Neg) > 0 {
		return a.HasPos == b.HasPos && slices.Equal(a.Pos, b.Pos) && slices.Equal(a.Neg, b.Neg)
	}
	if !b.Set || !b.HasPos {
		return false
	}
	for _, rb := range b.Pos {
		if !slices.ContainsFunc(a.Pos, func(ra policies.PortRange) bool { return ra.Lo <= rb.Lo && rb.Hi <= ra.Hi }) {
			return false
		}
	}
	return true
}

func icmpCovers(a, b *[4]uint64) bool {
	if b == nil {
		return true
	}
	if a == nil {
		return false
	}
	for i := range b {
		if b[i]&^a[i] != 0 {
			return false
		}
	}
	return true
}
