package harness

import (
	"context"
	"fmt"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fwagent/fwagent/internal/metrics"
)

// promCounters sums, per metric family whose name starts with prefix, its
// counter, gauge and untyped samples (labels ignored), keyed by the name
// with the prefix and a "_total" suffix cut off.
func promCounters(fams map[string]*dto.MetricFamily, prefix string) map[string]float64 {
	out := map[string]float64{}
	for name, f := range fams {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		key := strings.TrimSuffix(strings.TrimPrefix(name, prefix), "_total")
		for _, m := range f.Metric {
			if v, ok := metrics.SampleValue(m); ok {
				out[key] += v
			}
		}
	}
	return out
}

// scrapeUnix reads /metrics from a server listening on a unix socket.
func scrapeUnix(ctx context.Context, path string) (map[string]*dto.MetricFamily, error) {
	c := metrics.NewClient("unix", path, 5*time.Second)
	defer c.Close()
	fams, err := c.Scrape(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: scrape %s: %w", path, err)
	}
	return fams, nil
}

// dropLogCounters maps fwagent's drop-log metrics to the names the report
// uses.
func dropLogCounters(m map[string]float64) map[string]uint64 {
	names := map[string]string{
		"droplog_received": "received", "droplog_events": "written", "droplog_shed": "shed",
		"droplog_rate_limited": "limited", "droplog_lost": "lost", "droplog_errors": "errors", "droplog_overruns": "overruns",
	}
	out := map[string]uint64{}
	for metric, key := range names {
		if v, ok := m[metric]; ok {
			out[key] = uint64(v)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
