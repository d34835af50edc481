package rules

import (
	"bytes"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// ownership is what the kernel's `inet fwagent` table is to this Table.
type ownership int

const (
	tableGone     ownership = iota // no such table (or none of our chains)
	tableOurs                      // it carries our generation's offload rule
	tableReplaced                  // another agent's: a different generation
)

// owner tells whether the table in the kernel is still the one this Table
// installed. Two agents never share the table name peacefully: a second one
// replaces the first's table at start (stale-table removal). The first must
// then neither delete the second's table on its way out nor rebuild its own
// over it, or the host ends up unfiltered or filtered by the wrong agent.
// The offload rule (in a stateless table, the verdicts chain's offload-set
// rule) carries the random policy generation, which tells the two
// apart (a chance of 1 in Marks.MaxGen() that two agents drew the same one).
// Callers hold t.mu.
func (t *Table) owner() (ownership, error) {
	if len(t.chains) == 0 {
		return tableGone, nil
	}
	ic := t.chains[0]
	got, err := t.conn.GetRules(t.table, ic.chain)
	if err != nil {
		if isErrno(err, unix.ENOENT) {
			return tableGone, nil
		}
		return tableGone, fmt.Errorf("rules: read chain %s: %w", ic.chain.Name, err)
	}
	stateful := offloadRules(t.cfg, ic.hook)[offOrig].stmts[0].(maskedCmp)
	if own, found := carriesGeneration(got, RuleOffload, u32(stateful.value)); found {
		return own, nil
	}
	// A stateless table carries the generation in its verdicts chain.
	for _, r := range got {
		if name, _ := userdata.GetString(r.UserData, userdata.TypeComment); name != RuleVerdicts {
			continue
		}
		vr, err := t.conn.GetRules(t.table, &nftables.Chain{Name: verdictsChain(ic.hook), Table: t.table})
		if err != nil {
			if isErrno(err, unix.ENOENT) {
				return tableReplaced, nil
			}
			return tableGone, fmt.Errorf("rules: read chain %s: %w", verdictsChain(ic.hook), err)
		}
		if own, found := carriesGeneration(vr, RuleOffloadSet, u32(t.cfg.Marks.OffloadRequest(t.cfg.generation()))); found {
			return own, nil
		}
		return tableReplaced, nil
	}
	if len(got) == 0 {
		return tableGone, nil // flushed: rebuild it
	}
	// Our layouts always carry the generation: rules without it are not
	// ours (an operator's or another version's).
	return tableReplaced, nil
}

// carriesGeneration finds the rule named name in rs and tells whether it
// compares with want (ours) or something else (another agent's).
func carriesGeneration(rs []*nftables.Rule, name string, want []byte) (ownership, bool) {
	for _, r := range rs {
		if n, _ := userdata.GetString(r.UserData, userdata.TypeComment); n != name {
			continue
		}
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Cmp); ok && bytes.Equal(c.Data, want) {
				return tableOurs, true
			}
		}
		return tableReplaced, true
	}
	return tableGone, false
}
