package policies_test

import (
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/l7"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policytest"
)

const nameVotePolicy = `version: 1
default: {input: drop, output: accept}
rules:
  - name: dns-deny
    hook: input
    match: {proto: udp, dport: 5353, dns_qname: [bad.example]}
    action: drop
  - name: dns-allow
    hook: input
    match: {proto: udp, dport: 53, dns_qname: [good.example, "*.good.example"]}
    action: accept
  - name: http-allow
    hook: input
    match: {dport: 80, http_host: [good.example]}
    action: accept
  - name: http-deny
    hook: input
    match: {dport: 8080, http_host: ["*.bad.example"]}
    action: reject
`

func query(names ...string) []byte {
	msg := []byte{0, 1, 1, 0, 0, byte(len(names)), 0, 0, 0, 0, 0, 0}
	for _, n := range names {
		for l := range strings.SplitSeq(n, ".") {
			msg = append(msg, byte(len(l)))
			msg = append(msg, l...)
		}
		msg = append(msg, 0, 0, 1, 0, 1)
	}
	return msg
}

// TestNameVotes: an accept rule needs every name of the packet, a drop or
// reject rule one.
func TestNameVotes(t *testing.T) {
	p := mustCompile(t, nameVotePolicy)
	udp := func(dport uint16, payload []byte) *policies.Input {
		pkt := pk(packet.ProtoUDP, "10.0.0.1", "10.0.0.2", 4000, dport)
		pkt.Payload = payload
		return &policies.Input{Pkt: pkt, Hook: nf.HookInput}
	}
	tcp := func(dport uint16, payload string) *policies.Input {
		pkt := pk(packet.ProtoTCP, "10.0.0.1", "10.0.0.2", 4000, dport)
		pkt.TCPFlags, pkt.Payload = packet.TCPAck, []byte(payload)
		return &policies.Input{Pkt: pkt, Hook: nf.HookInput, State: nf.StateEstablished}
	}
	for _, tt := range []struct {
		name    string
		in      *policies.Input
		rule    string
		want    policies.Action
		pending bool
	}{
		{"allowed name", udp(53, query("good.example")), "dns-allow", policies.ActionAccept, false},
		{"all allowed", udp(53, query("good.example", "a.good.example")), "dns-allow", policies.ActionAccept, false},
		{"a denied name behind an allowed one", udp(53, query("good.example", "bad.example")), "default", policies.ActionDrop, false},
		{"unreadable second question", udp(53, query("good.example")[:len(query("good.example"))-2]), "default", policies.ActionDrop, false},
		{"deny: any name", udp(5353, query("fine.example", "bad.example")), "dns-deny", policies.ActionDrop, false},
		{"deny: none", udp(5353, query("fine.example", "other.example")), "default", policies.ActionDrop, false},
		{"host allowed", tcp(80, "GET / HTTP/1.1\r\nHost: GOOD.example:80\r\n\r\n"), "http-allow", policies.ActionAccept, false},
		{"absolute target overrides", tcp(80, "GET http://evil.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n"), "default", policies.ActionDrop, false},
		{"no host", tcp(80, "GET / HTTP/1.0\r\n\r\n"), "default", policies.ActionDrop, false},
		{"head in progress", tcp(80, "GET / HTTP/1.1\r\nHo"), "http-allow", policies.ActionAccept, true},
		{"deny host variant", tcp(8080, "GET / HTTP/1.1\r\nhost:x.BAD.example\r\n\r\n"), "http-deny", policies.ActionReject, false},
		{"deny: handshake pending", tcp(8080, ""), "http-deny", policies.ActionAccept, true},
	} {
		d := p.Decide(tt.in)
		if got := p.RuleName(d.Rule); got != tt.rule || d.Action != tt.want || d.Pending != tt.pending {
			t.Errorf("%s: %s by %q pending %v, want %s by %q pending %v", tt.name, d.Action, got, d.Pending, tt.want, tt.rule, tt.pending)
		}
		if d.Cacheable {
			t.Errorf("%s: a DNS or HTTP decision is cacheable", tt.name)
		}
	}
}

// fakeStreams answers as a reassembly would.
type fakeStreams struct {
	name  string
	state l7.NameState
	asked int
}

