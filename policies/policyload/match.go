package policyload

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

var matchKeys = []string{"proto", "family", "src", "dst", "sport", "dport", "iif", "oif", "state",
	"tcp_flags", "icmp_type", "length", "dns_qname", "tls_sni", "http_host", "payload", "uid", "gid", "cgroup"}

// errSkip marks a rule that refers to a set which is itself broken: the
// set's error is reported, the rule's would only repeat it.
var errSkip = &policies.Error{Msg: "skip"}

const (
	fam4 uint8 = 1 << iota
	fam6
	famBoth = fam4 | fam6
)

func famOf(a netip.Addr) uint8 {
	if a.Is4() {
		return fam4
	}
	return fam6
}

func famName(f uint8) string {
	switch f {
	case fam4:
		return "IPv4"
	case fam6:
		return "IPv6"
	}
	return "IPv4 and IPv6"
}

func (l *loader) match(r *policies.Rule, n *yaml.Node, hookNode *yaml.Node) *policies.Error {
	// Each bad field is reported; family and proto, which others depend
	// on, stop the match at their first error.
	fields, errs, err := l.itemFields(n, "match", matchKeys)
	if err != nil {
		return err
	}
	m := &r.Match
	val := map[string]*yaml.Node{}
	for _, f := range fields {
		val[f.name] = f.val
	}
	// First the fields others depend on.
	fam, err := l.matchFamily(m, val["family"])
	if err != nil {
		return l.firstOf(append(errs, err))
	}
	if v, ok := val["proto"]; ok {
		if err := l.protos(m, v, fam); err != nil {
			return l.firstOf(append(errs, err))
		}
	}
	for _, f := range fields {
		if err := l.matchField(r, f, fam, hookNode); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return l.firstOf(errs)
	}
	return l.matchAcross(m, val)
}

// matchFamily reads a match's family (v nil: none named, both families).
func (l *loader) matchFamily(m *policies.Match, v *yaml.Node) (uint8, *policies.Error) {
	if v == nil {
		return famBoth, nil
	}
	s, err := l.scalar(v, "family")
	if err != nil {
		return famBoth, err
	}
	switch s {
	case "ipv4":
		m.Family = packet.IPv4
		return fam4, nil
	case "ipv6":
		m.Family = packet.IPv6
		return fam6, nil
	}
	return famBoth, l.errorf(v, "family must be ipv4 or ipv6, got %q%s", s, quotedDidYouMean(s, []string{"ipv4", "ipv6"}))
}

// matchField reads one field of r's match other than family and proto,
// which fam and r.Match.Protos already hold.
func (l *loader) matchField(r *policies.Rule, f field, fam uint8, hookNode *yaml.Node) *policies.Error {
	m := &r.Match
	var err *policies.Error
	switch f.name {
	case "src":
		err = l.addrMatch(&m.Src, f.val, "src", fam)
	case "dst":
		err = l.addrMatch(&m.Dst, f.val, "dst", fam)
	case "sport":
		err = l.portMatch(&m.Sport, f.val, "sport", m.Protos)
	case "dport":
		err = l.portMatch(&m.Dport, f.val, "dport", m.Protos)
	case "iif":
		m.Iif, err = l.ifaces(f.val, "iif")
		if err == nil {
			err = l.narrowHooks(r, f.val, hookNode, "iif", 1<<nf.HookInput|1<<nf.HookForward)
		}
	case "oif":
		m.Oif, err = l.ifaces(f.val, "oif")
		if err == nil {
			err = l.narrowHooks(r, f.val, hookNode, "oif", 1<<nf.HookForward|1<<nf.HookOutput)
		}
	case "state":
		err = l.states(m, f.val)
	case "tcp_flags":
		err = l.tcpFlags(m, f.val)
	case "icmp_type":
		err = l.icmpTypes(m, f.val, fam)
	case "length":
		m.Length, err = l.lengths(f.val)
	case "dns_qname", "tls_sni", "http_host":
		err = l.nameField(m, f)
	case "payload":
		m.Payload, err = l.payload(f.val)
	case "uid", "gid", "cgroup":
		err = l.ownerField(r, f, hookNode)
	}
	return err
}

