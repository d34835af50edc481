package policies_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
	"github.com/fwagent/fwagent/policies/policytest"
)

// head starts every test policy.
const head = "version: 1\n"

// load loads policy as p.yaml, without set files.
func load(policy string) (*policies.Policy, error) {
	return policyload.Load("p.yaml", []byte(policy), nil)
}

func mustCompile(t testing.TB, policy string) *policies.Program {
	t.Helper()
	return compileWith(t, policy, nil)
}

// compileWith loads policy as p.yaml, user and group names resolved by
// names (nil: the host's), and compiles it.
func compileWith(t testing.TB, policy string, names policyload.NameResolver) *policies.Program {
	t.Helper()
	pol, err := policyload.LoadWithNames("p.yaml", []byte(policy), nil, names)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := policies.Compile(pol)
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

// pk builds a decoded packet for tests.
func pk(proto uint8, src, dst string, sport, dport uint16) *packet.Packet {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	fam := packet.IPv4
	if s.Is6() {
		fam = packet.IPv6
	}
	p := &packet.Packet{Family: fam, Src: s, Dst: d, Proto: proto, HasL4: true, Length: 60}
	if policies.HasPorts(proto) {
		p.SrcPort, p.DstPort = sport, dport
	}
	if proto == packet.ProtoTCP {
		p.TCPFlags = packet.TCPSyn
	}
	return p
}

const decidePolicy = `version: 1
default: {input: drop, forward: drop, output: accept, log: true}
sets:
  admins: [10.0.0.0/8, "2001:db8:a::/48"]
  web: [80, 443, 8000-8099]
  ads: ["*.ads.example", tracker.example]
rules:
  - name: established
    match: {state: [established, related]}
    action: accept
  - name: invalid
    match: {state: invalid}
    action: drop
    log: true
  - name: not-internal
    hook: input
    match: {src: "!$admins", dport: 23}
    action: reject
  - name: ssh-admins
    hook: input
    match: {proto: tcp, src: $admins, dport: 22}
    action: accept
  - name: probe
    match: {proto: tcp, dport: 8022, payload: {contains: "SSH-"}}
    action: drop
    audit: true
  - name: web
    match: {proto: tcp, dport: $web}
    action: accept
  - name: marked
    match: {proto: udp, dport: 5000, iif: "veth*"}
    action: accept
    mark: 0x42
  - name: no-ads-dns
    hook: output
    match: {proto: udp, dport: 53, dns_qname: $ads}
    action: reject
    log: {prefix: dns-ads}
  - name: no-ads-tls
    hook: output
    match: {tls_sni: $ads}
    action: reject
  - name: ping
    match: {proto: icmp, icmp_type: echo-request}
    limit: {rate: 1/h, burst: 2}
    action: accept
`

func TestDecide(t *testing.T) {
	prog := mustCompile(t, decidePolicy)
	withPayload := func(p *packet.Packet, b []byte) *packet.Packet { p.Payload = b; return p }
	icmp := &packet.Packet{Family: packet.IPv4, Src: netip.MustParseAddr("1.1.1.1"), Dst: netip.MustParseAddr("2.2.2.2"),
		Proto: packet.ProtoICMP, HasL4: true, ICMPType: 8, Length: 84}
	tests := []struct {
		name  string
		in    policies.Input
		rule  string
		want  policies.Action
		check func(policies.Decision) string
	}{
		{name: "established", in: policies.Input{Pkt: pk(6, "1.2.3.4", "5.6.7.8", 1, 2), State: nf.StateEstablished},
			rule: "established", want: policies.ActionAccept, check: func(d policies.Decision) string {
				if !d.Offload || !d.Cacheable {
					return "established: want offload and cacheable (for later established packets)"
				}
				return ""
			}},
		{name: "invalid", in: policies.Input{Pkt: pk(6, "1.2.3.4", "5.6.7.8", 1, 2), State: nf.StateInvalid},
			rule: "invalid", want: policies.ActionDrop, check: func(d policies.Decision) string {
				if !d.Log || d.Audit {
					return "want log, no audit"
				}
				return ""
			}},
		{name: "telnet from outside", in: policies.Input{Pkt: pk(6, "1.2.3.4", "5.6.7.8", 1, 23)}, rule: "not-internal", want: policies.ActionReject},
		{name: "telnet from inside", in: policies.Input{Pkt: pk(6, "10.9.9.9", "5.6.7.8", 1, 23)}, rule: "default", want: policies.ActionDrop,
			check: func(d policies.Decision) string {
				if !d.Log {
					return "default drop must log"
				}
				return ""
			}},
		{name: "telnet over udp", in: policies.Input{Pkt: pk(17, "1.2.3.4", "5.6.7.8", 1, 23)}, rule: "not-internal", want: policies.ActionReject},
		{name: "ssh admin", in: policies.Input{Pkt: pk(6, "10.1.2.3", "5.6.7.8", 1000, 22)}, rule: "ssh-admins", want: policies.ActionAccept,
			check: func(d policies.Decision) string {
				if !d.Offload || !d.Cacheable {
					return "ssh-admins: want offload and cacheable (for later new packets; established ones are decided anew)"
				}
				return ""
			}},
		{name: "ssh admin v6", in: policies.Input{Pkt: pk(6, "2001:db8:a::1", "2001:db8:b::1", 1000, 22)}, rule: "ssh-admins", want: policies.ActionAccept},
		{name: "ssh other", in: policies.Input{Pkt: pk(6, "2001:db8:b::1", "2001:db8:a::1", 1000, 22)}, rule: "default", want: policies.ActionDrop},
		// A TCP packet without payload cannot show a ClientHello yet: the
		// tls_sni rule waits (pending) and accepts it, whatever follows.
		{name: "ssh admin on output", in: policies.Input{Pkt: pk(6, "10.1.2.3", "5.6.7.8", 1000, 22), Hook: nf.HookOutput}, rule: "no-ads-tls", want: policies.ActionAccept,
			check: func(d policies.Decision) string {
				if !d.Pending || d.Offload || d.Log || d.Cacheable {
					return "a pending accept must be pending and must not offload, log or cache"
				}
				return ""
			}},
		{name: "probe handshake falls through", in: policies.Input{Pkt: pk(6, "1.2.3.4", "5.6.7.8", 1000, 8022)}, rule: "web", want: policies.ActionAccept,
			check: func(d policies.Decision) string {
				if d.Offload || d.Cacheable {
					return "an accept after a skipped payload rule must wait for the payload"
				}
				return ""
			}},
		{name: "probe payload", in: policies.Input{Pkt: withPayload(pk(6, "1.2.3.4", "5.6.7.8", 1000, 8022), []byte("SSH-2.0-x")), State: nf.StateNew},
			rule: "probe", want: policies.ActionDrop, check: func(d policies.Decision) string {
				if !d.Audit || !d.Log || d.Effective() != policies.ActionAccept {
					return "audit rule: want audit, log, effective accept"
				}
				return ""
			}},
		{name: "web", in: policies.Input{Pkt: pk(6, "1.2.3.4", "5.6.7.8", 1000, 8099)}, rule: "web", want: policies.ActionAccept},
		{name: "web edge", in: policies.Input{Pkt: pk(6, "1.2.3.4", "5.6.7.8", 1000, 8100)}, rule: "default", want: policies.ActionDrop},
		{name: "marked", in: policies.Input{Pkt: pk(17, "1.2.3.4", "5.6.7.8", 1000, 5000), InIf: "veth12", Hook: nf.HookForward}, rule: "marked", want: policies.ActionAccept,
			check: func(d policies.Decision) string {
				if !d.SetMark || d.Mark != 0x42 || d.Offload {
					return "want mark 0x42 and no offload"
				}
				return ""
			}},
		{name: "marked wrong iif", in: policies.Input{Pkt: pk(17, "1.2.3.4", "5.6.7.8", 1000, 5000), InIf: "eth0", Hook: nf.HookForward}, rule: "default", want: policies.ActionDrop},
		{name: "marked on output has no iif", in: policies.Input{Pkt: pk(17, "1.2.3.4", "5.6.7.8", 1000, 5000), OutIf: "veth1", Hook: nf.HookOutput}, rule: "default", want: policies.ActionAccept},
		{name: "dns ad", in: policies.Input{Pkt: withPayload(pk(17, "10.0.0.2", "9.9.9.9", 1000, 53), policytest.DNSQuery("x.ads.example", false)), Hook: nf.HookOutput},
			rule: "no-ads-dns", want: policies.ActionReject},
		{name: "dns ad upper case", in: policies.Input{Pkt: withPayload(pk(17, "10.0.0.2", "9.9.9.9", 1000, 53), policytest.DNSQuery("A.X.ADS.Example", false)), Hook: nf.HookOutput},
			rule: "no-ads-dns", want: policies.ActionReject},
		{name: "dns apex is not under the wildcard", in: policies.Input{Pkt: withPayload(pk(17, "10.0.0.2", "9.9.9.9", 1000, 53), policytest.DNSQuery("ads.example", false)), Hook: nf.HookOutput},
			rule: "default", want: policies.ActionAccept},
		{name: "dns other", in: policies.Input{Pkt: withPayload(pk(17, "10.0.0.2", "9.9.9.9", 1000, 53), policytest.DNSQuery("example.org", false)), Hook: nf.HookOutput},
			rule: "default", want: policies.ActionAccept},
		{name: "tls ad", in: policies.Input{Pkt: withPayload(pk(6, "10.0.0.2", "9.9.9.9", 1000, 9443), policytest.ClientHello("tracker.example")), Hook: nf.HookOutput},
			rule: "no-ads-tls", want: policies.ActionReject},
		{name: "tls split hello", in: policies.Input{Pkt: withPayload(pk(6, "10.0.0.2", "9.9.9.9", 1000, 9443), policytest.ClientHello("tracker.example")[:40]), Hook: nf.HookOutput},
			rule: "no-ads-tls", want: policies.ActionAccept, check: func(d policies.Decision) string {
				if !d.Pending || d.Cacheable {
					return "the first part of a hello is pending"
				}
				return ""
			}},
		{name: "ping 1", in: policies.Input{Pkt: icmp, Now: 1}, rule: "ping", want: policies.ActionAccept, check: func(d policies.Decision) string {
			if d.Offload || d.Cacheable {
				return "limited rule: no offload, not cacheable"
			}
			return ""
		}},
		{name: "ping 2", in: policies.Input{Pkt: icmp, Now: 2}, rule: "ping", want: policies.ActionAccept},
		{name: "ping 3 over the limit", in: policies.Input{Pkt: icmp, Now: 3}, rule: "default", want: policies.ActionDrop},
		{name: "unknown family", in: policies.Input{Pkt: &packet.Packet{}}, rule: "default", want: policies.ActionDrop},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			d := prog.Decide(&in)
			if got := prog.RuleName(d.Rule); got != tc.rule || d.Action != tc.want {
				t.Fatalf("got %s by %s, want %s by %s (%+v)", d.Action, got, tc.want, tc.rule, d)
			}
			if tc.check != nil {
				if msg := tc.check(d); msg != "" {
					t.Errorf("%s: %+v", msg, d)
				}
			}
		})
	}
	if got := prog.LogPrefix(7); got != "dns-ads" {
		t.Errorf("LogPrefix(7) = %q", got)
	}
	if got := prog.Hooks(); !slices.Equal(got, []nf.Hook{nf.HookInput, nf.HookForward, nf.HookOutput}) {
		t.Errorf("Hooks() = %v", got)
	}
}

