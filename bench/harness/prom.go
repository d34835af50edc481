package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fwagent/fwagent/internal/metrics"
)

// parsePromCounters reads Prometheus text exposition and sums, per metric
// name, the samples of the names that start with prefix (labels ignored),
// with the prefix and a "_total" suffix cut off.
func parsePromCounters(b []byte, prefix string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if i := strings.IndexByte(line, '{'); i >= 0 && i < len(name) {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			name, rest, ok = line[:i], strings.TrimSpace(line[j+1:]), true
		}
		if !ok || !validMetricName(name) {
			continue
		}
		// A sample may carry a timestamp after the value.
		val, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		out[strings.TrimSuffix(strings.TrimPrefix(name, prefix), "_total")] += v
	}
	return out
}

// validMetricName reports whether s is a Prometheus metric name,
// [a-zA-Z_:][a-zA-Z0-9_:]*.
func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// scrapeUnix fetches /metrics from a server listening on a unix socket.
func scrapeUnix(ctx context.Context, path string) ([]byte, error) {
	c := metrics.NewClient("unix", path, 5*time.Second)
	defer c.Close()
	code, b, err := c.Get(ctx, "/metrics")
	if err != nil {
		return nil, fmt.Errorf("e2e: scrape %s: %w", path, err)
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("e2e: scrape %s: HTTP %d", path, code)
	}
	return b, nil
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
