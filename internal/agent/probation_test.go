package agent

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/pipeline"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
)

func program(t *testing.T, rule string) *policies.Program {
	t.Helper()
	pol, err := policyload.Load("p.yaml", []byte("version: 1\nrules:\n  - name: "+rule+"\n    match: {proto: tcp}\n    action: accept\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policies.Compile(pol)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// probationAgent is an agent with a policy in force and a kernel stand-in
// that records the generations it is moved to.
func probationAgent(t *testing.T, gens *[]uint32) *Agent {
	t.Helper()
	m, err := nf.NewMarks(nf.DefaultMarkMask)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{log: slog.New(slog.NewTextHandler(io.Discard, nil)), gen: 7}
	a.cfg.Rules.Marks = m
	// Long enough never to fire in the test: revert is called by hand.
	a.cfg.ConfirmReloads = time.Hour
	a.shared = pipeline.NewShared(&pipeline.Policy{Program: program(t, "first"), Gen: a.gen}, m, conntrack.New(conntrack.Config{}))
	a.setGeneration = func(g uint32) error { *gens = append(*gens, g); return nil }
	return a
}

// change applies prog as Reload does after loading it.
func change(t *testing.T, a *Agent, prog *policies.Program) uint32 {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.shared.Policy().Program
	if err := a.apply(prog); err != nil {
		t.Fatal(err)
	}
	a.startProbation(prev)
	return a.gen
}

func inForce(a *Agent) string { return a.shared.Policy().Program.RuleName(0) }

func TestProbationReverts(t *testing.T) {
	var gens []uint32
	a := probationAgent(t, &gens)
	g1 := change(t, a, program(t, "second"))
	g2 := change(t, a, program(t, "third")) // piles up: still reverts to "first"
	if !a.Unconfirmed() || inForce(a) != "third" {
		t.Fatalf("unconfirmed %v, in force %q", a.Unconfirmed(), inForce(a))
	}
	a.revert(g1) // the first change's clock: superseded, nothing happens
	if inForce(a) != "third" || a.Reverts() != 0 {
		t.Fatalf("a superseded clock reverted: in force %q, reverts %d", inForce(a), a.Reverts())
	}
	a.revert(g2)
	if inForce(a) != "first" || a.Unconfirmed() || a.Reverts() != 1 {
		t.Errorf("after revert: in force %q, unconfirmed %v, reverts %d; want first, false, 1", inForce(a), a.Unconfirmed(), a.Reverts())
	}
	if len(gens) != 3 || gens[2] == g2 || a.gen != gens[2] {
		t.Errorf("generations %v (now %d): the revert must go live under a new generation", gens, a.gen)
	}
}

func TestConfirmKeepsChange(t *testing.T) {
	var gens []uint32
	a := probationAgent(t, &gens)
	if msg, err := a.Confirm(); err != nil || msg == "" || a.Unconfirmed() {
		t.Fatalf("Confirm with nothing pending: %q, %v", msg, err)
	}
	g := change(t, a, program(t, "second"))
	if _, err := a.Confirm(); err != nil {
		t.Fatal(err)
	}
	a.revert(g) // a clock that fires after the confirm
	if inForce(a) != "second" || a.Unconfirmed() || a.Reverts() != 0 {
		t.Errorf("after confirm: in force %q, unconfirmed %v, reverts %d; want second, false, 0", inForce(a), a.Unconfirmed(), a.Reverts())
	}
	// The next change reverts to the confirmed one, not the first.
	g = change(t, a, program(t, "third"))
	a.revert(g)
	if inForce(a) != "second" {
		t.Errorf("reverted to %q, want the confirmed second", inForce(a))
	}
}

func TestRevertRetriesWhenTheKernelRefuses(t *testing.T) {
	var gens []uint32
	a := probationAgent(t, &gens)
	g := change(t, a, program(t, "second"))
	a.setGeneration = func(uint32) error { return errors.New("netlink busy") }
	a.revert(g)
	a.endProbation() // stop the retry clock
	if a.Reverts() != 0 || !a.Unconfirmed() {
		t.Errorf("a failed revert counted as done: reverts %d, unconfirmed %v", a.Reverts(), a.Unconfirmed())
	}
}
