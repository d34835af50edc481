package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/status"

	"github.com/fwagent/fwagent/internal/testing/promtext"
)

// fakeMetrics renders an agent's /metrics after n scrapes: counters grow by
// a fixed step per scrape.
func fakeMetrics(n int) string {
	return fmt.Sprintf(`# TYPE fwagent_packets_total counter
fwagent_packets_total{hook="input",verdict="accept"} %d
fwagent_packets_total{hook="input",verdict="drop"} %d
fwagent_packets_total{hook="input",verdict="reject"} 0
fwagent_packets_total{hook="output",verdict="accept"} 100
# TYPE fwagent_rule_hits_total counter
fwagent_rule_hits_total{rule="ssh"} %d
fwagent_rule_hits_total{rule="web"} %d
fwagent_rule_hits_total{rule="idle"} 0
# TYPE fwagent_default_hits_total counter
fwagent_default_hits_total %d
# TYPE fwagent_queues gauge
fwagent_queues 2
# TYPE fwagent_queue_readers gauge
fwagent_queue_readers 2
# TYPE fwagent_queue_kernel_bound gauge
fwagent_queue_kernel_bound{queue="0"} 1
fwagent_queue_kernel_bound{queue="1"} 1
# TYPE fwagent_queue_kernel_waiting gauge
fwagent_queue_kernel_waiting{queue="0"} 3
fwagent_queue_kernel_waiting{queue="1"} 0
# TYPE fwagent_queue_kernel_dropped_total counter
fwagent_queue_kernel_dropped_total{queue="0",reason="queue_full"} 0
fwagent_queue_kernel_dropped_total{queue="0",reason="socket"} 0
fwagent_queue_kernel_dropped_total{queue="1",reason="queue_full"} 7
fwagent_queue_kernel_dropped_total{queue="1",reason="socket"} 0
# TYPE fwagent_flows gauge
fwagent_flows 42
# TYPE fwagent_flow_evictions_total counter
fwagent_flow_evictions_total 1
# TYPE fwagent_flow_invalid_total counter
fwagent_flow_invalid_total 2
# TYPE fwagent_droplog_events_total counter
fwagent_droplog_events_total %d
# TYPE fwagent_droplog_shed_total counter
fwagent_droplog_shed_total 0
# TYPE fwagent_droplog_lost_total counter
fwagent_droplog_lost_total 0
# TYPE fwagent_policy_generation gauge
fwagent_policy_generation 17
# TYPE fwagent_policy_rules gauge
fwagent_policy_rules 3
# TYPE fwagent_policy_reloads_total counter
fwagent_policy_reloads_total{result="ok"} 4
fwagent_policy_reloads_total{result="error"} 1
# TYPE fwagent_policy_last_reload_timestamp_seconds gauge
fwagent_policy_last_reload_timestamp_seconds 1.7e9
# TYPE fwagent_policy_last_reload_success gauge
fwagent_policy_last_reload_success 0
# TYPE fwagent_policy_last_reload_error_info gauge
fwagent_policy_last_reload_error_info{error="p.yaml:7:3: unknown key \"actoin\""} 1
`, 1000+200*n, 10+5*n, 900+150*n, 50+50*n, 10+5*n, 10+5*n)
}

func TestStatusReport(t *testing.T) {
	r := status.Report{
		Addr:    "127.0.0.1:9109",
		Healthy: true,
		Ready:   true,
		Before:  promtext.Parse(t, fakeMetrics(0)),
		After:   promtext.Parse(t, fakeMetrics(2)),
		Elapsed: 2 * time.Second,
		Top:     2,
		Now:     time.Unix(1_700_000_090, 0),
	}
	var out bytes.Buffer
	r.Write(&out)
	want := `agent:      127.0.0.1:9109 (healthy, ready)
queues:     2 configured, 2 readers running; queue 0: 3 waiting, 0 dropped full, 0 dropped socket; queue 1: 0 waiting, 7 dropped full, 0 dropped socket
packets/s:  accept 200/s, drop 5.0/s, reject 0.00/s (1520 decided in all)
top rules:  ssh 1200 (150/s), web 150 (50.0/s)
flows:      42 tracked, 1 evicted, 2 invalid
drop log:   20 events, 0 shed, 0 lost
policy:     generation 17, 3 rules; last reload FAILED 1m30s ago, the previous policy stays in force: p.yaml:7:3: unknown key "actoin" (4 ok, 1 failed)
`
	if out.String() != want {
		t.Fatalf("report:\n%s\nwant:\n%s", out.String(), want)
	}

	// One scrape: totals, not rates; the default shows among the rules.
	r.After, r.Top = nil, 5
	out.Reset()
	r.Write(&out)
	for _, line := range []string{
		"packets:    accept 1100, drop 10, reject 0 (1110 decided in all)",
		"top rules:  ssh 900, web 50, (default) 10",
	} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("report without rates lacks %q:\n%s", line, out.String())
		}
	}
}

// fakeAgent serves /metrics, /healthz and /readyz like an agent.
func fakeAgent(t *testing.T, healthy *atomic.Bool) http.Handler {
	t.Helper()
	var scrapes atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, fakeMetrics(int(scrapes.Add(1))))
	})
	health := func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "queues: 1 of 2 queue readers running")
			return
		}
		fmt.Fprintln(w, "ok")
	}
	mux.HandleFunc("GET /healthz", health)
	mux.HandleFunc("GET /readyz", health)
	return mux
}

func runStatus(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetArgs(append([]string{"status"}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestStatusCommand(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	tcp := httptest.NewServer(fakeAgent(t, &healthy))
	t.Cleanup(tcp.Close)

	sock := filepath.Join(t.TempDir(), "fwagent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	unix := &httptest.Server{Listener: ln, Config: &http.Server{Handler: fakeAgent(t, &healthy)}}
	unix.Start()
	t.Cleanup(unix.Close)

	for _, addr := range []string{strings.TrimPrefix(tcp.URL, "http://"), "unix:" + sock, sock} {
		out, err := runStatus(t, "--addr", addr, "--interval", "10ms")
		if err != nil {
			t.Fatalf("%s: %v\n%s", addr, err, out)
		}
		for _, want := range []string{"(healthy, ready)", "packets/s:  accept ", "top rules:  ssh ", "generation 17", `unknown key "actoin"`} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %q:\n%s", addr, want, out)
			}
		}
	}

	healthy.Store(false)
	out, err := runStatus(t, "--addr", sock, "--interval", "0")
	var ee exitError
	if !errors.As(err, &ee) || ee.code != exitFailed {
		t.Fatalf("unhealthy agent: err %v, want exit %d", err, exitFailed)
	}
	if !strings.Contains(out, "UNHEALTHY") || !strings.Contains(out, "1 of 2 queue readers running") {
		t.Fatalf("unhealthy agent: output does not say why:\n%s", out)
	}
}

func TestStatusErrors(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		usage bool
	}{
		{"nobody there", []string{"--addr", "unix:" + filepath.Join(t.TempDir(), "none.sock"), "--interval", "0"}, false},
		{"metrics off", []string{"--addr", "off"}, true},
		{"bad address", []string{"--addr", "localhost"}, true},
		{"negative interval", []string{"--addr", "/x.sock", "--interval", "-1s"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runStatus(t, tt.args...)
			var ue usageError
			if err == nil || errors.As(err, &ue) != tt.usage {
				t.Fatalf("err %v, want an error (usage=%v)", err, tt.usage)
			}
		})
	}
}