func TestCacheable(t *testing.T) {
	prog := mustCompile(t, `version: 1
default: {output: accept}
rules:
  - name: web
    hook: input
    match: {proto: tcp, dport: 80}
    action: accept
  - name: syn-only
    hook: input
    match: {proto: tcp, dport: 81, tcp_flags: S/SA}
    action: drop
  - name: after-syn
    hook: input
    match: {proto: tcp, dport: 81}
    action: accept
  - name: new-only
    hook: forward
    match: {state: new}
    action: accept
    offload: false
`)
	tests := []struct {
		name               string
		in                 policies.Input
		rule               string
		cacheable, offload bool
	}{
		{"plain accept", policies.Input{Pkt: pk(6, "1.1.1.1", "2.2.2.2", 1, 80)}, "web", true, true},
		{"default after nothing", policies.Input{Pkt: pk(6, "1.1.1.1", "2.2.2.2", 1, 80), Hook: nf.HookOutput}, "default", true, true},
		{"flag rule decides", policies.Input{Pkt: pk(6, "1.1.1.1", "2.2.2.2", 1, 81)}, "syn-only", false, false},
		{"after a skipped flag rule", policies.Input{Pkt: func() *packet.Packet { p := pk(6, "1.1.1.1", "2.2.2.2", 1, 81); p.TCPFlags = packet.TCPAck; return p }()},
			"after-syn", false, false},
		{"state new, offload off", policies.Input{Pkt: pk(6, "1.1.1.1", "2.2.2.2", 1, 81), Hook: nf.HookForward}, "new-only", true, false},
		{"default after state rule no longer possible", policies.Input{Pkt: pk(6, "1.1.1.1", "2.2.2.2", 1, 81), Hook: nf.HookForward, State: nf.StateEstablished},
			"default", true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			d := prog.Decide(&in)
			if prog.RuleName(d.Rule) != tc.rule || d.Cacheable != tc.cacheable || d.Offload != tc.offload {
				t.Errorf("got rule %s cacheable %v offload %v, want %s %v %v", prog.RuleName(d.Rule), d.Cacheable, d.Offload, tc.rule, tc.cacheable, tc.offload)
			}
		})
	}
}

