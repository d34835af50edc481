package metrics

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/droplog"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/pipeline"
	"github.com/fwagent/fwagent/internal/testing/testpolicy"
	"github.com/fwagent/fwagent/verdict"
	"github.com/fwagent/fwagent/verdict/nfqmsg"
)

type fakeEngine struct {
	st verdict.Stats
	b  nfqmsg.CounterSnapshot
	cr uint32
}

func (f *fakeEngine) Stats() verdict.Stats               { return f.st }
func (f *fakeEngine) BatchStats() nfqmsg.CounterSnapshot { return f.b }
func (f *fakeEngine) CopyRange() uint32                  { return f.cr }

type fakeFlows conntrack.Stats

func (f fakeFlows) Stats() conntrack.Stats { return conntrack.Stats(f) }

type fakeLog droplog.Stats

func (f fakeLog) Stats() droplog.Stats { return droplog.Stats(f) }

const testPolicy = `
version: 1
default: {input: drop, output: accept}
rules:
  - name: ssh
    hook: input
    match: {proto: tcp, dport: 22}
    action: accept
  - name: telnet
    hook: input
    match: {proto: tcp, dport: 23}
    action: reject
`

func testShared(t testing.TB) *pipeline.Shared {
	t.Helper()
	prog := testpolicy.Compile(t, "test.yaml", testPolicy)
	marks, err := nf.NewMarks(nf.DefaultMarkMask)
	if err != nil {
		t.Fatal(err)
	}
	return pipeline.NewShared(&pipeline.Policy{Program: prog, Gen: 42}, marks, nil)
}

func send(t testing.TB, w *pipeline.Worker, dport uint16, n int) {
	t.Helper()
	b, err := packet.Build(packet.Spec{
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"),
		Proto: packet.ProtoTCP, SrcPort: 1000, DstPort: dport, TCPFlags: packet.TCPSyn,
	})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		w.Process(b, pipeline.Meta{Hook: nf.HookInput})
	}
}

