package droplog

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/netip"
	"testing"
	"time"

	nflog "github.com/florianl/go-nflog/v2"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
)

func benchEvent() Event {
	return Event{
		Time: time.Date(2026, 11, 27, 13, 4, 5, 123456789, time.UTC), Rule: "block-ssh-from-outside",
		Verdict: "drop", Event: "drop", Hook: "input", Family: packet.IPv4, Proto: packet.ProtoTCP,
		Src: netip.MustParseAddr("203.0.113.77"), Dst: netip.MustParseAddr("192.0.2.10"),
		SrcPort: 51234, DstPort: 22, Length: 60, In: "eth0", L4: true, TCPFlags: packet.TCPSyn,
		Prefix: "fwagent:drop", Mark: 0x00310000,
	}
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEncodeAppendJSON is the encoder the sinks use.
func BenchmarkEncodeAppendJSON(b *testing.B) {
	ev := benchEvent()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = ev.AppendJSON(buf[:0])
	}
	reportRate(b)
}

// BenchmarkEncodeStdlib is the same event through encoding/json, the
// alternative AppendJSON was measured against.
func BenchmarkEncodeStdlib(b *testing.B) {
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(toStd(&ev)); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}

func benchAttrs(b *testing.B) nflog.Attribute {
	marks, err := nf.NewMarks(nf.DefaultMarkMask)
	if err != nil {
		b.Fatal(err)
	}
	pkt := build(b, ip4(layers.IPProtocolTCP), &layers.TCP{SrcPort: 51234, DstPort: 22, SYN: true, Window: 64240}, gopacket.Payload(nil))
	ts := time.Now()
	a := attrs(pkt, "fwagent:drop", marks.Encode(0, nf.MarkDropLog, 3), unix.NF_INET_LOCAL_IN, 2, 0, unix.ETH_P_IP)
	a.Timestamp = &ts
	return a
}

// BenchmarkSerialPath is all the work one event costs after go-nflog has
// parsed it, on one goroutine: fill (decode, resolve), encode, buffered
// write. Its events/s is what one core sustains without the queue handoff.
func BenchmarkSerialPath(b *testing.B) {
	a := benchAttrs(b)
	names := func(uint32) string { return "block-ssh-from-outside" }
	r := newTestReader(b, Config{RuleName: names}, NewJSONSink(io.Discard))
	w := bufio.NewWriterSize(io.Discard, jsonBufSize)
	line := make([]byte, 0, 512)
	var ev Event
	b.ReportAllocs()
	for b.Loop() {
		ev = Event{}
		r.fill(&ev, &a)
		line = append(ev.AppendJSON(line[:0]), '\n')
		if _, err := w.Write(line); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}

// BenchmarkPipeline runs the Reader's own path: handle on this goroutine,
// the queue, the sink goroutine and a JSON sink writing to io.Discard. Run it
// with -cpu 1 for the one-core figure. When the sink goroutine falls behind,
// events are shed rather than slowing handle; written/s is the rate that
// reached the sink.
func BenchmarkPipeline(b *testing.B) {
	benchPipeline(b, NewJSONSink(io.Discard))
}

// benchPipeline hands the same event to a reader writing to sinks, b.N
// times, and reports the rate that reached the sinks and the share shed.
func benchPipeline(b *testing.B, sinks ...Sink) {
	a := benchAttrs(b)
	names := func(uint32) string { return "block-ssh-from-outside" }
	r := newTestReader(b, Config{RuleName: names}, sinks...)
	stop := r.startSinks()
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		r.handle(a)
	}
	r.shutdown()
	stop() // drains the queue, so the rate below counts every written event's time
	s := r.Stats()
	b.ReportMetric(float64(s.Written)/time.Since(start).Seconds(), "written/s")
	b.ReportMetric(float64(s.Shed)/float64(s.Received)*100, "shed%")
}

// BenchmarkBatchPipeline is BenchmarkPipeline from the kernel's bytes: a
// datagram of 256 log messages (as one NFLOG batch carries them) parsed in
// place and handed over message by message, through the queue to the JSON
// sink. Per-op figures are per datagram; events/s is per message. Run with
// -cpu 1 for the one-core figure.
func BenchmarkBatchPipeline(b *testing.B) {
	a := benchAttrs(b)
	names := func(uint32) string { return "block-ssh-from-outside" }
	r := newTestReader(b, Config{RuleName: names, Buffer: 1 << 15}, NewJSONSink(io.Discard))
	br := &batchReader{r: r}
	br.each = br.handle
	ts := make([]byte, 16)
	binary.BigEndian.PutUint64(ts[0:8], uint64(time.Now().Unix()))
	var msgs [][]logAttr
	for i := range logQThresh {
		msgs = append(msgs, []logAttr{
			{nfulaPktHdr, []byte{0x08, 0x00, unix.NF_INET_LOCAL_IN, 0}},
			{nfulaMark, be32(*a.Mark)},
			{nfulaTstamp, ts},
			{nfulaInDev, be32(2)},
			{nfulaPrefix, []byte("fwagent:drop\x00")},
			{nfulaPayload, *a.Payload},
			{nfulaSeq, be32(uint32(i))},
		})
	}
	d := logDatagram(msgs...)
	stop := r.startSinks()
	start := time.Now()
	var m logMsg
	b.ReportAllocs()
	for b.Loop() {
		parseLogDatagram(d, &m, br.each)
	}
	r.shutdown()
	stop()
	s := r.Stats()
	b.ReportMetric(float64(s.Written)/time.Since(start).Seconds(), "written/s")
	b.ReportMetric(float64(s.Shed)/float64(s.Received)*100, "shed%")
}
