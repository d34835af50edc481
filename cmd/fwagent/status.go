package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/spf13/cobra"

	"github.com/fwagent/fwagent/internal/metrics"
)

type statusFlags struct {
	addr     string
	interval time.Duration
	top      int
	timeout  time.Duration
}

func newStatusCmd() *cobra.Command {
	var f statusFlags
	cmd := &cobra.Command{
		Use:   "status [--addr ADDR]",
		Short: "Summarise a running agent: health, queues, packets/s, top rules, flows, policy",
		Long: `Ask a running agent, on its --metrics-addr, how it is doing: health,
queues, packets per second by verdict (two scrapes --interval apart), the
rules with the most hits, tracked flows, the policy generation and the last
reload's result. Exits 1 if the agent is unhealthy or cannot be reached.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", metrics.DefaultAddr, "the agent's --metrics-addr: host:port, unix:PATH or /PATH")
	fl.DurationVar(&f.interval, "interval", time.Second, "time between the two scrapes that give packets/s (0: totals only)")
	fl.IntVar(&f.top, "top", 5, "rules to list by hits")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Second, "timeout per request")
	return cmd
}

func (f *statusFlags) run(ctx context.Context, out io.Writer) error {
	network, address, ok, err := metrics.ParseAddr(f.addr)
	if err != nil {
		return usagef("status: --addr: %v", err)
	}
	if !ok {
		return usagef("status: --addr %q: the agent serves no metrics there", f.addr)
	}
	if f.interval < 0 || f.top < 0 {
		return usagef("status: --interval and --top must not be negative")
	}
	c := metrics.NewClient(network, address, f.timeout)
	defer c.Close()
	healthCode, healthBody, err := c.Get(ctx, "/healthz")
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	readyCode, _, err := c.Get(ctx, "/readyz")
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	first, err := c.Scrape(ctx)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	var second map[string]*dto.MetricFamily
	var elapsed time.Duration
	if f.interval > 0 {
		start := time.Now()
		select {
		case <-time.After(f.interval):
		case <-ctx.Done():
			return ctx.Err()
		}
		if second, err = c.Scrape(ctx); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		elapsed = time.Since(start)
	}
	r := statusReport{
		addr:    f.addr,
		healthy: healthCode == http.StatusOK,
		ready:   readyCode == http.StatusOK,
		health:  string(bytes.TrimSpace(healthBody)),
		before:  first,
		after:   second,
		elapsed: elapsed,
		top:     f.top,
		now:     time.Now(),
	}
	r.write(out)
	if !r.healthy {
		return exitError{exitFailed}
	}
	return nil
}

// statusReport is what `fwagent status` prints, from two scrapes elapsed
// apart (after nil: totals only).
type statusReport struct {
	addr           string
	healthy, ready bool
	health         string
	before, after  map[string]*dto.MetricFamily
	elapsed        time.Duration
	top            int
	now            time.Time
}

// sample is one series: its labels and value.
type sample struct {
	labels map[string]string
	value  float64
}

func series(fams map[string]*dto.MetricFamily, name string) []sample {
	f := fams[name]
	if f == nil {
		return nil
	}
	var out []sample
	for _, m := range f.Metric {
		s := sample{labels: map[string]string{}}
		for _, l := range m.Label {
			s.labels[l.GetName()] = l.GetValue()
		}
		var ok bool
		if s.value, ok = metrics.SampleValue(m); ok {
			out = append(out, s)
		}
	}
	return out
}

// sum adds the series of name whose labels include want.
func sum(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	var total float64
	found := false
	for _, s := range series(fams, name) {
		if matchLabels(s.labels, want) {
			total += s.value
			found = true
		}
	}
	return total, found
}

func matchLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// latest is the second scrape when there is one.
func (r *statusReport) latest() map[string]*dto.MetricFamily {
	if r.after != nil {
		return r.after
	}
	return r.before
}

// rate is the per-second increase of the matching series between the
// scrapes; ok is false without a second scrape.
func (r *statusReport) rate(name string, want map[string]string) (float64, bool) {
	if r.after == nil || r.elapsed <= 0 {
		return 0, false
	}
	a, _ := sum(r.before, name, want)
	b, _ := sum(r.after, name, want)
	return max(b-a, 0) / r.elapsed.Seconds(), true
}

func (r *statusReport) value(name string, want map[string]string) float64 {
	v, _ := sum(r.latest(), name, want)
	return v
}

func (r *statusReport) write(w io.Writer) {
	state := "healthy"
	if !r.healthy {
		state = "UNHEALTHY"
	}
	if r.ready {
		state += ", ready"
	} else {
		state += ", not ready"
	}
	fmt.Fprintf(w, "agent:      %s (%s)\n", r.addr, state)
	if !r.healthy {
		for _, l := range strings.Split(r.health, "\n") {
			fmt.Fprintf(w, "            %s\n", l)
		}
	}
	r.writeSafety(w)
	m := r.latest()

	// Queues.
	line := fmt.Sprintf("%.0f configured, %.0f readers running", r.value("fwagent_queues", nil), r.value("fwagent_queue_readers", nil))
	for _, s := range series(m, "fwagent_queue_kernel_bound") {
		q := s.labels["queue"]
		if s.value == 0 {
			line += fmt.Sprintf("; queue %s NOT BOUND", q)
			continue
		}
		labels := map[string]string{"queue": q}
		line += fmt.Sprintf("; queue %s: %.0f waiting, %.0f dropped full, %.0f dropped socket", q,
			r.value("fwagent_queue_kernel_waiting", labels),
			r.value("fwagent_queue_kernel_dropped_total", map[string]string{"queue": q, "reason": "queue_full"}),
			r.value("fwagent_queue_kernel_dropped_total", map[string]string{"queue": q, "reason": "socket"}))
	}
	if n := r.value("fwagent_queue_enobufs_total", nil); n > 0 {
		line += fmt.Sprintf("; %.0f overruns (ENOBUFS)", n)
	}
	if n := r.value("fwagent_failopen_packets_total", nil); n > 0 {
		line += fmt.Sprintf("; ~%.0f passed fail-open", n)
	}
	fmt.Fprintf(w, "queues:     %s\n", line)

	// Packets.
	verdicts := []string{"accept", "drop", "reject"}
	for _, v := range []string{"would_drop", "would_reject"} {
		if r.value("fwagent_packets_total", map[string]string{"verdict": v}) > 0 {
			verdicts = append(verdicts, v) // audit mode: what enforcing would do
		}
	}
	var parts []string
	for _, v := range verdicts {
		want := map[string]string{"verdict": v}
		if rate, ok := r.rate("fwagent_packets_total", want); ok {
			parts = append(parts, fmt.Sprintf("%s %s/s", v, formatRate(rate)))
		} else {
			parts = append(parts, fmt.Sprintf("%s %.0f", v, r.value("fwagent_packets_total", want)))
		}
	}
	head := "packets:   "
	if r.after != nil {
		head = "packets/s: "
	}
	fmt.Fprintf(w, "%s %s (%.0f decided in all)\n", head, strings.Join(parts, ", "), r.value("fwagent_packets_total", nil))

	// Top rules.
	if r.top > 0 {
		type hit struct {
			rule string
			n    float64
			rate float64
		}
		var hits []hit
		for _, s := range series(m, "fwagent_rule_hits_total") {
			h := hit{rule: s.labels["rule"], n: s.value}
			h.rate, _ = r.rate("fwagent_rule_hits_total", map[string]string{"rule": h.rule})
			hits = append(hits, h)
		}
		if d, ok := sum(m, "fwagent_default_hits_total", nil); ok {
			rate, _ := r.rate("fwagent_default_hits_total", nil)
			hits = append(hits, hit{rule: "(default)", n: d, rate: rate})
		}
		// By rate when there is one, else by total; ties by name.
		slices.SortFunc(hits, func(a, b hit) int {
			return cmp.Or(cmp.Compare(b.rate, a.rate), cmp.Compare(b.n, a.n), strings.Compare(a.rule, b.rule))
		})
		var parts []string
		for _, h := range hits[:min(r.top, len(hits))] {
			if h.n == 0 {
				break
			}
			p := fmt.Sprintf("%s %.0f", h.rule, h.n)
			if r.after != nil {
				p += fmt.Sprintf(" (%s/s)", formatRate(h.rate))
			}
			parts = append(parts, p)
		}
		if len(parts) == 0 {
			parts = []string{"none yet"}
		}
		fmt.Fprintf(w, "top rules:  %s\n", strings.Join(parts, ", "))
	}

	fmt.Fprintf(w, "flows:      %.0f tracked, %.0f evicted, %.0f invalid\n",
		r.value("fwagent_flows", nil), r.value("fwagent_flow_evictions_total", nil), r.value("fwagent_flow_invalid_total", nil))
	fmt.Fprintf(w, "drop log:   %.0f events, %.0f shed, %.0f lost\n",
		r.value("fwagent_droplog_events_total", nil), r.value("fwagent_droplog_shed_total", nil), r.value("fwagent_droplog_lost_total", nil))

	// Policy.
	ok := r.value("fwagent_policy_reloads_total", map[string]string{"result": "ok"})
	failed := r.value("fwagent_policy_reloads_total", map[string]string{"result": "error"})
	policy := fmt.Sprintf("generation %.0f, %.0f rules", r.value("fwagent_policy_generation", nil), r.value("fwagent_policy_rules", nil))
	switch ts := r.value("fwagent_policy_last_reload_timestamp_seconds", nil); {
	case ts == 0:
		policy += "; not reloaded since start"
	default:
		when := time.Unix(0, int64(ts*1e9))
		ago := r.now.Sub(when).Round(time.Second)
		if r.value("fwagent_policy_last_reload_success", nil) == 1 {
			policy += fmt.Sprintf("; last reload ok %s ago", ago)
		} else {
			msg := "?"
			if s := series(m, "fwagent_policy_last_reload_error_info"); len(s) > 0 {
				msg = s[0].labels["error"]
			}
			policy += fmt.Sprintf("; last reload FAILED %s ago, the previous policy stays in force: %s", ago, msg)
		}
		policy += fmt.Sprintf(" (%.0f ok, %.0f failed)", ok, failed)
	}
	fmt.Fprintf(w, "policy:     %s\n", policy)
}

// formatRate prints a rate with a precision that suits its size.
func formatRate(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}
