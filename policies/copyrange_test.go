package policies_test

import (
	"reflect"
	"testing"

	"github.com/fwagent/fwagent/policies"
)

func TestCopyRange(t *testing.T) {
	const head = "version: 1\ndefault: {input: drop}\nrules:\n"
	for _, tc := range []struct {
		name  string
		rules string
		want  uint32
	}{
		{"no rules", "", policies.HeaderBytes},
		{"headers only", "  - {name: a, match: {proto: tcp, dport: 80, src: 10.0.0.0/8, tcp_flags: S/SA, length: 40-100, state: new, iif: eth0}, action: accept}\n" +
			"  - {name: b, match: {proto: icmp, icmp_type: echo-request}, action: accept}\n", policies.HeaderBytes},
		{"payload with depth", "  - {name: a, match: {proto: tcp, payload: {contains: GET, offset: 4, depth: 100}}, action: accept}\n" +
			"  - {name: b, match: {proto: tcp, payload: {contains: x, depth: 10}}, action: accept}\n", policies.HeaderBytes + 104},
		{"payload without depth", "  - {name: a, match: {proto: tcp, payload: {contains: GET, depth: 10}}, action: accept}\n" +
			"  - {name: b, match: {proto: tcp, payload: {contains: x}}, action: accept}\n", policies.WholePacket},
		{"tls_sni", "  - {name: a, match: {proto: tcp, dport: 443, tls_sni: example.com}, action: accept}\n", policies.WholePacket},
		{"dns_qname", "  - {name: a, match: {proto: udp, dport: 53, dns_qname: example.com}, action: accept}\n", policies.WholePacket},
		{"http_host", "  - {name: a, match: {proto: tcp, dport: 80, http_host: example.com}, action: accept}\n", policies.WholePacket},
		{"uid", "  - {name: a, hook: output, match: {proto: tcp, uid: 0}, action: accept}\n", policies.HeaderBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustCompile(t, head+tc.rules)
			if got := p.CopyRange(); got != tc.want {
				t.Errorf("CopyRange = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestCopyRangeKnowsEveryMatchField fails when Match grows a field: decide
// whether the new field reads the payload, teach bytesNeeded, and list the
// field here. Until then bytesNeeded asks for whole packets for any rule
// that sets it, which is safe but slow.
func TestCopyRangeKnowsEveryMatchField(t *testing.T) {
	known := map[string]bool{
		"Protos": true, "Family": true, "Src": true, "Dst": true, "Sport": true, "Dport": true,
		"Iif": true, "Oif": true, "States": true, "TCPFlags": true, "HasICMPType": true,
		"ICMP4Types": true, "ICMP6Types": true, "Length": true,
		"Payload": true, "DNSQName": true, "TLSSNI": true, "HTTPHost": true,
		"UID": true, "GID": true, "Cgroup": true,
	}
	ty := reflect.TypeFor[policies.Match]()
	for i := range ty.NumField() {
		if f := ty.Field(i); !known[f.Name] {
			t.Errorf("Match.%s is new: decide its copy range in bytesNeeded (it gets whole packets until then)", f.Name)
		}
	}
	// An unknown L7 field set on a rule asks for whole packets.
	m := policies.Match{DNSQName: []string{"x"}}
	if n := policies.BytesNeeded(&m); n != policies.WholePacket {
		t.Errorf("a rule with an L7 field needs %d bytes, want the whole packet", n)
	}
}
