package policies_test

import (
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/l7"
	"github.com/fwagent/fwagent/internal/l7/quic"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policytest"
)

const quicPolicy = `version: 1
default: {input: accept, forward: accept, output: accept}
sets:
  ads: ["*.ads.example", tracker.example]
rules:
  - name: no-ads-quic
    hook: output
    match: {proto: udp, dport: 443, tls_sni: $ads}
    action: drop
  - name: no-ads-any
    hook: output
    match: {tls_sni: [both.example]}
    action: reject
tests:
  - packet: {hook: output, proto: udp, dport: 443, tls_sni: x.ads.example}
    expect: drop
    rule: no-ads-quic
  - packet: {hook: output, proto: udp, dport: 443, tls_sni: fine.example}
    expect: accept
  - packet: {hook: output, proto: udp, dport: 8443, tls_sni: both.example}
    expect: reject
    rule: no-ads-any
  - packet: {hook: output, proto: tcp, dport: 8443, tls_sni: both.example}
    expect: reject
    rule: no-ads-any
`

func TestQUICServerName(t *testing.T) {
	prog := mustCompile(t, quicPolicy)
	if !prog.ReassemblesQUIC() {
		t.Fatal("ReassemblesQUIC is false with a udp tls_sni rule")
	}
	for _, r := range policytest.Run(prog) {
		if !r.OK {
			t.Errorf("policy test: %s", r)
		}
	}

	// A hello cut before its name, in two Initial packets.
	split := func(name string) [2][]byte {
		hello := policytest.ClientHello(name)[5:]
		var out [2][]byte
		for i, part := range [][]byte{hello[:40], hello[40:]} {
			off := uint64(40 * i)
			pkt, err := quic.SealInitial(nil, quic.Version2, []byte{1, 2, 3, 4}, nil, uint32(i), quic.AppendCrypto(nil, off, part))
			if err != nil {
				t.Fatal(err)
			}
			out[i] = pkt
		}
		return out
	}
	udp := func(payload []byte) *packet.Packet {
		p := pk(packet.ProtoUDP, "10.0.0.1", "192.0.2.1", 50000, 443)
		p.Payload = payload
		return p
	}
	single := split("a.ads.example")
	tests := []struct {
		name  string
		in    policies.Input
		rule  string
		want  policies.Action
		cache bool
	}{
		{"one-packet initial", policies.Input{Pkt: udp(policytest.QUICInitial("a.ads.example"))}, "no-ads-quic", policies.ActionDrop, true},
		{"one-packet allowed", policies.Input{Pkt: udp(policytest.QUICInitial("ok.example"))}, "default", policies.ActionAccept, false},
		{"first of a scattered hello alone", policies.Input{Pkt: udp(single[0])}, "no-ads-quic", policies.ActionAccept, false},
		// Pending (the hello's start is missing): the rule accepts while
		// it waits, as for the first segments of a TCP hello.
		{"second alone", policies.Input{Pkt: udp(single[1])}, "no-ads-quic", policies.ActionAccept, false},
		{"reassembled: found", policies.Input{Pkt: udp(single[1]), NameState: l7.NameFound, ServerName: []byte("A.Ads.Example")}, "no-ads-quic", policies.ActionDrop, true},
		{"reassembled: pending", policies.Input{Pkt: udp(policytest.QUICInitial("a.ads.example")), NameState: l7.NamePending}, "no-ads-quic", policies.ActionAccept, false},
		{"reassembled: absent", policies.Input{Pkt: udp(policytest.QUICInitial("a.ads.example")), NameState: l7.NameAbsent}, "default", policies.ActionAccept, false},
		{"reassembled: failed", policies.Input{Pkt: udp(policytest.QUICInitial("a.ads.example")), NameState: l7.NameFailed}, "default", policies.ActionAccept, false},
		{"not quic", policies.Input{Pkt: udp([]byte("GET / HTTP/1.1\r\n"))}, "default", policies.ActionAccept, false},
		{"tcp record fallback", policies.Input{Pkt: func() *packet.Packet {
			p := pk(packet.ProtoTCP, "10.0.0.1", "192.0.2.1", 50000, 9000)
			p.Payload = policytest.ClientHello("both.example")
			return p
		}()}, "no-ads-any", policies.ActionReject, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Hook = nf.HookOutput
			d := prog.Decide(&tt.in)
			if d.Action != tt.want || prog.RuleName(d.Rule) != tt.rule || d.Cacheable != tt.cache {
				t.Fatalf("got %s by %s (cacheable %v); want %s by %s (cacheable %v)", d.Action, prog.RuleName(d.Rule), d.Cacheable, tt.want, tt.rule, tt.cache)
			}
		})
	}
}

func TestTLSSNIProtos(t *testing.T) {
	head := "version: 1\ndefault: {input: accept, forward: accept, output: accept}\nrules:\n  - name: a\n"
	for _, tt := range []struct {
		match   string
		wantErr string
		quic    bool
	}{
		{"{proto: udp, tls_sni: a.example}", "", true},
		{"{tls_sni: a.example}", "", true},
		{"{proto: tcp, tls_sni: a.example}", "", false},
		{"{proto: [tcp, udp], tls_sni: a.example}", "", true},
		{"{proto: icmp, tls_sni: a.example}", "tls_sni needs proto tcp or udp", false},
		{"{tcp_flags: PA, tls_sni: a.example}", "", false},
	} {
		pol, err := load(head + "    match: " + tt.match + "\n    action: drop\n")
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err %v, want %q", tt.match, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.match, err)
			continue
		}
		prog, err := policies.Compile(pol)
		if err != nil {
			t.Fatal(err)
		}
		if prog.ReassemblesQUIC() != tt.quic {
			t.Errorf("%s: ReassemblesQUIC %v, want %v", tt.match, prog.ReassemblesQUIC(), tt.quic)
		}
	}
	if prog := mustCompile(t, head+"    match: {proto: udp, dport: 53, dns_qname: a.example}\n    action: drop\n"); prog.ReassemblesQUIC() {
		t.Error("ReassemblesQUIC without a tls_sni rule")
	}
}

func TestTestPacketTLSSNIProto(t *testing.T) {
	head := "version: 1\ndefault: {input: accept, forward: accept, output: accept}\nrules: []\ntests:\n"
	_, err := load(head + "  - packet: {proto: icmp, tls_sni: a.example}\n    expect: accept\n")
	if err == nil || !strings.Contains(err.Error(), "tls_sni but proto icmp") {
		t.Fatalf("icmp test packet with tls_sni: %v", err)
	}
}