func TestModeAudit(t *testing.T) {
	prog := mustCompile(t, "version: 1\nmode: audit\ndefault: {input: drop, log: true}\nrules:\n  - {name: r, match: {dport: 9}, action: reject}\n")
	for _, port := range []uint16{9, 10} {
		d := prog.Decide(&policies.Input{Pkt: pk(6, "1.1.1.1", "2.2.2.2", 1, port)})
		if !d.Audit || d.Effective() != policies.ActionAccept || d.Action == policies.ActionAccept {
			t.Errorf("port %d: %+v: audit mode must accept while reporting the action", port, d)
		}
	}
	if !prog.Audit() {
		t.Error("Audit() = false")
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"eth0", "eth0", true}, {"eth0", "eth1", false}, {"eth*", "eth0", true}, {"eth*", "eth", true},
		{"eth*", "veth0", false}, {"*eth*", "veth0", true}, {"*", "", true}, {"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false}, {"", "", true}, {"", "a", false}, {"*0", "eth0", true}, {"*0", "eth01", false},
	}
	for _, tc := range tests {
		if got := policies.GlobMatch(tc.pattern, tc.name); got != tc.want {
			t.Errorf("policies.GlobMatch(%q, %q) = %v", tc.pattern, tc.name, got)
		}
	}
}