// matchAcross rejects a match whose fields, each fine alone, cannot go
// together: ports without a protocol that has them, or addresses and
// protocols of families that never meet. val holds each field's node.
func (l *loader) matchAcross(m *policies.Match, val map[string]*yaml.Node) *policies.Error {
	for _, x := range []struct {
		pm   *policies.PortMatch
		name string
	}{{&m.Sport, "sport"}, {&m.Dport, "dport"}} {
		if !x.pm.Set {
			continue
		}
		for _, p := range m.Protos {
			if !policies.HasPorts(p) {
				return l.errorf(val[x.name], "%s needs a protocol with ports (tcp, udp, sctp), but the rule has proto %s", x.name, protoName(p))
			}
		}
	}
	// Source and destination of different families never meet.
	sf, df := prefixFams(m.Src.Pos), prefixFams(m.Dst.Pos)
	if sf != 0 && df != 0 && sf&df == 0 {
		return l.errorf(val["dst"], "src is %s and dst is %s: the rule can never match", famName(sf), famName(df))
	}
	pf := protoFams(m.Protos)
	for _, x := range []struct {
		f    uint8
		name string
	}{{sf, "src"}, {df, "dst"}} {
		if x.f != 0 && x.f&pf == 0 {
			return l.errorf(val[x.name], "%s is %s but proto %s is %s only: the rule can never match", x.name, famName(x.f), protoName(m.Protos[0]), famName(pf))
		}
	}
	return nil
}

func prefixFams(ps []netip.Prefix) uint8 {
	var f uint8
	for _, p := range ps {
		f |= famOf(p.Addr())
	}
	return f
}

// protoFams is the families a list of protocols allows: ICMP is IPv4 only,
// ICMPv6 IPv6 only.
func protoFams(ps []uint8) uint8 {
	if len(ps) == 0 {
		return famBoth
	}
	var f uint8
	for _, p := range ps {
		switch p {
		case packet.ProtoICMP:
			f |= fam4
		case packet.ProtoICMPv6:
			f |= fam6
		default:
			f |= famBoth
		}
	}
	return f
}

func (l *loader) protos(m *policies.Match, n *yaml.Node, fam uint8) *policies.Error {
	items, err := l.list(n, "proto")
	if err != nil {
		return err
	}
	for _, it := range items {
		s, err := l.scalar(it, "proto")
		if err != nil {
			return err
		}
		p, ok := protoNames[strings.ToLower(s)]
		if !ok {
			v, perr := strconv.ParseUint(s, 10, 8)
			if perr != nil {
				if s == "ipv6-icmp" || s == "icmp6" {
					p = packet.ProtoICMPv6
				} else {
					return l.errorf(it, "unknown proto %q%s", s, quotedDidYouMean(s, keys(protoNames)))
				}
			} else {
				p = uint8(v)
			}
		}
		for _, q := range m.Protos {
			if q == p {
				return l.errorf(it, "proto %s listed twice", s)
			}
		}
		if pf := protoFams([]uint8{p}); pf&fam == 0 {
			return l.errorf(it, "proto %s is %s only but the rule's family is %s: the rule can never match", s, famName(pf), famName(fam))
		}
		m.Protos = append(m.Protos, p)
	}
	return nil
}

// setRef looks up "$name" for a field that needs kind.
func (l *loader) setRef(n *yaml.Node, ref, field string, kind policies.SetKind) (*policies.Set, *policies.Error) {
	s, err := l.lookupSet(n, ref)
	if err != nil {
		return nil, err
	}
	if s.Kind != kind && s.Kind != policies.SetEmpty {
		return nil, l.errorf(n, "set %s is a%s %s set; %s needs a%s %s set", ref, article(s.Kind), s.Kind, field, article(kind), kind)
	}
	return s, nil
}

// lookupSet finds the set "$name" names and marks it used; a set that is
// itself broken skips the rule (its error is reported once, at the set).
func (l *loader) lookupSet(n *yaml.Node, ref string) (*policies.Set, *policies.Error) {
	name := strings.TrimPrefix(ref, "$")
	s, ok := l.p.Sets[name]
	if !ok {
		if l.brokenSets[name] {
			return nil, errSkip
		}
		return nil, l.errorf(n, "unknown set $%s%s", name, didYouMean(name, l.setNames, "$"))
	}
	l.usedSets[s] = true
	return s, nil
}

