package pipeline

import (
	"testing"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/policies"
)

// TestAuditCountedApart: an audit decision is accepted by the kernel, but
// counted under what enforcing would have done, never as accept.
func TestAuditCountedApart(t *testing.T) {
	var c Counters
	for _, d := range []policies.Decision{
		{Action: policies.ActionDrop, Audit: true},
		{Action: policies.ActionReject, Audit: true},
		{Action: policies.ActionReject, Audit: true},
		{Action: policies.ActionAccept, Audit: true},
		{Action: policies.ActionDrop},
	} {
		c.add(&Result{Decision: d}, nf.HookInput, 1)
	}
	got := c.snapshot().Packets[nf.HookInput]
	want := [numOutcomes]uint64{OutAccept: 1, OutDrop: 1, OutWouldDrop: 1, OutWouldReject: 2}
	if got != want {
		t.Errorf("counted %v, want %v", got, want)
	}
	if OutWouldDrop.String() != "would_drop" || OutWouldReject.String() != "would_reject" {
		t.Errorf("labels %q %q", OutWouldDrop, OutWouldReject)
	}
}