// naiveMatch is the specification, rule by rule, that the compiled indexes
// must agree with.
func naiveMatch(r *policies.Rule, in *policies.Input) bool {
	p, m := in.Pkt, &r.Match
	if r.Hooks&(1<<in.Hook) == 0 {
		return false
	}
	if m.Family != 0 && m.Family != p.Family {
		return false
	}
	if len(m.Protos) > 0 && !slices.Contains(m.Protos, p.Proto) {
		return false
	}
	addr := func(am *policies.AddrMatch, a netip.Addr) bool {
		in := func(ps []netip.Prefix) bool {
			return slices.ContainsFunc(ps, func(q netip.Prefix) bool { return q.Contains(a) })
		}
		return (!am.HasPos || in(am.Pos)) && !in(am.Neg)
	}
	if !addr(&m.Src, p.Src) || !addr(&m.Dst, p.Dst) {
		return false
	}
	l4 := p.HasL4 && !p.NonFirstFragment
	port := func(pm *policies.PortMatch, x uint16) bool {
		if !pm.Set {
			return true
		}
		if !l4 || !policies.HasPorts(p.Proto) {
			return false
		}
		in := func(rs []policies.PortRange) bool {
			return slices.ContainsFunc(rs, func(r policies.PortRange) bool { return r.Lo <= x && x <= r.Hi })
		}
		return (!pm.HasPos || in(pm.Pos)) && !in(pm.Neg)
	}
	if !port(&m.Sport, p.SrcPort) || !port(&m.Dport, p.DstPort) {
		return false
	}
	glob := func(pats []string, name string) bool {
		if len(pats) == 0 {
			return true
		}
		return slices.ContainsFunc(pats, func(pat string) bool { ok, _ := path.Match(pat, name); return ok })
	}
	if !glob(m.Iif, in.InIf) || !glob(m.Oif, in.OutIf) {
		return false
	}
	if m.States != 0 && m.States&(1<<in.State) == 0 {
		return false
	}
	if m.TCPFlags != nil && (!l4 || p.Proto != packet.ProtoTCP || p.TCPFlags&m.TCPFlags.Mask != m.TCPFlags.Want) {
		return false
	}
	if m.HasICMPType {
		set := m.ICMP4Types
		if p.Proto == packet.ProtoICMPv6 {
			set = m.ICMP6Types
		}
		if !l4 || set == nil || set[p.ICMPType/64]&(1<<(p.ICMPType%64)) == 0 {
			return false
		}
	}
	if len(m.Length) > 0 && !slices.ContainsFunc(m.Length, func(r policies.LengthRange) bool { return r.Lo <= p.Length && p.Length <= r.Hi }) {
		return false
	}
	if !naiveOwner(m, in) {
		return false
	}
	if m.Payload != nil {
		pl := p.Payload
		if !l4 || m.Payload.Offset > len(pl) {
			return false
		}
		pl = pl[m.Payload.Offset:]
		if m.Payload.Depth > 0 && m.Payload.Depth < len(pl) {
			pl = pl[:m.Payload.Depth]
		}
		if !bytes.Contains(pl, m.Payload.Needle) {
			return false
		}
	}
	return true
}

