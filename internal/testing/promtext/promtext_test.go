package promtext

import "testing"

func TestParse(t *testing.T) {
	fams := Parse(t, "# TYPE fwagent_queues gauge\nfwagent_queues 2\n")
	f, ok := fams["fwagent_queues"]
	if !ok || len(f.Metric) != 1 || f.Metric[0].GetGauge().GetValue() != 2 {
		t.Fatalf("got %v", fams)
	}
}
