package policydiff

import (
	"bytes"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/replay"
	"github.com/fwagent/fwagent/internal/testing/rawpcap"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
)

func load(t *testing.T, src string) *policies.Policy {
	t.Helper()
	p, err := policyload.Load("p.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const oldPolicy = `version: 1
default: {input: drop}
sets:
  admins: [10.0.0.0/8, 192.0.2.7]
  gone: [1.2.3.4]
rules:
  - name: established
    match: {state: established}
    action: accept
  - name: ssh
    match: {proto: tcp, src: $admins, dport: 22}
    action: accept
  - name: web
    match: {proto: tcp, dport: [80, 443]}
    action: accept
  - name: old-rule
    match: {src: $gone}
    action: drop
  - name: ping
    match: {icmp_type: echo-request}
    action: accept
`

const newPolicy = `version: 1
mode: audit
default: {input: reject, log: true}
on_error: {output: drop}
sets:
  admins: [10.0.0.0/8, 192.0.2.8]
  fresh: [5.6.7.8]
rules:
  - name: ping
    match: {icmp_type: echo-request}
    action: accept
  - name: established
    match: {state: established}
    action: accept
  - name: ssh
    match: {proto: tcp, src: $admins, dport: 22}
    action: accept
  - name: web
    hook: input
    match: {proto: tcp, dport: 443}
    action: drop
    log: true
  - name: new-rule
    match: {src: $fresh}
    action: drop
`

func TestCompare(t *testing.T) {
	got := Compare(load(t, oldPolicy), load(t, newPolicy))
	var lines []string
	for _, c := range got {
		lines = append(lines, c.String())
	}
	want := []string{
		"mode: enforce -> audit",
		"default input: drop -> reject",
		"default log: false -> true",
		"on_error output: accept -> drop",
		"set $admins changed (+192.0.2.8 -192.0.2.7)",
		"set $fresh added (1 entries)",
		"set $gone removed",
		"rule \"ping\" moved (rule 5 of 5 -> rule 1 of 5) [line 9]",
		"rule \"ssh\" changed: match.src [line 15]",
		"rule \"web\" changed: hook, match.dport, action, log (action accept -> drop) [line 18]",
		"rule \"new-rule\" added [line 23]",
		"rule \"old-rule\" removed [line 16]",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if same := Compare(load(t, oldPolicy), load(t, oldPolicy)); len(same) != 0 {
		t.Errorf("a policy differs from itself: %v", same)
	}
}

func TestCompareCapture(t *testing.T) {
	mk := func(src string, sport, dport uint16, flags uint8) []byte {
		b, err := packet.Build(packet.Spec{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("192.0.2.1"), Proto: packet.ProtoTCP,
			SrcPort: sport, DstPort: dport, TCPFlags: flags})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	file := rawpcap.Packets(
		mk("192.0.2.7", 4000, 22, packet.TCPSyn),     // ssh from the old admin: accept -> reject (audit: accept, rule default)
		mk("198.51.100.1", 4001, 80, packet.TCPSyn),  // web 80: accept -> reject by default
		mk("198.51.100.1", 4001, 80, packet.TCPAck),  // same flow, new policy: still no established flow
		mk("198.51.100.2", 4002, 443, packet.TCPSyn), // web 443: accept -> drop, same rule (audit: accept)
		mk("198.51.100.3", 4003, 25, packet.TCPSyn),  // default both: drop -> reject (audit: accept)
	)
	prog := func(src string) *policies.Program {
		p, err := policies.Compile(load(t, src))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Without audit, so verdicts show.
	np := strings.Replace(newPolicy, "mode: audit\n", "", 1)
	open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(file)), nil }
	d, err := CompareCapture(prog(oldPolicy), prog(np), open, replay.Options{Hook: nf.HookInput})
	if err != nil {
		t.Fatal(err)
	}
	if d.Packets != 5 || d.VerdictChanged != 5 || d.RuleChanged != 0 || len(d.Changed) != 5 || len(d.Flows) != 4 {
		t.Fatalf("%+v", d)
	}
	c := d.Changed[0]
	if c.N != 1 || c.Old != (Outcome{"accept", "ssh"}) || c.New != (Outcome{"reject", "default"}) || c.Tuple != "tcp 192.0.2.7:4000 -> 192.0.2.1:22" {
		t.Errorf("first change %+v", c)
	}
	if f := d.Flows[0]; f.Packets != 2 || f.Flow != "tcp 192.0.2.1:80 <-> 198.51.100.1:4001" {
		t.Errorf("first flow %+v", f)
	}
	// Same rule name, same verdict: nothing.
	d, err = CompareCapture(prog(oldPolicy), prog(oldPolicy), open, replay.Options{Hook: nf.HookInput})
	if err != nil || len(d.Changed) != 0 || d.Packets != 5 {
		t.Errorf("a policy against itself: %+v %v", d, err)
	}
}