// randomPolicy writes a policy whose fields come from small, overlapping
// pools, so that prefixes nest, ranges overlap and negations bite.
func randomPolicy(rng *rand.Rand, nrules int) string {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	addrs := []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3", "192.168.0.0/16", "0.0.0.0/0", "10.1.2.128/25", "$nets"}
	addrs6 := []string{"2001:db8::/32", "2001:db8:1::/48", "2001:db8:1::1", "::/0", "$nets6"}
	ports := []string{"22", "80", "443", "1000-2000", "1500", "$ports", "0-1023", "65535"}
	var b strings.Builder
	b.WriteString("version: 1\ndefault: {input: drop, forward: reject, output: accept}\n")
	b.WriteString("sets:\n  nets: [10.1.0.0/16, 172.16.0.0/12, 10.1.2.3]\n  nets6: [\"2001:db8:1::/48\", \"2001:db8:2::/48\"]\n  ports: [80, 443, 1000-1999]\nrules:\n")
	for i := range nrules {
		fmt.Fprintf(&b, "  - name: r%d\n", i)
		hooked := rng.IntN(3) == 0
		if hooked {
			fmt.Fprintf(&b, "    hook: %s\n", pick("input", "forward", "output", "[input, output]"))
		}
		fmt.Fprintf(&b, "    action: %s\n", pick("accept", "drop", "reject"))
		var f []string
		v6 := rng.IntN(4) == 0
		proto := pick("", "tcp", "udp", "icmp", "[tcp, udp]", "gre")
		if v6 && proto == "icmp" {
			proto = "icmpv6"
		}
		if proto != "" {
			f = append(f, "proto: "+proto)
		}
		pool := addrs
		if v6 {
			pool = addrs6
		}
		for _, fld := range []string{"src", "dst"} {
			switch rng.IntN(4) {
			case 1:
				f = append(f, fmt.Sprintf("%s: %q", fld, pick(pool...)))
			case 2:
				f = append(f, fmt.Sprintf("%s: %q", fld, "!"+pick(pool...)))
			case 3:
				f = append(f, fmt.Sprintf("%s: [%q, %q]", fld, pick(pool...), pick("!", "")+pick(pool...)))
			}
		}
		if proto == "tcp" || proto == "udp" || proto == "[tcp, udp]" {
			for _, fld := range []string{"sport", "dport"} {
				switch rng.IntN(5) {
				case 1, 2:
					f = append(f, fmt.Sprintf("%s: %q", fld, pick(ports...)))
				case 3:
					f = append(f, fmt.Sprintf("%s: %q", fld, "!"+pick(ports...)))
				case 4:
					f = append(f, fmt.Sprintf("%s: [%q, %q]", fld, pick(ports...), pick("!", "")+pick(ports...)))
				}
			}
		}
		if proto == "tcp" && rng.IntN(4) == 0 {
			f = append(f, "tcp_flags: "+pick("S/SA", "A/A", "/R", "SA"))
		}
		if (proto == "icmp" || proto == "icmpv6") && rng.IntN(2) == 0 {
			f = append(f, "icmp_type: "+pick("echo-request", "[echo-reply, destination-unreachable]", "3"))
		}
		if rng.IntN(5) == 0 {
			f = append(f, "state: "+pick("new", "established", "[established, related]", "invalid"))
		}
		if !hooked && rng.IntN(6) == 0 {
			f = append(f, fmt.Sprintf("%s: %q", pick("iif", "oif"), pick("eth*", "eth0", "wlan0", "*1")))
		}
		if rng.IntN(8) == 0 {
			f = append(f, "length: "+pick("60", "[20-100, 1500]", "100-65535"))
		}
		if rng.IntN(6) == 0 {
			f = append(f, randomOwnerField(rng))
		}
		if rng.IntN(8) == 0 {
			f = append(f, "payload: {contains: "+pick("GET", "x", "\"GET /\"")+pick("", ", offset: 1", ", depth: 8")+"}")
		}
		if len(f) > 0 {
			fmt.Fprintf(&b, "    match: {%s}\n", strings.Join(f, ", "))
		}
	}
	return b.String()
}

