package policyload

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policytest"
)

// FuzzLoad feeds arbitrary bytes to the loader: it must never panic, and
// must return either a policy that compiles and runs, or an *Error with a
// real position. The corpus in testdata/fuzz/FuzzLoad holds more seeds,
// among them the policy of the engine's TestDecide.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(head + "sets:\n  a: {file: s.txt}\nrules:\n  - {name: x, match: {src: $a}, action: drop}\n"))
	f.Add([]byte(head + "rules:\n  - name: a\n    match: {src: 10.0.0.1/8}\n    action: drop\n"))
	f.Add([]byte(head + "sets:\n  u: [root, nobody]\nrules:\n  - {name: o, hook: output, match: {uid: [$u, \"!1-9\"], gid: 0, cgroup: [\"a/*\", /b/]}, action: drop}\n" +
		"tests:\n  - {packet: {hook: output, uid: root, gid: 0, cgroup: a/x}, expect: drop}\n"))
	files := fakeFiles(map[string]string{"s.txt": "10.0.0.0/8\n# c\n  192.0.2.1\n"})
	pkts := []*policies.Input{
		{Pkt: tcpPacket(22)},
		{Pkt: &packet.Packet{Family: packet.IPv6, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), Proto: 17, HasL4: true, Length: 60, SrcPort: 53, DstPort: 53}, Hook: nf.HookOutput, State: nf.StateEstablished},
		{Pkt: &packet.Packet{Family: packet.IPv4, Src: netip.MustParseAddr("1.1.1.1"), Dst: netip.MustParseAddr("2.2.2.2"), Proto: 1, HasL4: true, ICMPType: 8}, Hook: nf.HookForward, InIf: "eth0"},
		{Pkt: tcpPacket(443), Hook: nf.HookOutput, HasUID: true, UID: 0, HasGID: true, GID: 0, Cgroups: policytest.FixedCgroup("a/x")},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pol, err := Load("f.yaml", data, files)
		if err != nil {
			var pe *policies.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is a %T, want *Error", err, err)
			}
			errs := policies.Errors(err)
			if len(errs) == 0 || len(errs) > policies.MaxErrors {
				t.Fatalf("%d errors", len(errs))
			}
			for _, pe := range errs {
				if pe.File == "" || pe.Line < 1 || pe.Col < 1 || pe.Msg == "" || pe == errSkip {
					t.Fatalf("error without a position: %#v", pe)
				}
			}
			if pol != nil {
				t.Fatal("a policy together with an error")
			}
			return
		}
		prog, err := policies.Compile(pol)
		if err != nil {
			var pe *policies.Error
			if !errors.As(err, &pe) {
				t.Fatalf("compile error %v is a %T, want *Error", err, err)
			}
			return
		}
		policytest.Run(prog)
		for _, in := range pkts {
			d := prog.Decide(in)
			if d.Rule != policies.NoRule && (d.Rule < 0 || int(d.Rule) >= prog.NumRules()) {
				t.Fatalf("decision names rule %d of %d", d.Rule, prog.NumRules())
			}
		}
	})
}

// FuzzSetFile feeds arbitrary bytes as a set file: errors must point into
// the set file with a real position.
func FuzzSetFile(f *testing.F) {
	f.Add([]byte("# bogons\n0.0.0.0/8\n  10.0.0.0/8 # private\n"))
	f.Add([]byte("80\n443\n8000-8099\n"))
	f.Add([]byte("*.ads.example\ntracker.example.\n"))
	f.Add([]byte("10.0.0.1/8\n"))
	f.Add([]byte("\xef\xbb\xbf2001:db8::/32\r\n"))
	policy := []byte(head + "sets:\n  s: {file: s.txt}\nrules:\n  - {name: a, match: {src: $s}, action: drop}\n")
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Load("p.yaml", policy, fakeFiles(map[string]string{"s.txt": string(data)}))
		if err == nil {
			return
		}
		var pe *policies.Error
		if !errors.As(err, &pe) {
			t.Fatalf("error %v is a %T, want *Error", err, err)
		}
		if pe.Line < 1 || pe.Col < 1 {
			t.Fatalf("error without a position: %#v", pe)
		}
		if pe.File == "s.txt" {
			lines := bytes.Count(data, []byte("\n")) + 1
			if pe.Line > lines {
				t.Fatalf("error at line %d of a %d-line file: %v", pe.Line, lines, pe)
			}
		}
	})
}

// tcpPacket is a TCP packet from 10.1.2.3:1000 to 5.6.7.8:dport.
func tcpPacket(dport uint16) *packet.Packet {
	return &packet.Packet{Family: packet.IPv4, Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("5.6.7.8"), Proto: 6, HasL4: true, Length: 60, SrcPort: 1000, DstPort: dport}
}