func TestCollector(t *testing.T) {
	shared := testShared(t)
	w := shared.NewWorker()
	send(t, w, 22, 5)
	send(t, w, 23, 2)
	send(t, w, 9, 3)

	proc := filepath.Join(t.TempDir(), "nfnetlink_queue")
	if err := os.WriteFile(proc, []byte("    0 123456     1 2 65535     0     0       20  1\n    7   9999     0 2 65535     4     5      100  1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reloads := &Reloads{}
	reloads.Record(time.Unix(1700000000, 0), nil)
	reloads.Record(time.Unix(1700000100, 0), errors.New(`p.yaml:3:5: unknown key "actoin"`))
	c := NewCollector(Sources{
		Pipeline: shared,
		Engine:   &fakeEngine{st: verdict.Stats{ENOBUFS: 3, ReadersLive: 1}, b: nfqmsg.CounterSnapshot{Reads: 9, GSO: 4}, cr: 256},
		Flows:    fakeFlows{Flows: 11, Evictions: 2, Invalid: 1},
		DropLog:  fakeLog{Written: 6, Shed: 1, Overruns: 2},
		Reloads:  reloads,
		Queues:   []uint16{0, 1},
		FailOpen: true,

		ProcQueuePath: proc,
	})

	want := `
# HELP fwagent_packets_total Packets decided by the agent, by hook and verdict: accept, drop, reject, or would_drop and would_reject for audit decisions (accepted, counted apart).
# TYPE fwagent_packets_total counter
fwagent_packets_total{hook="forward",verdict="accept"} 0
fwagent_packets_total{hook="forward",verdict="drop"} 0
fwagent_packets_total{hook="forward",verdict="reject"} 0
fwagent_packets_total{hook="forward",verdict="would_drop"} 0
fwagent_packets_total{hook="forward",verdict="would_reject"} 0
fwagent_packets_total{hook="input",verdict="accept"} 5
fwagent_packets_total{hook="input",verdict="drop"} 3
fwagent_packets_total{hook="input",verdict="reject"} 2
fwagent_packets_total{hook="input",verdict="would_drop"} 0
fwagent_packets_total{hook="input",verdict="would_reject"} 0
fwagent_packets_total{hook="output",verdict="accept"} 0
fwagent_packets_total{hook="output",verdict="drop"} 0
fwagent_packets_total{hook="output",verdict="reject"} 0
fwagent_packets_total{hook="output",verdict="would_drop"} 0
fwagent_packets_total{hook="output",verdict="would_reject"} 0
# HELP fwagent_rule_hits_total Packets decided by each rule of the policy in force (counts carry over reloads by rule name; offloaded packets never reach the agent).
# TYPE fwagent_rule_hits_total counter
fwagent_rule_hits_total{rule="ssh"} 5
fwagent_rule_hits_total{rule="telnet"} 2
# HELP fwagent_default_hits_total Packets decided by a hook's default verdict.
# TYPE fwagent_default_hits_total counter
fwagent_default_hits_total 3
# HELP fwagent_policy_generation Generation of the policy in force (carried in offload connmarks).
# TYPE fwagent_policy_generation gauge
fwagent_policy_generation 42
# HELP fwagent_queue_readers Queue readers running; fewer than fwagent_queues means a reader died.
# TYPE fwagent_queue_readers gauge
fwagent_queue_readers 1
# HELP fwagent_queues Queues the agent is configured to bind.
# TYPE fwagent_queues gauge
fwagent_queues 2
# HELP fwagent_queue_enobufs_total Socket overruns reported by the kernel on the queue sockets (the kernel handled those packets per fail-open/closed).
# TYPE fwagent_queue_enobufs_total counter
fwagent_queue_enobufs_total 3
# HELP fwagent_queue_gso_packets_total Queued packets that were GSO/GRO aggregates of several segments (NFQA_SKB_GSO).
# TYPE fwagent_queue_gso_packets_total counter
fwagent_queue_gso_packets_total 4
# HELP fwagent_queue_copy_range_bytes Bytes of each queued packet the kernel copies to the agent (the policy's need, or --copy-range).
# TYPE fwagent_queue_copy_range_bytes gauge
fwagent_queue_copy_range_bytes 256
# HELP fwagent_queue_kernel_bound 1 if the kernel lists the queue as bound.
# TYPE fwagent_queue_kernel_bound gauge
fwagent_queue_kernel_bound{queue="0"} 1
fwagent_queue_kernel_bound{queue="1"} 0
# HELP fwagent_queue_kernel_packets_total Packets the kernel sent to the queue since it was bound (id_sequence).
# TYPE fwagent_queue_kernel_packets_total counter
fwagent_queue_kernel_packets_total{queue="0"} 20
# HELP fwagent_failopen_packets_total Estimate of packets the kernel passed without a verdict because the reader's socket was full (fail-open): queued minus answered minus waiting. Packets passed because the queue itself was full are counted by no one.
# TYPE fwagent_failopen_packets_total counter
fwagent_failopen_packets_total 9
# HELP fwagent_flows Flows tracked now.
# TYPE fwagent_flows gauge
fwagent_flows 11
# HELP fwagent_flow_evictions_total Live flows evicted to make room at --max-flows.
# TYPE fwagent_flow_evictions_total counter
fwagent_flow_evictions_total 2
# HELP fwagent_droplog_events_total Drop-log events written to the sinks.
# TYPE fwagent_droplog_events_total counter
fwagent_droplog_events_total 6
# HELP fwagent_droplog_shed_total Drop-log events shed because the sinks fell behind.
# TYPE fwagent_droplog_shed_total counter
fwagent_droplog_shed_total 1
# HELP fwagent_droplog_overruns_total Times the drop-log socket buffer overflowed (ENOBUFS); the messages lost are in droplog_lost_total.
# TYPE fwagent_droplog_overruns_total counter
fwagent_droplog_overruns_total 2
# HELP fwagent_policy_reloads_total Policy reloads by result (ok, error).
# TYPE fwagent_policy_reloads_total counter
fwagent_policy_reloads_total{result="error"} 1
fwagent_policy_reloads_total{result="ok"} 1
# HELP fwagent_policy_last_reload_success 1 if the last reload attempt succeeded or none was made, 0 if it failed (the previous policy stays in force).
# TYPE fwagent_policy_last_reload_success gauge
fwagent_policy_last_reload_success 0
# HELP fwagent_policy_last_reload_timestamp_seconds Unix time of the last reload attempt (0: none yet).
# TYPE fwagent_policy_last_reload_timestamp_seconds gauge
fwagent_policy_last_reload_timestamp_seconds 1.7000001e+09
# HELP fwagent_policy_last_reload_error_info Present while the last reload failed; the error label is its message.
# TYPE fwagent_policy_last_reload_error_info gauge
fwagent_policy_last_reload_error_info{error="p.yaml:3:5: unknown key \"actoin\""} 1
`
	names := []string{
		"fwagent_packets_total", "fwagent_rule_hits_total", "fwagent_default_hits_total", "fwagent_policy_generation",
		"fwagent_queue_readers", "fwagent_queues", "fwagent_queue_enobufs_total", "fwagent_queue_gso_packets_total", "fwagent_queue_copy_range_bytes", "fwagent_droplog_overruns_total", "fwagent_queue_kernel_bound",
		"fwagent_queue_kernel_packets_total", "fwagent_failopen_packets_total", "fwagent_flows", "fwagent_flow_evictions_total",
		"fwagent_droplog_events_total", "fwagent_droplog_shed_total", "fwagent_policy_reloads_total",
		"fwagent_policy_last_reload_success", "fwagent_policy_last_reload_timestamp_seconds", "fwagent_policy_last_reload_error_info",
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	// queue 0: 20 queued, 10 answered, 1 waiting -> 9 passed without us.
	// The estimate never goes down, even when a later snapshot says less.
	send(t, w, 22, 5)
	again := `
# HELP fwagent_failopen_packets_total Estimate of packets the kernel passed without a verdict because the reader's socket was full (fail-open): queued minus answered minus waiting. Packets passed because the queue itself was full are counted by no one.
# TYPE fwagent_failopen_packets_total counter
fwagent_failopen_packets_total 9
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(again), "fwagent_failopen_packets_total"); err != nil {
		t.Fatalf("the fail-open estimate must not go down: %v", err)
	}
	// Every metric the collector emits is described and lints clean.
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
	if n := testutil.CollectAndCount(c, "fwagent_decision_latency_seconds"); n != 1 {
		t.Fatalf("latency histogram: %d series, want 1", n)
	}
}

func TestCollectorWithoutProcfs(t *testing.T) {
	c := NewCollector(Sources{Queues: []uint16{0}, ProcQueuePath: filepath.Join(t.TempDir(), "missing")})
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Fatalf("%d metrics without any source, want 0", n)
	}
}

// TestCollectorKernelHits: hits the kernel counted for rules it decides are
// added to the agent's own, by rule name, so the metric covers both paths.
func TestCollectorKernelHits(t *testing.T) {
	shared := testShared(t)
	w := shared.NewWorker()
	send(t, w, 22, 5)
	send(t, w, 9, 3)
	c := NewCollector(Sources{
		Pipeline:      shared,
		ProcQueuePath: filepath.Join(t.TempDir(), "missing"),
		KernelHits: func() (map[string]uint64, error) {
			return map[string]uint64{"ssh": 100, "telnet": 7, "default": 40, "gone": 9}, nil
		},
	})
	want := `
# HELP fwagent_rule_hits_total Packets decided by each rule of the policy in force (counts carry over reloads by rule name; offloaded packets never reach the agent).
# TYPE fwagent_rule_hits_total counter
fwagent_rule_hits_total{rule="ssh"} 105
fwagent_rule_hits_total{rule="telnet"} 7
# HELP fwagent_default_hits_total Packets decided by a hook's default verdict.
# TYPE fwagent_default_hits_total counter
fwagent_default_hits_total 43
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "fwagent_rule_hits_total", "fwagent_default_hits_total"); err != nil {
		t.Fatal(err)
	}
}