func randomInput(rng *rand.Rand) *policies.Input {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	v6 := rng.IntN(4) == 0
	var src, dst string
	if v6 {
		pool := []string{"2001:db8:1::1", "2001:db8:1::2", "2001:db8:2::5", "2001:db9::1", "fe80::1"}
		src, dst = pick(pool...), pick(pool...)
	} else {
		pool := []string{"10.1.2.3", "10.1.2.200", "10.1.3.1", "10.2.0.1", "192.168.1.1", "8.8.8.8", "172.16.5.5", "10.1.2.4"}
		src, dst = pick(pool...), pick(pool...)
	}
	protos := []uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMP, packet.ProtoGRE, packet.ProtoSCTP}
	proto := protos[rng.IntN(len(protos))]
	if v6 && proto == packet.ProtoICMP {
		proto = packet.ProtoICMPv6
	}
	ports := []uint16{22, 80, 443, 1000, 1500, 1999, 2000, 2001, 0, 65535, 1023, 1024}
	p := pk(proto, src, dst, ports[rng.IntN(len(ports))], ports[rng.IntN(len(ports))])
	p.TCPFlags = []uint8{packet.TCPSyn, packet.TCPSyn | packet.TCPAck, packet.TCPAck, packet.TCPRst}[rng.IntN(4)]
	p.ICMPType = []uint8{0, 3, 8, 128, 129}[rng.IntN(5)]
	p.Length = []int{40, 60, 100, 1500, 9000}[rng.IntN(5)]
	p.Payload = [][]byte{nil, []byte("GET / HTTP/1.1"), []byte("xGET"), []byte("abcdx")}[rng.IntN(4)]
	if rng.IntN(10) == 0 {
		p.NonFirstFragment, p.Fragment = true, true
	}
	in := &policies.Input{
		Pkt:   p,
		Hook:  nf.Hook(rng.IntN(int(nf.NumHooks))),
		InIf:  pick("eth0", "eth1", "wlan0", ""),
		OutIf: pick("eth0", "eth1", "wlan0", ""),
		State: nf.State(rng.IntN(4)),
	}
	randomOwner(rng, in)
	return in
}

