package status

import (
	"fmt"
	"io"
	"strings"
)

// writeSafety prints whether the agent guards its table, and the safety
// nets in effect: the start-up pickup window and a change on probation.
// Agents that predate these metrics get no line.
func (r *Report) writeSafety(w io.Writer) {
	if _, ok := sum(r.latest(), "fwagent_table_guarded", nil); !ok {
		return
	}
	var parts []string
	if r.value("fwagent_table_guarded", nil) == 1 {
		parts = append(parts, "guarded")
	} else {
		parts = append(parts, "NOT GUARDED (another agent replaced the table, or this one is starting or stopping)")
	}
	if r.value("fwagent_pickup_window_open", nil) == 1 {
		parts = append(parts, "start-up pickup window open")
	}
	if r.value("fwagent_policy_unconfirmed", nil) == 1 {
		parts = append(parts, "a policy change awaits `fwagent confirm`")
	}
	if n := r.value("fwagent_policy_reverts_total", nil); n > 0 {
		parts = append(parts, fmt.Sprintf("%.0f unconfirmed changes reverted", n))
	}
	if n := r.value("fwagent_policy_test_refusals_total", nil); n > 0 {
		parts = append(parts, fmt.Sprintf("%.0f reloads refused by failing tests", n))
	}
	fmt.Fprintf(w, "table:      %s\n", strings.Join(parts, "; "))
}
