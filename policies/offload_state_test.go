package policies_test

import (
	"testing"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

// TestOffloadState pins when a decision that involved `state` may offload:
// only when it holds for every later packet of the kernel's conntrack entry
// that the offload rule would accept (new until a reply, then established,
// never back). The first two cases are #13's minimal cases: the old code
// offloaded both, and the kernel-only reference then dropped (or decided)
// the established rest of the flow differently.
func TestOffloadState(t *testing.T) {
	tests := []struct {
		name    string
		policy  string
		state   nf.State
		rule    string
		action  policies.Action
		offload bool
	}{
		{"default accept after a rule skipped for its state", `version: 1
default: {input: accept}
rules:
  - {name: est-drop, match: {proto: tcp, state: established}, action: drop}
`, nf.StateNew, "default", policies.ActionAccept, false},
		{"the established packet then meets est-drop", `version: 1
default: {input: accept}
rules:
  - {name: est-drop, match: {proto: tcp, state: established}, action: drop}
`, nf.StateEstablished, "est-drop", policies.ActionDrop, false},
		{"accept of state new", `version: 1
rules:
  - {name: new-only, match: {state: new}, action: accept}
`, nf.StateNew, "new-only", policies.ActionAccept, false},
		{"accept of new and established", `version: 1
rules:
  - {name: both, match: {state: [new, established]}, action: accept}
`, nf.StateNew, "both", policies.ActionAccept, true},
		{"accept of established", `version: 1
rules:
  - {name: est, match: {state: established}, action: accept}
`, nf.StateEstablished, "est", policies.ActionAccept, true},
		{"skipped quiet accept of established ends the same", `version: 1
rules:
  - {name: est, match: {state: [established, related]}, action: accept}
  - {name: web, match: {proto: tcp, dport: 80}, action: accept}
`, nf.StateNew, "web", policies.ActionAccept, true},
		{"skipped logged accept of established does not", `version: 1
rules:
  - {name: est, match: {state: established}, action: accept, log: true}
  - {name: web, match: {proto: tcp, dport: 80}, action: accept}
`, nf.StateNew, "web", policies.ActionAccept, false},
		{"skipped accept that keeps seeing packets does not", `version: 1
rules:
  - {name: est, match: {state: established}, action: accept, offload: false}
  - {name: web, match: {proto: tcp, dport: 80}, action: accept}
`, nf.StateNew, "web", policies.ActionAccept, false},
		{"skipped drop of invalid never matters", `version: 1
rules:
  - {name: invalid, match: {state: invalid}, action: drop}
  - {name: web, match: {proto: tcp, dport: 80}, action: accept}
`, nf.StateNew, "web", policies.ActionAccept, true},
		{"related packets never offload", `version: 1
default: {input: accept}
`, nf.StateRelated, "default", policies.ActionAccept, false},
		{"invalid packets never offload", `version: 1
default: {input: accept}
`, nf.StateInvalid, "default", policies.ActionAccept, false},
		{"an established decision skipping a new-only rule", `version: 1
default: {input: accept}
rules:
  - {name: new-drop, match: {proto: tcp, state: new}, action: drop}
`, nf.StateEstablished, "default", policies.ActionAccept, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog := mustCompile(t, tt.policy)
			p := pk(packet.ProtoTCP, "1.2.3.4", "5.6.7.8", 40000, 80)
			if tt.state != nf.StateNew {
				p.TCPFlags = packet.TCPAck
			}
			d := prog.Decide(&policies.Input{Pkt: p, Hook: nf.HookInput, State: tt.state})
			if got := prog.RuleName(d.Rule); got != tt.rule || d.Action != tt.action || d.Offload != tt.offload {
				t.Errorf("decided %s by %s offload %v, want %s by %s offload %v", d.Action, got, d.Offload, tt.action, tt.rule, tt.offload)
			}
		})
	}
}
