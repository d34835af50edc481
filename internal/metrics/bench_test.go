package metrics

import (
	"io"
	"testing"

	"github.com/prometheus/common/expfmt"

	"github.com/fwagent/fwagent/verdict"
)

// BenchmarkScrape is the cost of one /metrics scrape of the agent's own
// metrics, gathering and encoding included: what an operator's scrape
// interval costs the agent. Packets pay nothing for it.
func BenchmarkScrape(b *testing.B) {
	shared := testShared(b)
	send(b, shared.NewWorker(), 22, 100)
	reg := NewRegistry(NewCollector(Sources{
		Pipeline: shared,
		Engine:   &fakeEngine{st: verdict.Stats{ReadersLive: 1}},
		Flows:    fakeFlows{Flows: 10},
		DropLog:  fakeLog{Written: 1},
		Reloads:  &Reloads{},
		Queues:   []uint16{0},
	}))
	b.ReportAllocs()
	for b.Loop() {
		fams, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		enc := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, f := range fams {
			if err := enc.Encode(f); err != nil {
				b.Fatal(err)
			}
		}
	}
}