func (f *fakeStreams) TLSName(in *policies.Input) {
	f.asked++
	in.ServerName, in.NameState = []byte(f.name), f.state
}
func (f *fakeStreams) DNSMessages(*policies.Input) ([][]byte, l7.NameState) {
	return nil, l7.NameUnknown
}
func (f *fakeStreams) HTTPHosts(*policies.Input) ([][]byte, l7.NameState) { return nil, l7.NameUnknown }

func TestSNIFromStreams(t *testing.T) {
	p := mustCompile(t, `version: 1
default: {output: drop}
rules:
  - name: ssh
    hook: output
    match: {proto: tcp, dport: 22}
    action: accept
  - name: allowed
    hook: output
    match: {proto: tcp, dport: 443, tls_sni: [allowed.example]}
    action: accept
  - name: other
    hook: output
    match: {proto: tcp, dport: 443}
    action: reject
`)
	in := func(dport uint16, s policies.Streams) *policies.Input {
		pkt := pk(packet.ProtoTCP, "10.0.0.1", "10.0.0.2", 4000, dport)
		pkt.TCPFlags = packet.TCPAck
		return &policies.Input{Pkt: pkt, Hook: nf.HookOutput, State: nf.StateEstablished, Streams: s}
	}
	for _, tt := range []struct {
		name    string
		st      l7.NameState
		sni     string
		rule    string
		pending bool
	}{
		{"found", l7.NameFound, "Allowed.Example", "allowed", false},
		{"found other", l7.NameFound, "other.example", "other", false},
		{"pending", l7.NamePending, "", "allowed", true},
		{"absent", l7.NameAbsent, "", "other", false},
		{"failed", l7.NameFailed, "", "other", false},
	} {
		f := &fakeStreams{name: tt.sni, state: tt.st}
		d := p.Decide(in(443, f))
		if p.RuleName(d.Rule) != tt.rule || d.Pending != tt.pending || f.asked != 1 {
			t.Errorf("%s: %q pending %v asked %d", tt.name, p.RuleName(d.Rule), d.Pending, f.asked)
		}
	}
	// A flow that meets no stream rule never asks.
	f := &fakeStreams{}
	if d := p.Decide(in(22, f)); p.RuleName(d.Rule) != "ssh" || f.asked != 0 {
		t.Errorf("ssh: %q, asked %d times", p.RuleName(d.Rule), f.asked)
	}
	// A name set before Decide (QUIC) is used as it is.
	x := in(443, nil)
	x.ServerName, x.NameState = []byte("allowed.example"), l7.NameFound
	if d := p.Decide(x); p.RuleName(d.Rule) != "allowed" || !d.Cacheable {
		t.Errorf("preset name: %q cacheable %v", p.RuleName(d.Rule), d.Cacheable)
	}
}

func TestHTTPHostLoad(t *testing.T) {
	for _, tt := range []struct {
		match, err string
	}{
		{"{http_host: [a.example]}", ""},
		{"{proto: udp, http_host: [a.example]}", "http_host needs proto tcp"},
		{"{http_host: [a.example], tls_sni: [b.example]}", "cannot match the same packet"},
		{"{dns_qname: [a.example], http_host: [b.example]}", "cannot match the same packet"},
		{"{http_host: [\"a b\"]}", "http_host"},
		{"{http_host: [\"!a.example\"]}", "does not support negation"},
	} {
		_, err := load("version: 1\nrules:\n  - name: r\n    match: " + tt.match + "\n    action: drop\n")
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.match, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want %q", tt.match, err, tt.err)
		}
	}
	// tests: packets with http_host run through the real parser.
	prog := mustCompile(t, `version: 1
default: {input: accept}
rules:
  - name: r
    match: {dport: 80, http_host: ["*.blocked.example"]}
    action: reject
tests:
  - packet: {http_host: www.blocked.example, state: established}
    expect: reject
    rule: r
  - packet: {http_host: fine.example, state: established}
    expect: accept
`)
	res := policytest.Run(prog)
	if len(res) != 2 {
		t.Fatalf("%d test results, want 2", len(res))
	}
	for _, r := range res {
		if !r.OK {
			t.Errorf("policy test failed: %s", r)
		}
	}
}
