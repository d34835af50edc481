package policies_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

// TestDocumentedSemantics holds the answers docs/policy.md ("Exact
// semantics") gives to the questions #13's oracle had to guess: each case
// is one sentence of that section.
func TestDocumentedSemantics(t *testing.T) {
	icmp := func(proto, typ uint8, src, dst string) *packet.Packet {
		s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
		fam := packet.IPv4
		if s.Is6() {
			fam = packet.IPv6
		}
		return &packet.Packet{Family: fam, Src: s, Dst: d, Proto: proto, HasL4: true, ICMPType: typ, Length: 84}
	}
	tcp := func(src string, flags uint8) *packet.Packet {
		p := pk(packet.ProtoTCP, src, "5.6.7.8", 40000, 80)
		if strings.Contains(src, ":") {
			p = pk(packet.ProtoTCP, src, "2001:db8::2", 40000, 80)
		}
		p.TCPFlags = flags
		return p
	}
	tests := []struct {
		name  string
		match string
		pkt   *packet.Packet
		want  bool
	}{
		{"a ! entry excludes from the list's other entries", `{src: [10.0.0.0/8, "!10.9.0.0/16"]}`, tcp("10.1.1.1", packet.TCPSyn), true},
		{"a ! entry excludes (excluded address)", `{src: [10.0.0.0/8, "!10.9.0.0/16"]}`, tcp("10.9.1.1", packet.TCPSyn), false},
		{"a ! entry does not add addresses", `{src: [10.0.0.0/8, "!10.9.0.0/16"]}`, tcp("11.0.0.1", packet.TCPSyn), false},
		{"only ! entries: everything but them", `{src: ["!10.0.0.0/8", "!192.168.0.0/16"]}`, tcp("11.0.0.1", packet.TCPSyn), true},
		{"only ! entries (excluded)", `{src: ["!10.0.0.0/8", "!192.168.0.0/16"]}`, tcp("192.168.1.1", packet.TCPSyn), false},
		{"an IPv4 negation matches IPv6 packets", `{src: "!10.0.0.0/8"}`, tcp("2001:db8::1", packet.TCPSyn), true},
		{"an IPv6 negation matches IPv4 packets", `{src: "!2001:db8::/32"}`, tcp("10.0.0.1", packet.TCPSyn), true},
		{"icmp_type name without proto: ICMP", `{icmp_type: echo-request}`, icmp(packet.ProtoICMP, 8, "1.1.1.1", "2.2.2.2"), true},
		{"icmp_type name without proto: ICMPv6", `{icmp_type: echo-request}`, icmp(packet.ProtoICMPv6, 128, "2001:db8::1", "2001:db8::2"), true},
		{"icmp_type number without proto: ICMP", `{icmp_type: 3}`, icmp(packet.ProtoICMP, 3, "1.1.1.1", "2.2.2.2"), true},
		{"icmp_type number without proto: the same number in ICMPv6", `{icmp_type: 3}`, icmp(packet.ProtoICMPv6, 3, "2001:db8::1", "2001:db8::2"), true},
		{"icmp_type never matches TCP", `{icmp_type: 3}`, tcp("1.1.1.1", packet.TCPSyn), false},
		{"tcp_flags without /: exactly these flags", `{tcp_flags: S}`, tcp("1.1.1.1", packet.TCPSyn), true},
		{"tcp_flags without /: an ECN SYN has more", `{tcp_flags: S}`, tcp("1.1.1.1", packet.TCPSyn|1<<6|1<<7), false},
		{"tcp_flags with /: only the mask's flags", `{tcp_flags: S/SA}`, tcp("1.1.1.1", packet.TCPSyn|1<<6|1<<7), true},
		{"ports without proto: UDP", `{dport: 80}`, pk(packet.ProtoUDP, "1.1.1.1", "2.2.2.2", 1, 80), true},
		{"ports without proto: SCTP", `{dport: 80}`, pk(packet.ProtoSCTP, "1.1.1.1", "2.2.2.2", 1, 80), true},
		{"ports without proto: never ICMP", `{dport: "!80"}`, icmp(packet.ProtoICMP, 8, "1.1.1.1", "2.2.2.2"), false},
		{"ports without proto: never a protocol without ports", `{sport: "!1"}`, pk(packet.ProtoGRE, "1.1.1.1", "2.2.2.2", 0, 0), false},
		{"an IPv4-mapped literal is the IPv4 address", `{src: "::ffff:10.0.0.1"}`, tcp("10.0.0.1", packet.TCPSyn), true},
		{"an IPv4-mapped literal does not match a mapped IPv6 source", `{src: "::ffff:10.0.0.1"}`, tcp("::ffff:10.0.0.1", packet.TCPSyn), false},
		{"an IPv4-mapped prefix is the IPv4 prefix", `{src: "::ffff:10.0.0.0/104"}`, tcp("10.1.2.3", packet.TCPSyn), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog := mustCompile(t, "version: 1\ndefault: drop\nrules:\n  - {name: r, match: "+tt.match+", action: accept}\n")
			d := prog.Decide(&policies.Input{Pkt: tt.pkt, Hook: nf.HookInput})
			if got := d.Rule == 0; got != tt.want {
				t.Errorf("match %s on %+v: matched %v, want %v", tt.match, tt.pkt, got, tt.want)
			}
		})
	}
}

// TestNegationOnlyWhereDocumented: `!` is accepted by src, dst, sport and
// dport, and refused everywhere else rather than read as something else.
func TestNegationOnlyWhereDocumented(t *testing.T) {
	for _, m := range []string{`{src: "!1.2.3.4"}`, `{dst: "!1.2.3.0/24"}`, `{sport: "!1-1023"}`, `{dport: "!22"}`} {
		if _, err := load("version: 1\nrules:\n  - {name: r, match: " + m + ", action: accept}\n"); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
	for _, m := range []string{`{proto: "!tcp"}`, `{family: "!ipv4"}`, `{state: "!new"}`, `{iif: "!eth0"}`, `{oif: "!eth0"}`,
		`{tcp_flags: "!S"}`, `{icmp_type: "!echo-request"}`, `{length: "!100"}`, `{dns_qname: "!a.example"}`, `{tls_sni: "!a.example"}`} {
		if _, err := load("version: 1\nrules:\n  - {name: r, match: " + m + ", action: accept}\n"); err == nil {
			t.Errorf("%s: loaded; negation is documented only for src, dst, sport and dport", m)
		}
	}
}
