package metrics

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeState struct {
	guarded, pickup, unconfirmed bool
	reverts, refusals            uint64
}

func (f *fakeState) Guarded() bool        { return f.guarded }
func (f *fakeState) Pickup() bool         { return f.pickup }
func (f *fakeState) Unconfirmed() bool    { return f.unconfirmed }
func (f *fakeState) Reverts() uint64      { return f.reverts }
func (f *fakeState) TestRefusals() uint64 { return f.refusals }

func TestStateCollector(t *testing.T) {
	s := &fakeState{guarded: true, reverts: 2, refusals: 3}
	var broken error
	h := NewHealth(Check{Name: "x", Fn: func() error { return broken }})
	c := NewStateCollector(s, h, "v1.2.3")
	want := `
# HELP fwagent_healthy 1 while every health check passes (what /healthz says), 0 otherwise.
# TYPE fwagent_healthy gauge
fwagent_healthy 1
# HELP fwagent_policy_reverts_total Policy changes reverted to the last confirmed policy because no confirm came in time.
# TYPE fwagent_policy_reverts_total counter
fwagent_policy_reverts_total 2
# HELP fwagent_policy_test_refusals_total Reloads refused because the new policy's tests failed (the previous policy stays in force).
# TYPE fwagent_policy_test_refusals_total counter
fwagent_policy_test_refusals_total 3
# HELP fwagent_table_guarded 1 while the agent owns its nft table and repairs it; 0 means nothing guards the host's filtering (another agent replaced the table, or the agent is starting or stopping).
# TYPE fwagent_table_guarded gauge
fwagent_table_guarded 1
`
	names := []string{"fwagent_healthy", "fwagent_policy_reverts_total", "fwagent_policy_test_refusals_total", "fwagent_table_guarded"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	broken, s.guarded = errors.New("down"), false
	want = strings.Replace(strings.Replace(want, "\nfwagent_healthy 1\n", "\nfwagent_healthy 0\n", 1), "\nfwagent_table_guarded 1\n", "\nfwagent_table_guarded 0\n", 1)
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c, "fwagent_build_info"); n != 1 {
		t.Errorf("%d build_info series, want 1", n)
	}
}