func article(k policies.SetKind) string {
	if k == policies.SetAddr {
		return "n"
	}
	return ""
}

// negated splits a leading '!' off an entry.
func negated(s string) (string, bool) {
	if strings.HasPrefix(s, "!") {
		return strings.TrimSpace(s[1:]), true
	}
	return s, false
}

func (l *loader) entryText(it *yaml.Node, field string) (string, *policies.Error) {
	if it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
		return "", l.errorf(it, "%s entries must be values, got %s", field, describe(it))
	}
	s := strings.TrimSpace(scalarText(it))
	if s == "" {
		return "", l.errorf(it, "empty %s entry", field)
	}
	return s, nil
}

// nameField reads one of the L7 name fields (dns_qname, tls_sni,
// http_host). One packet carries at most one of a DNS query, a TLS or QUIC
// ClientHello and an HTTP request head, so a rule naming two can never
// match.
func (l *loader) nameField(m *policies.Match, f field) *policies.Error {
	var dst *[]string
	var protos []uint8
	// httpClash: http_host with dns_qname or tls_sni; pairClash: dns_qname
	// with tls_sni. Either makes the rule unmatchable.
	var httpClash, pairClash bool
	switch f.name {
	case "dns_qname":
		dst, protos = &m.DNSQName, []uint8{packet.ProtoUDP, packet.ProtoTCP}
		httpClash, pairClash = len(m.HTTPHost) > 0, len(m.TLSSNI) > 0
	case "tls_sni":
		// TLS over TCP, QUIC Initial packets over UDP.
		dst, protos = &m.TLSSNI, []uint8{packet.ProtoTCP, packet.ProtoUDP}
		httpClash, pairClash = len(m.HTTPHost) > 0, len(m.DNSQName) > 0
	case "http_host":
		dst, protos = &m.HTTPHost, []uint8{packet.ProtoTCP}
		httpClash = len(m.TLSSNI) > 0 || len(m.DNSQName) > 0
	}
	var err *policies.Error
	if *dst, err = l.namePatterns(f.val, f.name); err != nil {
		return err
	}
	if httpClash {
		return l.errorf(f.val, "http_host cannot match the same packet as dns_qname or tls_sni: the rule can never match")
	}
	if pairClash {
		return l.errorf(f.val, "dns_qname and tls_sni cannot both match one packet: the rule can never match")
	}
	return l.needProtos(m, f.val, f.name, protos)
}

// eachEntry calls each with every entry of the list field n and its
// trimmed text: the walk every list-valued match field shares, so that
// their errors for a malformed list or entry read alike.
func (l *loader) eachEntry(n *yaml.Node, field string, each func(it *yaml.Node, s string) *policies.Error) *policies.Error {
	items, err := l.list(n, field)
	if err != nil {
		return err
	}
	for _, it := range items {
		s, err := l.entryText(it, field)
		if err != nil {
			return err
		}
		if err := each(it, s); err != nil {
			return err
		}
	}
	return nil
}

// signedEntries reads a list field whose entries may be negated with '!'
// (src, dst, sport, dport, uid, gid): values turns an entry's text, without
// its '!', into values, which go to the positive or the negative side.
func signedEntries[T any](l *loader, n *yaml.Node, field string, pos, neg *[]T, hasPos *bool, values func(it *yaml.Node, text string, neg bool) ([]T, *policies.Error)) *policies.Error {
	return l.eachEntry(n, field, func(it *yaml.Node, s string) *policies.Error {
		text, isNeg := negated(s)
		vs, err := values(it, text, isNeg)
		if err != nil {
			return err
		}
		if isNeg {
			*neg = append(*neg, vs...)
		} else {
			*hasPos = true
			*pos = append(*pos, vs...)
		}
		return nil
	})
}

// unsignedEntries reads a list field that takes no negation; each gets
// every entry's text.
func (l *loader) unsignedEntries(n *yaml.Node, field string, each func(it *yaml.Node, s string) *policies.Error) *policies.Error {
	return l.eachEntry(n, field, func(it *yaml.Node, s string) *policies.Error {
		if strings.HasPrefix(s, "!") {
			return l.errorf(it, "%s does not support negation", field)
		}
		return each(it, s)
	})
}

