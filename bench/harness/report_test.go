package harness

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/fwagent/fwagent/bench/gen"
)

// sample is a run where fwagent-1000 meets some bars and misses others.
func sample() *Results {
	lat := func(p99 float64) *gen.ProbeResult {
		return &gen.ProbeResult{Sent: 100, Received: 100, P50us: 50, P99us: p99, P999us: p99 + 10, MaxUs: p99 + 20}
	}
	return &Results{
		Method: Method{DurationSec: 5, Flows: 64, Payload: 36},
		Configs: []ConfigResult{
			{Name: "kernel", UDP: []UDPPoint{{Label: "max", OfferedPPS: 160000, DeliveredPPS: 160000}, {Label: "50%", OfferedPPS: 80000, DeliveredPPS: 80000, Latency: lat(100)}},
				Bulk: &BulkPoint{Gbps: 10}},
			{Name: "naive", UDP: []UDPPoint{{Label: "max", OfferedPPS: 140000, DeliveredPPS: 42000, LossPct: 70, HandlerCPUPerMpkt: 20}}},
			{Name: "cloop", UDP: []UDPPoint{{Label: "max", OfferedPPS: 123000, DeliveredPPS: 123000, HandlerCPUPerMpkt: 5}}},
			{Name: "fwagent-1000", UDP: []UDPPoint{
				{Label: "max", OfferedPPS: 120000, DeliveredPPS: 119940, Sent: 600000, Received: 599700, LossPct: 0.05, HandlerCPUPerMpkt: 6},
				{Label: "80%", OfferedPPS: 96000, Sent: 480000, Received: 480000},
				{Label: "50%", OfferedPPS: 60000, Latency: lat(250)},
			}},
			{Name: "fwagent-1000-kernel", UDP: []UDPPoint{{Label: "max", OfferedPPS: 150000, DeliveredPPS: 150000}}},
			{Name: "fwagent-2-kernel", UDP: []UDPPoint{{Label: "max", OfferedPPS: 156000, DeliveredPPS: 156000, Queue: queueCounters{Queued: 12}}}},
			{Name: "kernel-nft", UDP: []UDPPoint{{Label: "max", OfferedPPS: 158000, DeliveredPPS: 158000}}},
			{Name: "kernel-nft-1000", UDP: []UDPPoint{{Label: "max", OfferedPPS: 40000, DeliveredPPS: 40000}}},
			{Name: "fwagent-offload", Bulk: &BulkPoint{Gbps: 9.5}},
			{Name: "fwagent-inspect", Bulk: &BulkPoint{Gbps: 7, Queued: 60000}},
			{Name: "fwagent-inspect-payload", Bulk: &BulkPoint{Gbps: 4}},
			{Name: "droplog-fwagent", DropLog: &DropLogPoint{Offered: 1000, Written: 900, EventsPerSec: 180, Reported: map[string]uint64{"shed": 100}}},
			{Name: "droplog-ulogd2", DropLog: &DropLogPoint{Offered: 1000, Written: 600, EventsPerSec: 120, Unaccounted: 400}},
			{Name: "fwagent-nq", Skipped: "go build ./cmd/fwagent failed"},
		},
	}
}

func TestEvaluateBars(t *testing.T) {
	res := sample()
	want := map[string]string{
		"loss at maximum offered load (fwagent-1000)":                                                                "yes",
		"delivered pps at max vs the C loop":                                                                         "yes",
		"handler CPU per packet at max vs the C loop":                                                                "no",
		"loss at 80% of its own capacity":                                                                            "yes",
		"p99 added latency at 50% load (vs kernel only at its 50%)":                                                  "yes",
		"offloaded TCP bulk stream vs kernel only":                                                                   "yes",
		"drop-log events written per second vs ulogd2":                                                               "no", // 1.5x, bar 2x
		"TCP bulk stream decided by an offload: false rule vs kernel only":                                           "yes",
		"TCP bulk stream through a payload rule vs kernel only":                                                      "no",
		"drop-and-log flood: offered events written":                                                                 "yes",
		"drop log counts every event it sheds":                                                                       "yes",
		"1,000-rule policy in the kernel (--kernel-rules auto) vs kernel only, delivered pps at max, nothing queued": "no", // 0.94x
		"for comparison: the 2-rule policy in the kernel vs kernel only":                                             "no", // 0.975x, but queued
		"for comparison: one hand-written nft rule vs kernel only":                                                   "yes",
		"for comparison: the 1,000-rule policy compiled vs the same policy as hand-written nft rules":                "yes", // 3.75x
	}
	bars := evaluateBars(res)
	if len(bars) != len(want) {
		t.Fatalf("%d bars, want %d", len(bars), len(want))
	}
	for _, b := range bars {
		if w, ok := want[b.Name]; !ok || b.Met != w {
			t.Errorf("bar %q: met %q (%s), want %q", b.Name, b.Met, b.Measured, w)
		}
	}

	// Without the C loop the ratios cannot be judged: n/a, never "yes".
	res.Configs[2].Skipped = "no libnetfilter-queue-dev"
	for _, b := range evaluateBars(res) {
		if strings.Contains(b.Name, "C loop") && b.Met != "n/a" {
			t.Errorf("bar %q without the C loop: %q", b.Name, b.Met)
		}
	}
}

func TestMarkdown(t *testing.T) {
	res := sample()
	res.Bars = evaluateBars(res)
	md := markdown(res)
	for _, want := range []string{
		"**SKIPPED fwagent-nq**: go build ./cmd/fwagent failed",
		"| **fwagent-1000** — ",
		"0.98×", // delivered vs C: 119940/123000
		"2.86×", // delivered vs naive: 119940/42000
		"1.20×", // CPU vs C: 6/5
		"| **droplog-ulogd2** | 0 | 120 | 600 | 0 | none | 0 | 400 (40.0%) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestChartIsSVG(t *testing.T) {
	svg := chart(sample())
	var v struct {
		XMLName  xml.Name
		Polyline []struct{} `xml:"polyline"`
	}
	if err := xml.Unmarshal([]byte(svg), &v); err != nil {
		t.Fatalf("not XML: %v", err)
	}
	// One line per configuration with UDP runs: kernel, naive, cloop,
	// fwagent-1000 and the four kernel-path ones.
	if v.XMLName.Local != "svg" || len(v.Polyline) != 8 {
		t.Fatalf("root %q with %d polylines, want svg with 8", v.XMLName.Local, len(v.Polyline))
	}
}

func TestNiceStep(t *testing.T) {
	tests := []struct{ in, want float64 }{{32000, 50000}, {20000, 20000}, {0.3, 0.5}, {1, 1}, {7, 10}}
	for _, tt := range tests {
		if got := niceStep(tt.in); got != tt.want {
			t.Errorf("niceStep(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args []string
		ok   bool
		n    int
	}{
		{nil, true, len(configNames())},
		{[]string{"-configs", "kernel,cloop"}, true, 2},
		{[]string{"-configs", "nope"}, false, 0},
		{[]string{"-rates", "1000,x"}, false, 0},
		{[]string{"-duration", "10ms"}, false, 0},
		{[]string{"extra"}, false, 0},
	}
	for _, tt := range tests {
		o, err := ParseFlags("e2e", tt.args, "bench/out")
		if (err == nil) != tt.ok || (tt.ok && len(o.configs) != tt.n) {
			t.Errorf("%q: %d configs, err %v", tt.args, len(o.configs), err)
		}
	}
}
