// Package status renders what `fwagent status` prints about a running
// agent from its health answers and one or two scrapes of its /metrics.
package status

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fwagent/fwagent/internal/metrics"
)

// Report is what `fwagent status` prints, from two scrapes Elapsed apart
// (After nil: totals only).
type Report struct {
	Addr           string
	Healthy, Ready bool
	// Health is the body of /healthz, printed when the agent is unhealthy.
	Health        string
	Before, After map[string]*dto.MetricFamily
	Elapsed       time.Duration
	// Top is how many rules to list by hits (0: no rules line).
	Top int
	// Now is when the report is made, for the age of the last reload.
	Now time.Time
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
func (r *Report) latest() map[string]*dto.MetricFamily {
	if r.After != nil {
		return r.After
	}
	return r.Before
}

// rate is the per-second increase of the matching series between the
// scrapes; ok is false without a second scrape.
func (r *Report) rate(name string, want map[string]string) (float64, bool) {
	if r.After == nil || r.Elapsed <= 0 {
		return 0, false
	}
	a, _ := sum(r.Before, name, want)
	b, _ := sum(r.After, name, want)
	return max(b-a, 0) / r.Elapsed.Seconds(), true
}

func (r *Report) value(name string, want map[string]string) float64 {
	v, _ := sum(r.latest(), name, want)
	return v
}

// Write prints the report, one line per subject.
func (r *Report) Write(w io.Writer) {
	r.writeAgent(w)
	r.writeSafety(w)
	r.writeQueues(w)
	r.writePackets(w)
	if r.Top > 0 {
		r.writeTopRules(w)
	}
	fmt.Fprintf(w, "flows:      %.0f tracked, %.0f evicted, %.0f invalid\n",
		r.value("fwagent_flows", nil), r.value("fwagent_flow_evictions_total", nil), r.value("fwagent_flow_invalid_total", nil))
	fmt.Fprintf(w, "drop log:   %.0f events, %.0f shed, %.0f lost\n",
		r.value("fwagent_droplog_events_total", nil), r.value("fwagent_droplog_shed_total", nil), r.value("fwagent_droplog_lost_total", nil))
	r.writePolicy(w)
}

// writeAgent prints the address, health and readiness, and why the agent
// is unhealthy if it is.
func (r *Report) writeAgent(w io.Writer) {
	state := "healthy"
	if !r.Healthy {
		state = "UNHEALTHY"
	}
	if r.Ready {
		state += ", ready"
	} else {
		state += ", not ready"
	}
	fmt.Fprintf(w, "agent:      %s (%s)\n", r.Addr, state)
	if !r.Healthy {
		for _, l := range strings.Split(r.Health, "\n") {
			fmt.Fprintf(w, "            %s\n", l)
		}
	}
}

// writeQueues prints the queues and readers, each queue's kernel side,
// and the overruns and fail-open passes if there were any.
func (r *Report) writeQueues(w io.Writer) {
	line := fmt.Sprintf("%.0f configured, %.0f readers running", r.value("fwagent_queues", nil), r.value("fwagent_queue_readers", nil))
	for _, s := range series(r.latest(), "fwagent_queue_kernel_bound") {
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
}

// writePackets prints packets by verdict: rates with two scrapes, totals
// with one.
func (r *Report) writePackets(w io.Writer) {
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
	if r.After != nil {
		head = "packets/s: "
	}
	fmt.Fprintf(w, "%s %s (%.0f decided in all)\n", head, strings.Join(parts, ", "), r.value("fwagent_packets_total", nil))
}

// writeTopRules prints the Top rules with the most hits, the hook
// defaults counted as one "(default)" rule.
func (r *Report) writeTopRules(w io.Writer) {
	type hit struct {
		rule string
		n    float64
		rate float64
	}
	m := r.latest()
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
	for _, h := range hits[:min(r.Top, len(hits))] {
		if h.n == 0 {
			break
		}
		p := fmt.Sprintf("%s %.0f", h.rule, h.n)
		if r.After != nil {
			p += fmt.Sprintf(" (%s/s)", formatRate(h.rate))
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		parts = []string{"none yet"}
	}
	fmt.Fprintf(w, "top rules:  %s\n", strings.Join(parts, ", "))
}

// writePolicy prints the policy generation and size, and how the last
// reload went.
func (r *Report) writePolicy(w io.Writer) {
	ok := r.value("fwagent_policy_reloads_total", map[string]string{"result": "ok"})
	failed := r.value("fwagent_policy_reloads_total", map[string]string{"result": "error"})
	policy := fmt.Sprintf("generation %.0f, %.0f rules", r.value("fwagent_policy_generation", nil), r.value("fwagent_policy_rules", nil))
	switch ts := r.value("fwagent_policy_last_reload_timestamp_seconds", nil); {
	case ts == 0:
		policy += "; not reloaded since start"
	default:
		when := time.Unix(0, int64(ts*1e9))
		ago := r.Now.Sub(when).Round(time.Second)
		if r.value("fwagent_policy_last_reload_success", nil) == 1 {
			policy += fmt.Sprintf("; last reload ok %s ago", ago)
		} else {
			msg := "?"
			if s := series(r.latest(), "fwagent_policy_last_reload_error_info"); len(s) > 0 {
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
