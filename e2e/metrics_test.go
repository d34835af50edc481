package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fwagent/fwagent/internal/metrics"
	"github.com/fwagent/fwagent/internal/testing/eventually"
)

const metricsPolicy = `version: 1
default:
  input: drop
  log: true
rules:
  - name: ssh
    match: {proto: tcp, dport: 2222}
    action: accept
  - name: stream
    match: {proto: udp, dport: 9000}
    action: accept
    offload: false
  - name: telnet
    match: {proto: tcp, dport: 2323}
    action: drop
    log: true
`

// scraper reads an agent's metrics endpoint on a unix socket.
type scraper struct {
	sock string
	c    *metrics.Client
}

func newScraper(sock string) *scraper {
	return &scraper{sock: sock, c: metrics.NewClient("unix", sock, 5*time.Second)}
}

func (s *scraper) get(t *testing.T, path string) (int, string) {
	t.Helper()
	code, b, err := s.c.Get(context.Background(), path)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, s.sock, err)
	}
	return code, string(b)
}

// scrape fetches /metrics and parses it: a scrape that does not parse
// fails the test.
func (s *scraper) scrape(t *testing.T) metricSet {
	t.Helper()
	code, body := s.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: HTTP %d\n%s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

type metricSet map[string]*dto.MetricFamily

// get sums the series of name whose labels include the given name=value
// pairs.
func (m metricSet) get(name string, labels ...string) float64 {
	f := m[name]
	if f == nil {
		return 0
	}
	var v float64
next:
	for _, s := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range s.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case s.Counter != nil:
			v += s.Counter.GetValue()
		case s.Gauge != nil:
			v += s.Gauge.GetValue()
		case s.Histogram != nil:
			v += float64(s.Histogram.GetSampleCount())
		}
	}
	return v
}

// waitMetric scrapes until cond holds on the value of name (bounded: the
// counters move asynchronously, e.g. through NFLOG).
func (s *scraper) waitMetric(t *testing.T, what string, cond func(metricSet) bool) metricSet {
	t.Helper()
	var m metricSet
	if !eventually.True(10*time.Second, 100*time.Millisecond, func() bool {
		m = s.scrape(t)
		return cond(m)
	}) {
		t.Fatalf("metrics never showed %s", what)
	}
	return m
}

// TestMetrics runs the agent with its metrics on a unix socket, sends
// traffic that three rules and the default decide, and checks that a scrape
// parses and its counters moved with the traffic; then that /healthz and
// /readyz are up and `fwagent status` summarises the agent.
func TestMetrics(t *testing.T) {
	n := agentNet(t, 2222, 2323)
	serveUDP(t, n.Server, 9000)
	sock := filepath.Join(t.TempDir(), "metrics.sock")
	a := startAgent(t, n.Server, writePolicy(t, metricsPolicy), "--metrics-addr", "unix:"+sock)
	s := newScraper(sock)

	before := s.scrape(t)
	if g := before.get("fwagent_policy_generation"); g == 0 {
		t.Fatal("no policy generation in the scrape")
	}
	if q := before.get("fwagent_queue_readers"); q != 1 {
		t.Fatalf("%v queue readers, want 1", q)
	}

	dst := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(n.Server.Addr4(), port) }
	tcpEcho(t, n.Client, dst(2222))
	const udpPackets = 20
	for i := range udpPackets {
		if _, err := udpExchange(n.Client, dst(9000), []byte(fmt.Sprintf("packet %d", i)), answerWait); err != nil {
			t.Fatalf("udp %d: %v", i, err)
		}
	}
	if connects(n.Client, dst(2323), 0) {
		t.Fatal("telnet port reachable")
	}
	if _, err := udpExchange(n.Client, dst(9999), []byte("default"), dropWait); err == nil {
		t.Fatal("udp/9999 answered, want the default drop")
	}

	m := s.waitMetric(t, "the drop log events", func(m metricSet) bool { return m.get("fwagent_droplog_events_total") >= 2 })
	checks := []struct {
		what string
		got  float64
		min  float64
	}{
		{"input accepts", m.get("fwagent_packets_total", "hook", "input", "verdict", "accept"), udpPackets + 1},
		{"input drops", m.get("fwagent_packets_total", "hook", "input", "verdict", "drop"), 2},
		{"ssh rule hits", m.get("fwagent_rule_hits_total", "rule", "ssh"), 1},
		{"stream rule hits (not offloaded: every packet)", m.get("fwagent_rule_hits_total", "rule", "stream"), udpPackets},
		{"telnet rule hits", m.get("fwagent_rule_hits_total", "rule", "telnet"), 1},
		{"default hits", m.get("fwagent_default_hits_total"), 1},
		{"packets the kernel queued", m.get("fwagent_queue_kernel_packets_total", "queue", "0"), udpPackets + 3},
		{"flows", m.get("fwagent_flow_inserts_total"), 4},
		{"queue bound", m.get("fwagent_queue_kernel_bound", "queue", "0"), 1},
	}
	for _, c := range checks {
		if c.got < c.min {
			t.Errorf("%s: %v, want at least %v", c.what, c.got, c.min)
		}
	}
	if got := m.get("fwagent_rule_hits_total", "rule", "stream") - before.get("fwagent_rule_hits_total", "rule", "stream"); got < udpPackets {
		t.Errorf("stream hits moved by %v, want at least %d", got, udpPackets)
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := s.get(t, path); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
			t.Errorf("%s: %d %q, want 200 ok", path, code, body)
		}
	}

	out, err := exec.Command(agentBin, "status", "--addr", sock, "--interval", "200ms").CombinedOutput()
	if err != nil {
		t.Fatalf("fwagent status: %v\n%s", err, out)
	}
	for _, want := range []string{"(healthy, ready)", "1 configured, 1 readers running", "top rules:  stream ", "not reloaded since start"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("fwagent status lacks %q:\n%s", want, out)
		}
	}
	t.Logf("fwagent status:\n%s", out)
	if !a.alive() {
		t.Fatalf("agent died: %v", a.waitErr)
	}
}
