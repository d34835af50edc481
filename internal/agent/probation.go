package agent

import (
	"fmt"
	"time"

	"github.com/fwagent/fwagent/policies"
)

// startProbation puts the change just applied on probation: unless Confirm
// comes within ConfirmReloads, revert puts back prev, or the last confirmed
// policy if changes pile up unconfirmed. Each change restarts the clock.
// Callers hold a.mu.
func (a *Agent) startProbation(prev *policies.Program) {
	if a.confirmed == nil {
		a.confirmed = prev // the policy in force until now was confirmed
	}
	if a.probation != nil {
		a.probation.Stop()
	}
	gen := a.gen
	a.probation = time.AfterFunc(a.cfg.ConfirmReloads, func() { a.revert(gen) })
	a.unconfirmed.Store(true)
	a.log.Warn("policy change on probation: it reverts unless confirmed", "generation", gen,
		"within", a.cfg.ConfirmReloads.String(), "confirm_with", "fwagent confirm --control-socket "+a.cfg.ControlSocket)
}

// revert puts the last confirmed policy back if generation gen, the change
// on probation, is still in force unconfirmed.
func (a *Agent) revert(gen uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.confirmed == nil || a.gen != gen {
		return // confirmed, or superseded by a later change with its own clock
	}
	if err := a.apply(a.confirmed); err != nil {
		a.log.Error("cannot revert the unconfirmed policy change; retrying", "err", err)
		a.probation = time.AfterFunc(time.Second, func() { a.revert(gen) })
		return
	}
	a.confirmed, a.probation = nil, nil
	a.unconfirmed.Store(false)
	a.reverts.Add(1)
	a.log.Warn("policy change not confirmed in time: reverted to the last confirmed policy (the file on disk still holds the change; the next reload applies it again)",
		"unconfirmed_generation", gen, "generation", a.gen, "rules", a.shared.Policy().Program.NumRules())
}

// Confirm makes the policy in force the confirmed one (the control
// socket's "confirm").
func (a *Agent) Confirm() (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.confirmed == nil {
		return fmt.Sprintf("nothing to confirm: generation %d is in force and confirmed", a.gen), nil
	}
	a.probation.Stop()
	a.confirmed, a.probation = nil, nil
	a.unconfirmed.Store(false)
	a.log.Info("policy change confirmed", "generation", a.gen)
	return fmt.Sprintf("confirmed generation %d", a.gen), nil
}

// endProbation stops a pending revert when the agent stops.
func (a *Agent) endProbation() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.probation != nil {
		a.probation.Stop()
		a.probation = nil
	}
}

// The agent's state for metrics.AgentState.

func (a *Agent) Guarded() bool        { return a.guarded.Load() }
func (a *Agent) Pickup() bool         { return a.pickupOpen.Load() }
func (a *Agent) Unconfirmed() bool    { return a.unconfirmed.Load() }
func (a *Agent) Reverts() uint64      { return a.reverts.Load() }
func (a *Agent) TestRefusals() uint64 { return a.testRefusals.Load() }
