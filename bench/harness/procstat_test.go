package harness

import (
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestParseProcStatCPU(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want float64
		ok   bool
	}{
		{"plain", "1234 (fwagent) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0", 3.0, true},
		{"name with spaces and parens", "77 (a (b) c) R 1 77 77 0 -1 0 0 0 0 0 7 3 0 0", 0.1, true},
		{"no name", "77 a R 1", 0, false},
		{"short", "77 (x) R 1 2 3", 0, false},
		{"not a number", "77 (x) R 1 1 1 0 -1 0 0 0 0 0 x 3 0 0", 0, false},
	}
	for _, tt := range tests {
		got, err := parseProcStatCPU([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%s: got %v, %v; want %v ok=%v", tt.name, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseCPUBusy(t *testing.T) {
	stat := "cpu  10 0 10 1000 5 0 0 0 0 0\ncpu0 100 1 50 9000 7 2 40 0 0 0\ncpu1 200 0 100 8000 3 5 95 0 30 0\nintr 1\n"
	tests := []struct {
		cpu  int
		want float64
		ok   bool
	}{
		{0, 1.93, true}, // 100+1+50+2+40
		{1, 4.00, true}, // 200+100+5+95, guest (30) already in user
		{2, 0, false},
	}
	for _, tt := range tests {
		got, err := parseCPUBusy([]byte(stat), tt.cpu)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("cpu%d: got %v, %v; want %v ok=%v", tt.cpu, got, err, tt.want, tt.ok)
		}
	}
	if got, err := parseCPUSoftirq([]byte(stat), 1); err != nil || got != 0.95 {
		t.Errorf("cpu1 softirq: got %v, %v; want 0.95", got, err)
	}
}

func TestParseNfqueue(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want queueCounters
		ok   bool
	}{
		{"none bound", "", queueCounters{}, true},
		{"two queues", "    0  12345     3 2 65535    10     1 999 1\n    1  12346     0 2 65535     5     2 12 1\n", queueCounters{15, 3, 1011, 3}, true},
		{"short line", "0 1 2 2 65535 0 0\n", queueCounters{}, false},
		{"bad counter", "0 1 2 2 65535 x 0 0 1\n", queueCounters{}, false},
	}
	for _, tt := range tests {
		got, err := parseNfqueue([]byte(tt.in))
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("%s: got %+v, %v; want %+v ok=%v", tt.name, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseSoftnetDropped(t *testing.T) {
	in := "0002a1b3 0000000a 00000000 00000000\n00001000 00000010 00000001 00000000\n"
	got, err := parseSoftnetDropped([]byte(in))
	if err != nil || got != 26 {
		t.Fatalf("got %d, %v; want 26", got, err)
	}
	if _, err := parseSoftnetDropped([]byte("00001000\n")); err == nil {
		t.Fatal("short line accepted")
	}
	if _, err := parseSoftnetDropped([]byte("1 zz\n")); err == nil {
		t.Fatal("non-hex accepted")
	}
}

func FuzzParseSoftnetDropped(f *testing.F) {
	f.Add([]byte("0002a1b3 0000000a 00000000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseSoftnetDropped(b)
	})
}

func TestParseUDPRcvbufErrors(t *testing.T) {
	snmp := "Ip: Forwarding DefaultTTL\nIp: 2 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 100 2 7 50 7 0\nUdpLite: InDatagrams\nUdpLite: 0\n"
	got, err := parseUDPRcvbufErrors([]byte(snmp))
	if err != nil || got != 7 {
		t.Fatalf("got %d, %v; want 7", got, err)
	}
	if _, err := parseUDPRcvbufErrors([]byte("Ip: a\nIp: 1\n")); err == nil {
		t.Fatal("missing Udp section accepted")
	}
}

func TestParseKV(t *testing.T) {
	line := `time=2026 level=INFO msg="drop log stopped" received=10 written=8 shed="2" lost=x`
	tests := []struct {
		key  string
		want uint64
		ok   bool
	}{{"received", 10, true}, {"shed", 2, true}, {"lost", 0, false}, {"errors", 0, false}, {"msg", 0, false}}
	for _, tt := range tests {
		got, ok := parseKV(line, tt.key)
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s: got %d %v, want %d %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseIperf(t *testing.T) {
	tests := []struct {
		name string
		in   string
		gbps float64
		retr int64
		ok   bool
	}{
		{"ok", `{"end":{"sum_sent":{"retransmits":3},"sum_received":{"bits_per_second":2.5e9}}}`, 2.5, 3, true},
		{"error", `{"error":"unable to connect to server"}`, 0, 0, false},
		{"no throughput", `{"end":{}}`, 0, 0, false},
		{"not json", `iperf3: error`, 0, 0, false},
	}
	for _, tt := range tests {
		g, r, err := parseIperf([]byte(tt.in))
		if (err == nil) != tt.ok || g != tt.gbps || r != tt.retr {
			t.Errorf("%s: got %v %v %v", tt.name, g, r, err)
		}
	}
}

func FuzzParseProcStatCPU(f *testing.F) {
	f.Add([]byte("1 (x) S 1 1 1 0 -1 0 0 0 0 0 5 5 0 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := parseProcStatCPU(b); err == nil && v < 0 {
			t.Fatalf("negative CPU time %v", v)
		}
	})
}

func FuzzParseNfqueue(f *testing.F) {
	f.Add([]byte("    0  12345     3 2 65535    10     1 999 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseNfqueue(b)
	})
}

func FuzzParseUDPRcvbufErrors(f *testing.F) {
	f.Add([]byte("Udp: InDatagrams RcvbufErrors\nUdp: 1 2\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseUDPRcvbufErrors(b)
	})
}

func FuzzParseIperf(f *testing.F) {
	f.Add([]byte(`{"end":{"sum_sent":{"retransmits":3},"sum_received":{"bits_per_second":2.5e9}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if g, _, err := parseIperf(b); err == nil && g <= 0 {
			t.Fatalf("accepted non-positive throughput %v", g)
		}
	})
}

func BenchmarkParseNfqueue(b *testing.B) {
	in := []byte("    0  12345     3 2 65535    10     1 999 1\n    1  12346     0 2 65535     5     2 12 1\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseNfqueue(in); err != nil {
			b.Fatal(err)
		}
	}
}

func TestPromCounters(t *testing.T) {
	in := `# HELP fwagent_droplog_shed_total x
# TYPE fwagent_droplog_shed_total counter
fwagent_droplog_shed_total 12
fwagent_droplog_events_total 3.5e+06
fwagent_queue_kernel_dropped_total{queue="0",reason="queue_full"} 7
fwagent_queue_kernel_dropped_total{queue="1",reason="queue_full"} 3 1700000000000
# TYPE fwagent_flows gauge
fwagent_flows 9
# TYPE fwagent_latency_seconds histogram
fwagent_latency_seconds_bucket{le="+Inf"} 4
fwagent_latency_seconds_sum 1
fwagent_latency_seconds_count 4
other_metric 1
`
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	got := promCounters(fams, "fwagent_")
	want := map[string]float64{"droplog_shed": 12, "droplog_events": 3.5e6, "queue_kernel_dropped": 10, "flows": 9}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	dl := dropLogCounters(got)
	if dl["shed"] != 12 || dl["written"] != 3500000 || len(dl) != 2 {
		t.Errorf("dropLogCounters = %v", dl)
	}
}
