package status

import (
	"bytes"
	"testing"

	"github.com/fwagent/fwagent/internal/testing/promtext"
)

func TestStatusSafety(t *testing.T) {
	for _, tt := range []struct{ name, metrics, want string }{
		{"older agent", "fwagent_queues 1\n", ""},
		{"guarded", "fwagent_table_guarded 1\nfwagent_pickup_window_open 0\n", "table:      guarded\n"},
		{"unguarded, window open, change waiting", `fwagent_table_guarded 0
fwagent_pickup_window_open 1
fwagent_policy_unconfirmed 1
fwagent_policy_reverts_total 2
fwagent_policy_test_refusals_total 1
`, "table:      NOT GUARDED (another agent replaced the table, or this one is starting or stopping); start-up pickup window open; a policy change awaits `fwagent confirm`; 2 unconfirmed changes reverted; 1 reloads refused by failing tests\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := Report{Before: promtext.Parse(t, tt.metrics)}
			var out bytes.Buffer
			r.writeSafety(&out)
			if out.String() != tt.want {
				t.Errorf("got %q\nwant %q", out.String(), tt.want)
			}
		})
	}
}