// warnEmptySet warns of a rule that names an empty set where only a
// member could match.
func (l *loader) warnEmptySet(it *yaml.Node, field, ref string) {
	l.warnf(l.pos(it), "%s %s: set %s is empty, so the rule never matches", field, ref, ref)
}

func (l *loader) addrMatch(am *policies.AddrMatch, n *yaml.Node, field string, fam uint8) *policies.Error {
	return signedEntries(l, n, field, &am.Pos, &am.Neg, &am.HasPos, func(it *yaml.Node, text string, neg bool) ([]netip.Prefix, *policies.Error) {
		if strings.HasPrefix(text, "$") {
			set, err := l.setRef(it, text, field, policies.SetAddr)
			if err != nil {
				return nil, err
			}
			var ps []netip.Prefix
			for _, p := range set.Prefixes {
				if famOf(p.Addr())&fam != 0 {
					ps = append(ps, p)
				}
			}
			if len(set.Prefixes) > 0 && len(ps) == 0 {
				return nil, l.errorf(it, "set %s has no %s entries, and the rule's family is %s", text, famName(fam), famName(fam))
			}
			if len(set.Prefixes) == 0 && !neg {
				l.warnEmptySet(it, field, text)
			}
			return ps, nil
		}
		p, perr, ok := parseAddrOrPrefix(text)
		if !ok {
			return nil, l.errorf(it, "%s must be an address, CIDR or $set, got %q", field, text)
		}
		if perr != "" {
			return nil, l.errorf(it, "%s", perr)
		}
		if famOf(p.Addr())&fam == 0 {
			return nil, l.errorf(it, "%s %s is %s but the rule's family is %s: the rule can never match", field, text, famName(famOf(p.Addr())), famName(fam))
		}
		return []netip.Prefix{p}, nil
	})
}

func (l *loader) portMatch(pm *policies.PortMatch, n *yaml.Node, field string, protos []uint8) *policies.Error {
	for _, p := range protos {
		if !policies.HasPorts(p) {
			return l.errorf(n, "%s needs a protocol with ports (tcp, udp, sctp), but the rule has proto %s", field, protoName(p))
		}
	}
	return signedEntries(l, n, field, &pm.Pos, &pm.Neg, &pm.HasPos, func(it *yaml.Node, text string, neg bool) ([]policies.PortRange, *policies.Error) {
		// Set only matters once the whole list has read well: an error
		// drops the rule.
		pm.Set = true
		if strings.HasPrefix(text, "$") {
			set, err := l.setRef(it, text, field, policies.SetPort)
			if err != nil {
				return nil, err
			}
			if len(set.Ports) == 0 && !neg {
				l.warnEmptySet(it, field, text)
			}
			return set.Ports, nil
		}
		if !isPortText(text) {
			return nil, l.errorf(it, "%s must be a port, a range a-b or a $set, got %q", field, text)
		}
		r, e := parsePortRange(text)
		if e != "" {
			return nil, l.errorf(it, "%s", e)
		}
		return []policies.PortRange{r}, nil
	})
}

