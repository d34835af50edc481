package pipeline

import (
	"testing"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/testpacket"
)

type fixedCgroup string

func (f fixedCgroup) Cgroup(*packet.Packet, nf.Hook) (string, bool) { return string(f), true }

// TestOwnerMeta: the socket owner the source puts in Meta, and the cgroup
// finder given to Shared, reach the policy; a flow whose first packet had
// no owner is decided again once one has.
func TestOwnerMeta(t *testing.T) {
	const pol = `version: 1
default: {input: accept, output: drop}
rules:
  - {name: root, hook: output, match: {proto: tcp, dport: 8080, uid: 0}, action: accept}
  - {name: svc, hook: output, match: {proto: tcp, dport: 8081, cgroup: system.slice/svc.service}, action: accept}
`
	shared := NewShared(&Policy{Program: compile(t, pol), Gen: 1}, testMarks(t), conntrack.New(conntrack.Config{}))
	w := shared.NewWorker()
	syn := func(sport, dport uint16) []byte {
		return testpacket.Build(t, packet.Spec{Src: client, Dst: server, Proto: packet.ProtoTCP, SrcPort: sport, DstPort: dport, TCPFlags: packet.TCPSyn})
	}
	name := func(r Result) string { return shared.Policy().Program.RuleName(r.Decision.Rule) }

	if r := w.Process(syn(40000, 8080), Meta{Hook: nf.HookOutput, Now: 1}); r.Verdict.Kind == Accept {
		t.Errorf("ownerless SYN to 8080 accepted by %s", name(r))
	}
	if r := w.Process(syn(40000, 8080), Meta{Hook: nf.HookOutput, Now: 2, HasUID: true, UID: 0}); r.Cached || name(r) != "root" {
		t.Errorf("root's SYN: cached=%v rule %s, want a fresh decision by root", r.Cached, name(r))
	}
	if r := w.Process(syn(40001, 8080), Meta{Hook: nf.HookOutput, Now: 3, HasUID: true, UID: 65534}); name(r) != "default" {
		t.Errorf("uid 65534's SYN decided by %s, want the default drop", name(r))
	}

	if r := w.Process(syn(40002, 8081), Meta{Hook: nf.HookOutput, Now: 4}); name(r) != "default" {
		t.Errorf("without a cgroup finder: decided by %s", name(r))
	}
	shared.SetCgroupFinder(fixedCgroup("system.slice/svc.service"))
	if r := w.Process(syn(40003, 8081), Meta{Hook: nf.HookOutput, Now: 5}); name(r) != "svc" {
		t.Errorf("with a cgroup finder: decided by %s, want svc", name(r))
	}
}
