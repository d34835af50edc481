package metrics

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// AgentState is what the agent itself reports about its safety nets: the
// table guard, the start-up pickup window, changes on probation and
// policies refused for their tests.
type AgentState interface {
	// Guarded: the agent owns the nft table and its guard repairs it.
	Guarded() bool
	// Pickup: the start-up pickup window is open.
	Pickup() bool
	// Unconfirmed: a policy change is on probation (--confirm-reloads).
	Unconfirmed() bool
	// Reverts counts changes reverted because no confirm came.
	Reverts() uint64
	// TestRefusals counts reloads refused because the new policy's tests
	// failed.
	TestRefusals() uint64
}

// StateCollector reports AgentState, the health checks as one gauge and
// the build.
type StateCollector struct {
	state   AgentState
	health  *Health
	version string
}

// NewStateCollector reports s and h (either may be nil); version is the
// agent's version string.
func NewStateCollector(s AgentState, h *Health, version string) *StateCollector {
	return &StateCollector{state: s, health: h, version: version}
}

var (
	descBuildInfo   = desc("build_info", "Always 1; the labels say which build runs.", "version", "revision", "goversion")
	descHealthy     = desc("healthy", "1 while every health check passes (what /healthz says), 0 otherwise.")
	descGuarded     = desc("table_guarded", "1 while the agent owns its nft table and repairs it; 0 means nothing guards the host's filtering (another agent replaced the table, or the agent is starting or stopping).")
	descPickup      = desc("pickup_window_open", "1 while the start-up pickup window counts mid-stream TCP packets of unknown flows as established.")
	descUnconfirmed = desc("policy_unconfirmed", "1 while a policy change waits for `fwagent confirm` (--confirm-reloads).")
	descReverts     = desc("policy_reverts_total", "Policy changes reverted to the last confirmed policy because no confirm came in time.")
	descTestRefused = desc("policy_test_refusals_total", "Reloads refused because the new policy's tests failed (the previous policy stays in force).")
)

// Describe sends every metric's description.
func (c *StateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuildInfo, descHealthy, descGuarded, descPickup, descUnconfirmed, descReverts, descTestRefused} {
		ch <- d
	}
}

// Collect reads the state once.
func (c *StateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge(ch, descBuildInfo, 1, c.version, revision(), runtime.Version())
	if c.health != nil {
		gauge(ch, descHealthy, b2f(len(c.health.Problems()) == 0))
	}
	if s := c.state; s != nil {
		gauge(ch, descGuarded, b2f(s.Guarded()))
		gauge(ch, descPickup, b2f(s.Pickup()))
		gauge(ch, descUnconfirmed, b2f(s.Unconfirmed()))
		counter(ch, descReverts, s.Reverts())
		counter(ch, descTestRefused, s.TestRefusals())
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// revision is the VCS revision the binary was built from, "" if unknown.
func revision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return ""
}