// TestDecideMatchesSpec compares the compiled program with the rule-by-rule
// specification on random policies and packets.
func TestDecideMatchesSpec(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	loaded := 0
	for round := 0; round < 300; round++ {
		nrules := 1 + rng.IntN(150)
		text := randomPolicy(rng, nrules)
		pol, err := load(text)
		if err != nil {
			continue // the generator can write impossible rules; the loader refuses them
		}
		loaded++
		prog, err := policies.Compile(pol)
		if err != nil {
			t.Fatal(err)
		}
		for range 200 {
			in := randomInput(rng)
			want := int32(policies.NoRule)
			for i, r := range pol.Rules {
				if naiveMatch(r, in) {
					want = int32(i)
					break
				}
			}
			d := prog.Decide(in)
			if d.Rule != want {
				t.Fatalf("policy:\n%s\npacket %+v hook %s iif %q oif %q state %s:\ncompiled chose %s, spec chose %s",
					text, *in.Pkt, in.Hook, in.InIf, in.OutIf, in.State, prog.RuleName(d.Rule), prog.RuleName(want))
			}
			wantAction := pol.Default[in.Hook]
			if want != policies.NoRule {
				wantAction = pol.Rules[want].Action
			}
			if d.Action != wantAction {
				t.Fatalf("rule %s: action %s, want %s", prog.RuleName(want), d.Action, wantAction)
			}
		}
	}
	if loaded < 100 {
		t.Fatalf("only %d of 300 random policies loaded; the generator needs fixing", loaded)
	}
}

// TestDecideConcurrent: workers share a program; a global limit's burst is
// shared by all of them, neither lost nor exceeded.
func TestDecideConcurrent(t *testing.T) {
	prog := mustCompile(t, decidePolicy)
	const workers, each = 4, 50
	accepted := make(chan int, workers)
	for w := range workers {
		go func() {
			n := 0
			for i := range each {
				p := &packet.Packet{Family: packet.IPv4, Src: netip.AddrFrom4([4]byte{1, 1, byte(w), byte(i)}), Dst: netip.MustParseAddr("2.2.2.2"),
					Proto: packet.ProtoICMP, HasL4: true, ICMPType: 8, Length: 84}
				if d := prog.Decide(&policies.Input{Pkt: p, Now: 5}); d.Action == policies.ActionAccept {
					n++
				}
			}
			accepted <- n
		}()
	}
	total := 0
	for range workers {
		total += <-accepted
	}
	if total != 2 {
		t.Errorf("%d pings accepted under a limit with burst 2", total)
	}
}

func TestAuditRule(t *testing.T) {
	prog := mustCompile(t, `version: 1
rules:
  - {name: watch, match: {dport: 1}, action: accept, audit: true}
  - {name: would-drop, match: {dport: 2}, action: drop, audit: true}
  - {name: drop, match: {dport: 3}, action: drop}
`)
	tests := []struct {
		port       uint16
		log, audit bool
		effective  policies.Action
	}{
		{1, true, false, policies.ActionAccept},
		{2, true, true, policies.ActionAccept},
		{3, false, false, policies.ActionDrop},
	}
	for _, tc := range tests {
		d := prog.Decide(&policies.Input{Pkt: pk(6, "1.1.1.1", "2.2.2.2", 9, tc.port)})
		if d.Log != tc.log || d.Audit != tc.audit || d.Effective() != tc.effective {
			t.Errorf("port %d: %+v, want log %v audit %v effective %s", tc.port, d, tc.log, tc.audit, tc.effective)
		}
	}
}

func TestDecideNoRules(t *testing.T) {
	prog := mustCompile(t, "version: 1\ndefault: {input: reject, forward: accept, output: drop}\n")
	for h, want := range []policies.Action{policies.ActionReject, policies.ActionAccept, policies.ActionDrop} {
		d := prog.Decide(&policies.Input{Pkt: pk(17, "1.1.1.1", "2.2.2.2", 1, 2), Hook: nf.Hook(h)})
		if d.Action != want || d.Rule != policies.NoRule || !d.Cacheable {
			t.Errorf("hook %s: %+v, want %s by default, cacheable", nf.Hook(h), d, want)
		}
	}
	if got := prog.Hooks(); !slices.Equal(got, []nf.Hook{nf.HookInput, nf.HookOutput}) {
		t.Errorf("Hooks() = %v: a hook whose default accepts and that has no rule needs no queue", got)
	}
}
