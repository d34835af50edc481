package metrics

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
)

// Check is one health condition: Fn returns nil while it holds.
type Check struct {
	Name string
	Fn   func() error
}

// Health answers /healthz (every check passes) and /readyz (healthy, and
// marked ready: the agent has installed its table and is deciding packets).
type Health struct {
	checks []Check
	ready  atomic.Bool
}

// NewHealth makes a Health over checks; it starts not ready.
func NewHealth(checks ...Check) *Health { return &Health{checks: checks} }

// SetReady marks the agent ready (or, on the way out, not).
func (h *Health) SetReady(ready bool) { h.ready.Store(ready) }

// Problems runs every check and returns one line per failing one.
func (h *Health) Problems() []string {
	var out []string
	for _, c := range h.checks {
		if err := c.Fn(); err != nil {
			out = append(out, fmt.Sprintf("%s: %v", c.Name, err))
		}
	}
	return out
}

func (h *Health) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	respond(w, h.Problems())
}

func (h *Health) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	p := h.Problems()
	if !h.ready.Load() {
		p = append([]string{"not ready: the agent is starting or stopping"}, p...)
	}
	respond(w, p)
}

// respond writes "ok" with 200, or the problems, one a line, with 503.
func respond(w http.ResponseWriter, problems []string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if len(problems) == 0 {
		fmt.Fprintln(w, "ok")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, strings.Join(problems, "\n"))
}
