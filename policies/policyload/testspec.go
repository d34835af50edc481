package policyload

import (
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

var testPacketKeys = []string{"hook", "proto", "family", "src", "dst", "sport", "dport", "iif", "oif", "state",
	"tcp_flags", "icmp_type", "length", "dns_qname", "tls_sni", "http_host", "payload", "uid", "gid", "cgroup"}

// Addresses a test packet gets when it names none: ordinary public
// addresses, outside the private, documentation and bogon ranges that
// policies typically list, so that an unnamed source is "anyone".
var (
	defaultSrc4 = netip.AddrFrom4([4]byte{1, 2, 3, 4})
	defaultDst4 = netip.AddrFrom4([4]byte{5, 6, 7, 8})
	defaultSrc6 = netip.MustParseAddr("2a00:1::1")
	defaultDst6 = netip.MustParseAddr("2a00:2::2")
)

const defaultSport = 40000

func (l *loader) tests(n *yaml.Node) {
	l.p.Tests = append(l.p.Tests, loadItems(l, n, "tests", l.test)...)
}

func (l *loader) test(n *yaml.Node) (*policies.Test, *policies.Error) {
	// Each bad field of a test is reported, not only the first.
	fields, errs, err := l.itemFields(n, "test", testKeys)
	if err != nil {
		return nil, err
	}
	badKeys := len(errs) > 0
	t := &policies.Test{At: l.pos(n)}
	var hasPacket, hasExpect, skip bool
	for _, f := range fields {
		switch f.name {
		case "packet":
			hasPacket = true
			if err := l.testPacket(&t.Packet, f.val); err != nil {
				errs = append(errs, err)
			}
		case "expect":
			hasExpect = true
			if t.Expect, err = l.action(f.val, "expect", true); err != nil {
				errs = append(errs, err)
			}
		case "rule":
			s, err := l.scalar(f.val, "rule")
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if s == policies.DefaultRuleName {
				// The hook's default decides, as events say "rule":"default".
				t.ByDefault = true
				continue
			}
			if _, ok := l.ruleByName[s]; !ok {
				names := make([]string, 0, len(l.ruleByName))
				for k := range l.ruleByName {
					names = append(names, k)
				}
				errs = append(errs, l.errorf(f.val, "unknown rule %q%s", s, quotedDidYouMean(s, append(names, policies.DefaultRuleName))))
				continue
			}
			// A broken rule's error is already reported.
			skip = skip || l.brokenRules[s]
			t.Rule = s
		}
	}
	// A misspelt key is most likely the missing one: say only the one.
	if !badKeys && !hasPacket {
		errs = append(errs, l.errorf(n, "test has no packet"))
	}
	if !badKeys && !hasExpect {
		errs = append(errs, l.errorf(n, "test has no expect (accept, drop or reject)"))
	}
	if len(errs) > 0 {
		return nil, l.firstOf(errs)
	}
	if skip {
		return nil, errSkip
	}
	return t, nil
}

// testPacketSeen records which fields a test packet named, and where, for
// the defaults and the checks across fields that follow reading them.
type testPacketSeen struct {
	proto, sport, dport, icmp, length bool
	famNode, srcNode, dstNode         *yaml.Node
	// icmpName is an icmp_type given by name, resolved once the family is
	// known (icmpNode is where it was written).
	icmpName string
	icmpNode *yaml.Node
}

func (l *loader) testPacket(tp *policies.TestPacket, n *yaml.Node) *policies.Error {
	// Each bad field is reported; the checks across fields need them all.
	fields, errs, err := l.itemFields(n, "test packet", testPacketKeys)
	if err != nil {
		return err
	}
	tp.Hook = nf.HookInput
	tp.State = nf.StateNew
	var seen testPacketSeen
	for _, f := range fields {
		if e := l.testPacketField(tp, &seen, f); e != nil {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return l.firstOf(errs)
	}
	// Cross-field defaults and checks, in this order: each step relies on
	// what the ones before it settled (the family on the proto, the
	// ports, flags and ICMP type on both).
	for _, step := range []func(*policies.TestPacket, *testPacketSeen, *yaml.Node) *policies.Error{
		l.testPacketExclusive,
		l.testPacketFamily,
		l.testPacketPorts,
		l.testPacketTCPFlags,
		l.testPacketICMP,
		l.testPacketL7Protos,
	} {
		if err := step(tp, &seen, n); err != nil {
			return err
		}
	}
	if !seen.length {
		tp.Length = 0 // computed from the headers and payload when built
	}
	return nil
}

// testPacketField reads one field of a test packet into tp: here those
// that say where it goes, testPacketContent the rest.
func (l *loader) testPacketField(tp *policies.TestPacket, seen *testPacketSeen, f field) *policies.Error {
	v := f.val
	switch f.name {
	case "hook":
		h, _, err := l.hookName(v)
		if err != nil {
			return err
		}
		tp.Hook = h
	case "proto":
		var m policies.Match
		if err := l.protos(&m, v, famBoth); err != nil {
			return err
		}
		if len(m.Protos) != 1 {
			return l.errorf(v, "a test packet has one proto")
		}
		tp.Proto, seen.proto = m.Protos[0], true
	case "family":
		seen.famNode = v
		s, err := l.scalar(v, "family")
		if err != nil {
			return err
		}
		switch s {
		case "ipv4":
			tp.Family = packet.IPv4
		case "ipv6":
			tp.Family = packet.IPv6
		default:
			return l.errorf(v, "family must be ipv4 or ipv6, got %q", s)
		}
	case "src", "dst":
		s, err := l.scalar(v, f.name)
		if err != nil {
			return err
		}
		a, perr := netip.ParseAddr(strings.TrimSpace(s))
		if perr != nil || a.Zone() != "" {
			return l.errorf(v, "test packet %s must be one address, got %q", f.name, s)
		}
		a = a.Unmap()
		if f.name == "src" {
			tp.Src, seen.srcNode = a, v
		} else {
			tp.Dst, seen.dstNode = a, v
		}
	case "sport", "dport":
		x, err := l.integer(v, f.name, 0, 65535)
		if err != nil {
			return err
		}
		if f.name == "sport" {
			tp.Sport, seen.sport = uint16(x), true
		} else {
			tp.Dport, seen.dport = uint16(x), true
		}
	case "iif", "oif":
		s, err := l.scalar(v, f.name)
		if err != nil {
			return err
		}
		if f.name == "iif" {
			tp.Iif = s
		} else {
			tp.Oif = s
		}
	default:
		return l.testPacketContent(tp, seen, f)
	}
	return nil
}

// testPacketContent reads a field of a test packet that says what it
// carries or the state of its flow, rather than where it goes.
func (l *loader) testPacketContent(tp *policies.TestPacket, seen *testPacketSeen, f field) *policies.Error {
	v := f.val
	switch f.name {
	case "state":
		st, _, err := l.stateName(v, "")
		if err != nil {
			return err
		}
		tp.State = st
	case "tcp_flags":
		s, err := l.scalar(v, "tcp_flags")
		if err != nil {
			return err
		}
		if strings.Contains(s, "/") {
			return l.errorf(v, "a test packet's tcp_flags are the flags it carries (e.g. SA), without a mask")
		}
		f, e := parseTCPFlags(s)
		if e != "" {
			return l.errorf(v, "%s", e)
		}
		tp.TCPFlags, tp.HasFlags = f.Want, true
	case "icmp_type":
		s, err := l.scalar(v, "icmp_type")
		if err != nil {
			return err
		}
		seen.icmp = true
		if x, perr := strconv.ParseUint(s, 10, 8); perr == nil {
			tp.ICMPType = uint8(x)
			return nil
		}
		// Resolved once the family is known, in testPacketICMP.
		seen.icmpName, seen.icmpNode = s, v
	case "length":
		x, err := l.integer(v, "length", 20, 65535)
		if err != nil {
			return err
		}
		tp.Length, seen.length = int(x), true
	case "dns_qname", "tls_sni", "http_host":
		return l.testPacketName(tp, f)
	case "payload":
		b, err := l.testPayload(v)
		if err != nil {
			return err
		}
		tp.Payload = b
	case "uid", "gid", "cgroup":
		if err := l.testOwner(tp, f.name, v); err != nil {
			return err
		}
	}
	return nil
}

// testPacketName reads a test packet's dns_qname, tls_sni or http_host: one
// name, not a pattern.
func (l *loader) testPacketName(tp *policies.TestPacket, f field) *policies.Error {
	s, err := l.scalar(f.val, f.name)
	if err != nil {
		return err
	}
	name, e := parseNamePattern(s)
	if e != "" || strings.HasPrefix(name, "*") {
		return l.errorf(f.val, "test packet %s must be a name, got %q", f.name, s)
	}
	switch f.name {
	case "dns_qname":
		tp.DNSQName = name
	case "tls_sni":
		tp.TLSSNI = name
	default:
		tp.HTTPHost = name
	}
	return nil
}

// testPacketExclusive rejects fields that cannot go together: a socket
// owner on a forwarded packet, more than one L7 field or payload.
func (l *loader) testPacketExclusive(tp *policies.TestPacket, _ *testPacketSeen, n *yaml.Node) *policies.Error {
	if tp.Hook == nf.HookForward && (tp.HasUID || tp.HasGID || tp.Cgroup != "") {
		return l.errorf(n, "a forwarded test packet has no local socket, so it cannot carry uid, gid or cgroup")
	}
	set := 0
	for _, b := range []bool{tp.DNSQName != "", tp.TLSSNI != "", tp.HTTPHost != "", tp.Payload != nil} {
		if b {
			set++
		}
	}
	if set > 1 {
		return l.errorf(n, "a test packet carries one of dns_qname, tls_sni, http_host or payload")
	}
	return nil
}

// testPacketFamily settles the family, the proto and the addresses: from
// what the packet names where it does, else from each other, else the
// defaults.
func (l *loader) testPacketFamily(tp *policies.TestPacket, seen *testPacketSeen, n *yaml.Node) *policies.Error {
	if tp.Src.IsValid() && tp.Dst.IsValid() && tp.Src.Is4() != tp.Dst.Is4() {
		return l.errorf(seen.dstNode, "test packet src and dst are of different families")
	}
	fam := tp.Family
	for _, a := range []struct {
		addr netip.Addr
		node *yaml.Node
	}{{tp.Src, seen.srcNode}, {tp.Dst, seen.dstNode}} {
		if !a.addr.IsValid() {
			continue
		}
		af := packet.IPv6
		if a.addr.Is4() {
			af = packet.IPv4
		}
		if fam != packet.FamilyUnknown && fam != af {
			return l.errorf(a.node, "test packet address %s does not match family %s", a.addr, fam)
		}
		fam = af
	}
	if !seen.proto {
		switch {
		case tp.DNSQName != "":
			tp.Proto = packet.ProtoUDP
		case seen.icmp && fam == packet.IPv6:
			tp.Proto = packet.ProtoICMPv6
		case seen.icmp:
			tp.Proto = packet.ProtoICMP
		default:
			tp.Proto = packet.ProtoTCP
		}
	}
	if fam == packet.FamilyUnknown {
		fam = packet.IPv4
		if tp.Proto == packet.ProtoICMPv6 {
			fam = packet.IPv6
		}
	}
	if tp.Proto == packet.ProtoICMPv6 && fam == packet.IPv4 || tp.Proto == packet.ProtoICMP && fam == packet.IPv6 {
		where := seen.famNode
		if where == nil {
			where = n
		}
		return l.errorf(where, "test packet proto %s does not fit family %s", protoName(tp.Proto), fam)
	}
	tp.Family = fam
	if !tp.Src.IsValid() {
		tp.Src = map[bool]netip.Addr{true: defaultSrc4, false: defaultSrc6}[fam == packet.IPv4]
	}
	if !tp.Dst.IsValid() {
		tp.Dst = map[bool]netip.Addr{true: defaultDst4, false: defaultDst6}[fam == packet.IPv4]
	}
	return nil
}

// testPacketPorts checks that ports come only with a proto that has them,
// and defaults them: an ephemeral source, the destination its L7 field
// implies.
func (l *loader) testPacketPorts(tp *policies.TestPacket, seen *testPacketSeen, n *yaml.Node) *policies.Error {
	if (seen.sport || seen.dport) && !policies.HasPorts(tp.Proto) {
		return l.errorf(n, "test packet has ports but proto %s has none", protoName(tp.Proto))
	}
	if !policies.HasPorts(tp.Proto) {
		return nil
	}
	if !seen.sport {
		tp.Sport = defaultSport
	}
	if !seen.dport {
		switch {
		case tp.DNSQName != "":
			tp.Dport = 53
		case tp.TLSSNI != "":
			tp.Dport = 443
		case tp.HTTPHost != "":
			tp.Dport = 80
		}
	}
	return nil
}

// testPacketTCPFlags checks that tcp_flags come only with TCP, and defaults
// them to what a packet in the test's state carries.
func (l *loader) testPacketTCPFlags(tp *policies.TestPacket, _ *testPacketSeen, n *yaml.Node) *policies.Error {
	if tp.HasFlags && tp.Proto != packet.ProtoTCP {
		return l.errorf(n, "test packet has tcp_flags but proto %s", protoName(tp.Proto))
	}
	if tp.Proto == packet.ProtoTCP && !tp.HasFlags {
		// A new flow starts with a SYN; anything later carries an ACK.
		tp.TCPFlags = packet.TCPAck
		if tp.State == nf.StateNew {
			tp.TCPFlags = packet.TCPSyn
		}
		if tp.DNSQName != "" || tp.TLSSNI != "" || tp.HTTPHost != "" || tp.Payload != nil {
			tp.TCPFlags = packet.TCPAck | packet.TCPPsh
		}
	}
	return nil
}

// testPacketICMP checks that icmp_type comes only with ICMP, resolves a
// type name for the packet's ICMP version, and defaults to an echo request.
func (l *loader) testPacketICMP(tp *policies.TestPacket, seen *testPacketSeen, n *yaml.Node) *policies.Error {
	isICMP := tp.Proto == packet.ProtoICMP || tp.Proto == packet.ProtoICMPv6
	if seen.icmp && !isICMP {
		return l.errorf(n, "test packet has icmp_type but proto %s", protoName(tp.Proto))
	}
	if !isICMP {
		return nil
	}
	names := icmp4Names
	if tp.Proto == packet.ProtoICMPv6 {
		names = icmp6Names
	}
	switch {
	case seen.icmpName != "":
		t, ok := names[seen.icmpName]
		if !ok {
			return l.errorf(seen.icmpNode, "unknown %s type %q%s", protoName(tp.Proto), seen.icmpName, quotedDidYouMean(seen.icmpName, keys(names)))
		}
		tp.ICMPType = t
	case !seen.icmp:
		tp.ICMPType = names["echo-request"]
	}
	return nil
}

// testPacketL7Protos checks that an L7 field comes with a proto that
// carries it.
func (l *loader) testPacketL7Protos(tp *policies.TestPacket, _ *testPacketSeen, n *yaml.Node) *policies.Error {
	if tp.HTTPHost != "" && tp.Proto != packet.ProtoTCP {
		return l.errorf(n, "test packet has http_host but proto %s", protoName(tp.Proto))
	}
	if tp.TLSSNI != "" && tp.Proto != packet.ProtoTCP && tp.Proto != packet.ProtoUDP {
		return l.errorf(n, "test packet has tls_sni but proto %s (tcp for TLS, udp for QUIC)", protoName(tp.Proto))
	}
	if tp.DNSQName != "" && tp.Proto != packet.ProtoTCP && tp.Proto != packet.ProtoUDP {
		return l.errorf(n, "test packet has dns_qname but proto %s", protoName(tp.Proto))
	}
	return nil
}

func (l *loader) testPayload(n *yaml.Node) ([]byte, *policies.Error) {
	n = resolve(n)
	if n != nil && n.Kind == yaml.ScalarNode {
		s, err := l.scalar(n, "payload")
		if err != nil {
			return nil, err
		}
		return []byte(s), nil
	}
	fields, err := l.mapping(n, "test payload", testPayloadKeys)
	if err != nil {
		return nil, err
	}
	if len(fields) != 1 {
		return nil, l.errorf(n, "test payload takes one of text or hex")
	}
	f := fields[0]
	s, err := l.scalar(f.val, "payload "+f.name)
	if err != nil {
		return nil, err
	}
	if f.name == "contains" {
		return []byte(s), nil
	}
	b, herr := hex.DecodeString(strings.NewReplacer(" ", "", ":", "").Replace(s))
	if herr != nil {
		return nil, l.errorf(f.val, "payload hex %q is not valid hex", s)
	}
	return b, nil
}