func (l *loader) ifaces(n *yaml.Node, field string) ([]string, *policies.Error) {
	var out []string
	err := l.unsignedEntries(n, field, func(it *yaml.Node, s string) *policies.Error {
		if strings.HasPrefix(s, "$") {
			return l.errorf(it, "%s takes interface names, not sets", field)
		}
		if len(strings.ReplaceAll(s, "*", "")) > 15 {
			return l.errorf(it, "interface name %q is longer than 15 characters", s)
		}
		for _, c := range s {
			if c <= ' ' || c == '/' || c > '~' {
				return l.errorf(it, "interface name %q contains %q", s, c)
			}
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (l *loader) narrowHooks(r *policies.Rule, n, hookNode *yaml.Node, field string, allowed uint8) *policies.Error {
	if r.Hooks&allowed == 0 {
		return l.errorf(n, "%s never matches on hook %s: the rule can never match", field, hookNames(r.Hooks))
	}
	if hookNode != nil && r.Hooks&^allowed != 0 {
		l.warnf(l.pos(n), "rule %q: %s never matches on hook %s, so the rule applies to %s only", r.Name, field, hookNames(r.Hooks&^allowed), hookNames(r.Hooks&allowed))
	}
	r.Hooks &= allowed
	return nil
}

func hookNames(mask uint8) string {
	var out []string
	for h := nf.HookInput; h < nf.NumHooks; h++ {
		if mask&(1<<h) != 0 {
			out = append(out, h.String())
		}
	}
	return strings.Join(out, ", ")
}

func (l *loader) states(m *policies.Match, n *yaml.Node) *policies.Error {
	items, err := l.list(n, "state")
	if err != nil {
		return err
	}
	for _, it := range items {
		st, s, err := l.stateName(it, ": use new, established, related or invalid")
		if err != nil {
			return err
		}
		if m.States&(1<<st) != 0 {
			return l.errorf(it, "state %s listed twice", s)
		}
		m.States |= 1 << st
	}
	return nil
}

// stateName reads one flow state name, returning the state and the text;
// use follows `unknown state "x"` in the error.
func (l *loader) stateName(n *yaml.Node, use string) (nf.State, string, *policies.Error) {
	s, err := l.scalar(n, "state")
	if err != nil {
		return 0, "", err
	}
	st, ok := stateNames[s]
	if !ok {
		return 0, s, l.errorf(n, "unknown state %q%s%s", s, use, quotedDidYouMean(s, keys(stateNames)))
	}
	return st, s, nil
}

// parseTCPFlags reads pf-style "S/SA": of the flags after '/', exactly those
// before it are set. Without '/', the mask is every flag.
func parseTCPFlags(s string) (policies.TCPFlags, string) {
	want, mask, hasMask := strings.Cut(strings.ToUpper(strings.TrimSpace(s)), "/")
	letters := func(t string) (uint8, string) {
		var v uint8
		for _, c := range t {
			i := strings.IndexRune(tcpFlagLetters, c)
			if i < 0 {
				return 0, fmt.Sprintf("unknown TCP flag %q in %q: use F S R P A U E C", c, s)
			}
			v |= 1 << i
		}
		return v, ""
	}
	w, e := letters(want)
	if e != "" {
		return policies.TCPFlags{}, e
	}
	mk := uint8(0xff)
	if hasMask {
		if mk, e = letters(mask); e != "" {
			return policies.TCPFlags{}, e
		}
		if mk == 0 {
			return policies.TCPFlags{}, fmt.Sprintf("tcp_flags %q has an empty mask after '/'", s)
		}
	} else if w == 0 {
		return policies.TCPFlags{}, "tcp_flags is empty"
	}
	if w&^mk != 0 {
		return policies.TCPFlags{}, fmt.Sprintf("tcp_flags %q requires flags outside its mask: the rule can never match", s)
	}
	return policies.TCPFlags{Want: w, Mask: mk}, ""
}

func (l *loader) tcpFlags(m *policies.Match, n *yaml.Node) *policies.Error {
	s, err := l.scalar(n, "tcp_flags")
	if err != nil {
		return err
	}
	f, e := parseTCPFlags(s)
	if e != "" {
		return l.errorf(n, "%s", e)
	}
	if err := l.needProtos(m, n, "tcp_flags", []uint8{packet.ProtoTCP}); err != nil {
		return err
	}
	m.TCPFlags = &f
	return nil
}

// needProtos makes sure the rule's protocols are among allowed, and limits
// a rule without proto to them. Protocols implied by an earlier field (not
// written by the user) are narrowed rather than refused.
func (l *loader) needProtos(m *policies.Match, n *yaml.Node, field string, allowed []uint8) *policies.Error {
	if len(m.Protos) == 0 {
		m.Protos = append([]uint8(nil), allowed...)
		l.impliedProtos[m] = true
		return nil
	}
	if l.impliedProtos[m] {
		kept := m.Protos[:0]
		for _, p := range m.Protos {
			if slices.Contains(allowed, p) {
				kept = append(kept, p)
			}
		}
		m.Protos = kept
		if len(kept) == 0 {
			return l.errorf(n, "%s cannot match the protocols the rule's other fields imply: the rule can never match", field)
		}
		return nil
	}
	for _, p := range m.Protos {
		ok := false
		for _, a := range allowed {
			ok = ok || a == p
		}
		if !ok {
			names := make([]string, len(allowed))
			for i, a := range allowed {
				names[i] = protoName(a)
			}
			return l.errorf(n, "%s needs proto %s, but the rule has proto %s: the rule can never match", field, strings.Join(names, " or "), protoName(p))
		}
	}
	return nil
}

func (l *loader) icmpTypes(m *policies.Match, n *yaml.Node, fam uint8) *policies.Error {
	v4ok, v6ok, err := l.icmpVersions(m, n, fam)
	if err != nil {
		return err
	}
	items, err := l.list(n, "icmp_type")
	if err != nil {
		return err
	}
	var t4, t6 [4]uint64
	any4, any6 := false, false
	for _, it := range items {
		s, err := l.scalar(it, "icmp_type")
		if err != nil {
			return err
		}
		if v, perr := strconv.ParseUint(s, 10, 8); perr == nil {
			if v4ok {
				t4[v/64] |= 1 << (v % 64)
				any4 = true
			}
			if v6ok {
				t6[v/64] |= 1 << (v % 64)
				any6 = true
			}
			continue
		}
		found := false
		if v, ok := icmp4Names[s]; ok && v4ok {
			t4[v/64] |= 1 << (v % 64)
			any4, found = true, true
		}
		if v, ok := icmp6Names[s]; ok && v6ok {
			t6[v/64] |= 1 << (v % 64)
			any6, found = true, true
		}
		if !found {
			return l.unknownICMPType(it, s, v4ok, v6ok)
		}
	}
	m.HasICMPType = true
	if any4 {
		m.ICMP4Types = &t4
	}
	if any6 {
		m.ICMP6Types = &t6
	}
	return l.icmpProtos(m, n, any4, any6)
}

// icmpVersions reports which ICMP versions an icmp_type match can apply
// to: those of the family, narrowed to the rule's protos if it has any
// (which must all be ICMP).
func (l *loader) icmpVersions(m *policies.Match, n *yaml.Node, fam uint8) (v4ok, v6ok bool, err *policies.Error) {
	v4ok, v6ok = fam&fam4 != 0, fam&fam6 != 0
	if len(m.Protos) == 0 {
		return v4ok, v6ok, nil
	}
	has4, has6 := false, false
	for _, p := range m.Protos {
		switch p {
		case packet.ProtoICMP:
			has4 = true
		case packet.ProtoICMPv6:
			has6 = true
		default:
			return false, false, l.errorf(n, "icmp_type needs proto icmp or icmpv6, but the rule has proto %s: the rule can never match", protoName(p))
		}
	}
	return v4ok && has4, v6ok && has6, nil
}

// unknownICMPType is the error for type name s, suggesting names of the
// ICMP versions the match can apply to.
func (l *loader) unknownICMPType(it *yaml.Node, s string, v4ok, v6ok bool) *policies.Error {
	var cands []string
	what := "ICMP or ICMPv6"
	switch {
	case v4ok && !v6ok:
		cands, what = keys(icmp4Names), "ICMP"
	case v6ok && !v4ok:
		cands, what = keys(icmp6Names), "ICMPv6"
	default:
		cands = icmpNames()
	}
	return l.errorf(it, "unknown %s type %q%s", what, s, quotedDidYouMean(s, cands))
}

// icmpProtos sets the rule's protos from the ICMP versions its types apply
// to (any4, any6): implied when it named none, else narrowed to those.
func (l *loader) icmpProtos(m *policies.Match, n *yaml.Node, any4, any6 bool) *policies.Error {
	if len(m.Protos) == 0 {
		if any4 {
			m.Protos = append(m.Protos, packet.ProtoICMP)
		}
		if any6 {
			m.Protos = append(m.Protos, packet.ProtoICMPv6)
		}
		l.impliedProtos[m] = true
	} else {
		// Keep only the ICMP versions some listed type applies to.
		kept := m.Protos[:0]
		for _, p := range m.Protos {
			if p == packet.ProtoICMP && any4 || p == packet.ProtoICMPv6 && any6 {
				kept = append(kept, p)
			}
		}
		m.Protos = kept
		if len(kept) == 0 {
			return l.errorf(n, "no listed icmp_type applies to the rule's protocols: the rule can never match")
		}
	}
	return nil
}

func (l *loader) lengths(n *yaml.Node) ([]policies.LengthRange, *policies.Error) {
	var out []policies.LengthRange
	err := l.eachEntry(n, "length", func(it *yaml.Node, s string) *policies.Error {
		if !isPortText(s) {
			return l.errorf(it, "length must be a number or a range a-b, got %q", s)
		}
		lo, hi, isRange := strings.Cut(s, "-")
		a, e1 := strconv.Atoi(lo)
		b := a
		var e2 error
		if isRange {
			b, e2 = strconv.Atoi(hi)
		}
		if e1 != nil || e2 != nil || a > 65535 || b > 65535 {
			return l.errorf(it, "length %q out of range 0-65535", s)
		}
		if a > b {
			return l.errorf(it, "length range %q: start is above end", s)
		}
		if b < 20 {
			return l.errorf(it, "length %q is below the smallest IP header (20): the rule can never match", s)
		}
		out = append(out, policies.LengthRange{Lo: a, Hi: b})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (l *loader) namePatterns(n *yaml.Node, field string) ([]string, *policies.Error) {
	var out []string
	err := l.unsignedEntries(n, field, func(it *yaml.Node, s string) *policies.Error {
		if strings.HasPrefix(s, "$") {
			set, err := l.setRef(it, s, field, policies.SetName)
			if err != nil {
				return err
			}
			if len(set.Names) == 0 {
				l.warnEmptySet(it, field, s)
			}
			out = append(out, set.Names...)
			return nil
		}
		name, e := parseNamePattern(s)
		if e != "" {
			return l.errorf(it, "%s: %s", field, strings.Replace(e, "is not an address, CIDR, port or name pattern", "is not a name pattern", 1))
		}
		out = append(out, name)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (l *loader) payload(n *yaml.Node) (*policies.Payload, *policies.Error) {
	fields, err := l.mapping(n, "payload", payloadKeys)
	if err != nil {
		return nil, err
	}
	p := &policies.Payload{}
	var needleNode, depthNode *yaml.Node
	for _, f := range fields {
		switch f.name {
		case "contains", "hex":
			if needleNode != nil {
				return nil, l.errorf(f.key, "payload takes contains or hex, not both")
			}
			needleNode = f.val
			s, err := l.scalar(f.val, "payload "+f.name)
			if err != nil {
				return nil, err
			}
			if f.name == "contains" {
				p.Needle = []byte(s)
				continue
			}
			clean := strings.NewReplacer(" ", "", ":", "", "\t", "").Replace(s)
			b, herr := hex.DecodeString(clean)
			if herr != nil {
				var ie hex.InvalidByteError
				if errors.As(herr, &ie) {
					return nil, l.errorf(f.val, "payload hex %q: invalid character %q", s, rune(ie))
				}
				return nil, l.errorf(f.val, "payload hex %q: odd number of digits", s)
			}
			p.Needle = b
		case "offset":
			v, err := l.integer(f.val, "payload offset", 0, 65535)
			if err != nil {
				return nil, err
			}
			p.Offset = int(v)
		case "depth":
			v, err := l.integer(f.val, "payload depth", 1, 65535)
			if err != nil {
				return nil, err
			}
			p.Depth = int(v)
			depthNode = f.val
		}
	}
	if needleNode == nil {
		return nil, l.errorf(n, "payload needs contains: TEXT or hex: BYTES")
	}
	if len(p.Needle) == 0 {
		return nil, l.errorf(needleNode, "payload needle is empty")
	}
	if depthNode != nil && p.Depth < len(p.Needle) {
		return nil, l.errorf(depthNode, "payload depth %d is shorter than the %d-byte needle: the rule can never match", p.Depth, len(p.Needle))
	}
	return p, nil
}

func (l *loader) warnf(p pos, format string, args ...any) {
	l.warns = append(l.warns, warning{p, fmt.Sprintf(format, args...)})
}

type warning struct {
	pos pos
	msg string
}
