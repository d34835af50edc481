package droplog

import (
	"io"
	"testing"
	"time"
)

// BenchmarkPcapSink is the cost of one logged packet in the pcap sink
// (record header, buffered write).
func BenchmarkPcapSink(b *testing.B) {
	s, err := NewPcapSink(io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	a := benchAttrs(b)
	ts := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.WritePacket(ts, *a.Payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandleRateLimited is what an event over the rate costs the
// reader goroutine: it is counted, not decoded.
func BenchmarkHandleRateLimited(b *testing.B) {
	a := benchAttrs(b)
	var now int64
	r := newTestReader(b, Config{Rate: 1, Burst: 1, Clock: func() int64 { return now }}, NewJSONSink(io.Discard))
	r.handle(a) // takes the only token
	b.ReportAllocs()
	for b.Loop() {
		r.handle(a)
	}
	if s := r.Stats(); s.RateLimited == 0 || s.Received != s.RateLimited+1 {
		b.Fatalf("stats %+v: want all but one rate-limited", s)
	}
}

// BenchmarkPipelineWithPcap is BenchmarkPipeline with a pcap sink beside
// the JSON one: the packet copy go-nflog made travels with the event.
func BenchmarkPipelineWithPcap(b *testing.B) {
	ps, err := NewPcapSink(io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	benchPipeline(b, NewJSONSink(io.Discard), ps)
}
