package droplog

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	nflog "github.com/florianl/go-nflog/v2"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
)

func testMarks(t testing.TB) nf.Marks {
	t.Helper()
	m, err := nf.NewMarks(nf.DefaultMarkMask)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// build serialises layers into a packet starting at the IP header.
func build(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	for _, l := range ls {
		switch tl := l.(type) {
		case *layers.TCP:
			setNet(t, tl, ls[0])
		case *layers.UDP:
			setNet(t, tl, ls[0])
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func setNet(t testing.TB, l interface {
	SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
}, n gopacket.SerializableLayer) {
	if err := l.SetNetworkLayerForChecksum(n.(gopacket.NetworkLayer)); err != nil {
		t.Fatal(err)
	}
}

func ip4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto,
		SrcIP: net.IP{192, 0, 2, 1}, DstIP: net.IP{198, 51, 100, 7}}
}

func ip6(proto layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto,
		SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
}

func attrs(payload []byte, prefix string, mark uint32, hook uint8, in, out uint32, proto uint16) nflog.Attribute {
	a := nflog.Attribute{Payload: &payload, Prefix: &prefix, Mark: &mark, Hook: &hook, HwProtocol: &proto}
	if in != 0 {
		a.InDev = &in
	}
	if out != 0 {
		a.OutDev = &out
	}
	return a
}

func ifNames(index uint32) string {
	switch index {
	case 2:
		return "eth0"
	case 3:
		return "eth1"
	}
	return ""
}

func newTestReader(t testing.TB, cfg Config, sinks ...Sink) *Reader {
	t.Helper()
	if cfg.Marks.Mask == 0 {
		cfg.Marks = testMarks(t)
	}
	if cfg.IfName == nil {
		cfg.IfName = ifNames
	}
	r, err := NewReader(cfg, sinks...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFill(t *testing.T) {
	marks := testMarks(t)
	names := map[uint32]string{0: "", 1: "allow-web", 3: "block-udp"}
	ruleName := func(id uint32) string { return names[id] }
	ts := time.Date(2026, 11, 27, 13, 0, 0, 1, time.UTC)
	big := make([]byte, 1400)

	tests := []struct {
		name string
		a    nflog.Attribute
		want Event
	}{
		{
			name: "udp drop from the mark's rule",
			a: attrs(build(t, ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 5353, DstPort: 9999}, gopacket.Payload("abc")),
				"fwagent:drop", marks.Encode(0x1234, nf.MarkDropLog, 3), unix.NF_INET_LOCAL_IN, 2, 0, unix.ETH_P_IP),
			want: Event{RuleID: 3, Rule: "block-udp", Verdict: "drop", Event: "drop", Hook: "input",
				Family: packet.IPv4, Proto: packet.ProtoUDP,
				Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.7"),
				SrcPort: 5353, DstPort: 9999, Length: 31, In: "eth0", L4: true,
				Prefix: "fwagent:drop", Mark: marks.Encode(0x1234, nf.MarkDropLog, 3)},
		},
		{
			name: "tcp syn rejected by the default, forward hook",
			a: attrs(build(t, ip6(layers.IPProtocolTCP), &layers.TCP{SrcPort: 40000, DstPort: 22, SYN: true, Window: 1024}),
				"fwagent:reject", marks.Encode(0, nf.MarkRejectLog, 0), unix.NF_INET_FORWARD, 2, 3, unix.ETH_P_IPV6),
			want: Event{Rule: "default", Verdict: "reject", Event: "reject", Hook: "forward",
				Family: packet.IPv6, Proto: packet.ProtoTCP,
				Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"),
				SrcPort: 40000, DstPort: 22, Length: 60, In: "eth0", Out: "eth1", L4: true, TCPFlags: packet.TCPSyn,
				Prefix: "fwagent:reject", Mark: marks.Encode(0, nf.MarkRejectLog, 0)},
		},
		{
			name: "audit would_drop is accepted; unknown rule id is named by number",
			a: attrs(build(t, ip4(layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 2}),
				"fwagent:would_drop", marks.Encode(0, nf.MarkWouldDrop, 42), unix.NF_INET_LOCAL_OUT, 0, 3, unix.ETH_P_IP),
			want: Event{RuleID: 42, Rule: "rule-42", Verdict: "accept", Event: "would_drop", Hook: "output",
				Family: packet.IPv4, Proto: packet.ProtoICMP,
				Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.7"),
				Length: 28, Out: "eth1", L4: true, ICMPType: 8,
				Prefix: "fwagent:would_drop", Mark: marks.Encode(0, nf.MarkWouldDrop, 42)},
		},
		{
			name: "foreign prefix: the event comes from the mark",
			a: attrs(build(t, ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 1, DstPort: 2}),
				"someone else ", marks.Encode(0, nf.MarkAcceptLog, 1), unix.NF_INET_LOCAL_IN, 0, 0, unix.ETH_P_IP),
			want: Event{RuleID: 1, Rule: "allow-web", Verdict: "accept", Event: "accept", Hook: "input",
				Family: packet.IPv4, Proto: packet.ProtoUDP,
				Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.7"),
				SrcPort: 1, DstPort: 2, Length: 28, L4: true,
				Prefix: "someone else ", Mark: marks.Encode(0, nf.MarkAcceptLog, 1)},
		},
		{
			name: "neither prefix nor mark explain it",
			a: attrs(build(t, ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 1, DstPort: 2}),
				"", 0, unix.NF_INET_LOCAL_IN, 0, 0, unix.ETH_P_IP),
			want: Event{Rule: "default", Verdict: "unknown", Event: "unknown", Hook: "input",
				Family: packet.IPv4, Proto: packet.ProtoUDP,
				Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.7"),
				SrcPort: 1, DstPort: 2, Length: 28, L4: true},
		},
		{
			name: "udp cut at the copy range keeps ports and the full length",
			a: attrs(build(t, ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 443, DstPort: 50000}, gopacket.Payload(big))[:DefaultCopyRange],
				"fwagent:drop", marks.Encode(0, nf.MarkDropLog, 1), unix.NF_INET_LOCAL_IN, 0, 0, unix.ETH_P_IP),
			want: Event{RuleID: 1, Rule: "allow-web", Verdict: "drop", Event: "drop", Hook: "input",
				Family: packet.IPv4, Proto: packet.ProtoUDP,
				Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.7"),
				SrcPort: 443, DstPort: 50000, Length: 1428, L4: true,
				Prefix: "fwagent:drop", Mark: marks.Encode(0, nf.MarkDropLog, 1)},
		},
		{
			name: "ipv6 tcp cut at the copy range",
			a: attrs(build(t, ip6(layers.IPProtocolTCP), &layers.TCP{SrcPort: 80, DstPort: 1234, ACK: true, PSH: true}, gopacket.Payload(big))[:DefaultCopyRange],
				"fwagent:drop", marks.Encode(0, nf.MarkDropLog, 0), unix.NF_INET_LOCAL_IN, 0, 0, unix.ETH_P_IPV6),
			want: Event{Rule: "default", Verdict: "drop", Event: "drop", Hook: "input",
				Family: packet.IPv6, Proto: packet.ProtoTCP,
				Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"),
				SrcPort: 80, DstPort: 1234, Length: 1460, L4: true, TCPFlags: packet.TCPPsh | packet.TCPAck,
				Prefix: "fwagent:drop", Mark: marks.Encode(0, nf.MarkDropLog, 0)},
		},
		{
			name: "garbage payload still yields an event from the metadata",
			a:    attrs([]byte{0x45, 0, 0}, "fwagent:drop", marks.Encode(0, nf.MarkDropLog, 0), unix.NF_INET_LOCAL_IN, 2, 0, unix.ETH_P_IP),
			want: Event{Rule: "default", Verdict: "drop", Event: "drop", Hook: "input", Family: packet.IPv4,
				In: "eth0", Prefix: "fwagent:drop", Mark: marks.Encode(0, nf.MarkDropLog, 0)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestReader(t, Config{RuleName: ruleName}, NewJSONSink(&bytes.Buffer{}))
			a := tt.a
			a.Timestamp = &ts
			var got Event
			r.fill(&got, &a)
			tt.want.Time = ts
			if got != tt.want {
				t.Fatalf("fill:\n got %+v\nwant %+v", got, tt.want)
			}
			wantErrs := uint64(0)
			if strings.HasPrefix(tt.name, "garbage") {
				wantErrs = 1
			}
			if s := r.Stats(); s.Errors != wantErrs {
				t.Fatalf("Errors = %d, want %d", s.Errors, wantErrs)
			}
		})
	}
}

func TestFillWithoutTimestampUsesNow(t *testing.T) {
	r := newTestReader(t, Config{}, NewJSONSink(&bytes.Buffer{}))
	a := attrs(build(t, ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 1, DstPort: 2}), "fwagent:drop", 0, 1, 0, 0, unix.ETH_P_IP)
	before := time.Now()
	var ev Event
	r.fill(&ev, &a)
	if ev.Time.Before(before) || ev.Time.After(time.Now()) {
		t.Fatalf("Time = %v, want the time of receipt", ev.Time)
	}
}

func TestSequenceGapsCountAsLost(t *testing.T) {
	r := newTestReader(t, Config{}, NewJSONSink(&bytes.Buffer{}))
	for _, seq := range []uint32{7, 8, 12, 13, 0xffffffff, 0, 2} {
		r.trackSeq(seq)
	}
	// 9-11 missing (3), 14..0xfffffffe missing (huge jump: a reset, not
	// counted), 1 missing (1).
	if got := r.Stats().Lost; got != 4 {
		t.Fatalf("Lost = %d, want 4", got)
	}
}

func TestNewReaderRejects(t *testing.T) {
	sink := NewJSONSink(&bytes.Buffer{})
	if _, err := NewReader(Config{}, sink); err == nil {
		t.Fatal("NewReader without a mark mask succeeded")
	}
	if _, err := NewReader(Config{Marks: testMarks(t)}); err == nil {
		t.Fatal("NewReader without sinks succeeded")
	}
	if _, err := NewReader(Config{Marks: testMarks(t), Buffer: -1}, sink); err == nil {
		t.Fatal("NewReader with a negative buffer succeeded")
	}
}

// blockingSink records events but blocks in Write until released.
type blockingSink struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	ports   []uint16
	closed  atomic.Bool
}

func (s *blockingSink) Write(e *Event) error {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	s.mu.Lock()
	s.ports = append(s.ports, e.DstPort)
	s.mu.Unlock()
	return nil
}
func (s *blockingSink) Flush() error { return nil }
func (s *blockingSink) Close() error { s.closed.Store(true); return nil }

func TestSlowSinkShedsWithoutBlockingTheReader(t *testing.T) {
	const buffer, total = 8, 200
	sink := &blockingSink{entered: make(chan struct{}), release: make(chan struct{})}
	r := newTestReader(t, Config{Buffer: buffer}, sink)
	stop := r.startSinks()

	msg := func(port uint16) nflog.Attribute {
		return attrs(build(t, ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 1, DstPort: layers.UDPPort(port)}),
			"fwagent:drop", 0, 1, 0, 0, unix.ETH_P_IP)
	}
	msgs := make([]nflog.Attribute, total)
	for i := range msgs {
		msgs[i] = msg(uint16(i + 1))
	}

	// The first event goes to the sink, which then blocks holding it.
	if rc := r.handle(msgs[0]); rc != 0 {
		t.Fatalf("handle = %d, want 0", rc)
	}
	<-sink.entered

	// With the sink stuck, the reader must still get through every message.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, m := range msgs[1:] {
			r.handle(m)
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the reader blocked behind a slow sink")
	}

	s := r.Stats()
	if s.Received != total || s.Shed != total-1-buffer {
		t.Fatalf("with the sink blocked: %+v, want Received %d, Shed %d", s, total, total-1-buffer)
	}

	close(sink.release)
	r.shutdown()
	if rc := r.handle(msgs[0]); rc == 0 {
		t.Fatal("handle after shutdown asked for more messages")
	}
	stop()

	s = r.Stats()
	if s.Received != s.Written+s.Shed {
		t.Fatalf("counts do not add up: %+v", s)
	}
	if s.Written != 1+buffer {
		t.Fatalf("Written = %d, want %d", s.Written, 1+buffer)
	}
	// The sink saw the first event and then the queued ones, in order.
	want := []uint16{1, 2, 3, 4, 5, 6, 7, 8, 9}
	if !slices.Equal(sink.ports, want) {
		t.Fatalf("sink got ports %v, want %v", sink.ports, want)
	}
	if !sink.closed.Load() {
		t.Fatal("sink not closed on stop")
	}
}

// lineWriter hands every write to a channel, to observe flushes.
type lineWriter struct{ writes chan []byte }

func (w *lineWriter) Write(b []byte) (int, error) {
	w.writes <- append([]byte(nil), b...)
	return len(b), nil
}

func TestEventReachesWriterWithoutClose(t *testing.T) {
	w := &lineWriter{writes: make(chan []byte, 16)}
	r := newTestReader(t, Config{}, NewJSONSink(w))
	stop := r.startSinks()
	defer func() { r.shutdown(); stop() }()

	r.handle(attrs(build(t, ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 1, DstPort: 7}), "fwagent:drop", 0, 1, 0, 0, unix.ETH_P_IP))
	var got []byte
	select {
	case got = <-w.writes:
	case <-time.After(30 * time.Second):
		t.Fatal("event never flushed to the writer")
	}
	var ev map[string]any
	if err := json.Unmarshal(bytes.TrimSuffix(got, []byte("\n")), &ev); err != nil || !bytes.HasSuffix(got, []byte("\n")) {
		t.Fatalf("flushed %q: not one JSON line (%v)", got, err)
	}
	if ev["dport"] != 7.0 {
		t.Fatalf("dport = %v, want 7", ev["dport"])
	}
}

type failingSink struct{ writes atomic.Int64 }

func (s *failingSink) Write(*Event) error { s.writes.Add(1); return errors.New("disk full") }
func (s *failingSink) Flush() error       { return nil }
func (s *failingSink) Close() error       { return nil }

func TestSinkErrorsAreCountedAndOtherSinksStillWrite(t *testing.T) {
	var buf bytes.Buffer
	bad := &failingSink{}
	r := newTestReader(t, Config{}, bad, NewJSONSink(&buf))
	stop := r.startSinks()
	for range 3 {
		r.handle(attrs(build(t, ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 1, DstPort: 2}), "fwagent:drop", 0, 1, 0, 0, unix.ETH_P_IP))
	}
	r.shutdown()
	stop()
	s := r.Stats()
	if s.Written != 3 || s.Errors != 3 || bad.writes.Load() != 3 {
		t.Fatalf("stats %+v, failing sink saw %d writes; want 3 written, 3 errors", s, bad.writes.Load())
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 3 {
		t.Fatalf("good sink got %d lines, want 3", n)
	}
}

func TestJSONSinkAfterClose(t *testing.T) {
	var buf bytes.Buffer
	s := NewJSONSink(&buf)
	ev := Event{Time: testTime}
	if err := s.Write(&ev); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Fatal("JSON sink wrote through without buffering")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if bytes.Count(buf.Bytes(), []byte("\n")) != 1 {
		t.Fatalf("Close did not flush one line: %q", buf.String())
	}
	if err := s.Write(&ev); !errors.Is(err, ErrSinkClosed) {
		t.Fatalf("Write after Close = %v, want ErrSinkClosed", err)
	}
}

// flakyWriter fails while failing is set, like a file on a full disk.
type flakyWriter struct {
	failing bool
	buf     bytes.Buffer
}

func (w *flakyWriter) Write(b []byte) (int, error) {
	if w.failing {
		return 0, errors.New("no space left on device")
	}
	return w.buf.Write(b)
}

func TestJSONSinkRecoversAfterWriteErrors(t *testing.T) {
	w := &flakyWriter{failing: true}
	s := NewJSONSink(w)
	ev := Event{Time: testTime, Rule: "lost"}
	if err := s.Write(&ev); err != nil {
		t.Fatal(err) // buffered, the writer is not called yet
	}
	if err := s.Flush(); err == nil {
		t.Fatal("Flush to a failing writer succeeded")
	}
	w.failing = false
	ev.Rule = "kept"
	if err := s.Write(&ev); err != nil {
		t.Fatalf("Write after the writer recovered: %v", err)
	}
	if err := s.Flush(); err != nil {
		t.Fatalf("Flush after the writer recovered: %v", err)
	}
	if got := w.buf.String(); !strings.Contains(got, `"rule":"kept"`) || strings.Contains(got, `"rule":"lost"`) || strings.Count(got, "\n") != 1 {
		t.Fatalf("after recovery the file holds %q, want just the new event", got)
	}
}

func TestOpenFileAppendsWithMode0640(t *testing.T) {
	path := t.TempDir() + "/events.json"
	for _, rule := range []string{"first", "second"} {
		f, err := OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s := NewJSONSink(f)
		ev := Event{Time: testTime, Rule: rule}
		if err := s.Write(&ev); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(data)), "\n"); len(lines) != 2 ||
		!strings.Contains(lines[0], `"rule":"first"`) || !strings.Contains(lines[1], `"rule":"second"`) {
		t.Fatalf("file holds %q, want the first event then the second", data)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode&^0o640 != 0 {
		t.Fatalf("log file mode %v, want at most 0640", mode)
	}
	if _, err := OpenFile(t.TempDir() + "/missing/dir/events.json"); err == nil || !strings.HasPrefix(err.Error(), "droplog: open log file") {
		t.Fatalf("OpenFile in a missing directory = %v, want a wrapped error", err)
	}
}

func TestFillUsesTheRulesOwnPrefix(t *testing.T) {
	marks := testMarks(t)
	prefixes := map[uint32]string{3: "dns-ads"}
	r := newTestReader(t, Config{Marks: marks, RulePrefix: func(id uint32) string { return prefixes[id] }}, NewJSONSink(&bytes.Buffer{}))
	payload := build(t, ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 1, DstPort: 53})
	for _, tc := range []struct {
		id         uint32
		wantPrefix string
	}{{3, "dns-ads"}, {4, "fwagent:reject"}} {
		a := attrs(payload, "fwagent:reject", marks.Encode(0, nf.MarkRejectLog, tc.id), unix.NF_INET_LOCAL_OUT, 0, 0, unix.ETH_P_IP)
		var ev Event
		r.fill(&ev, &a)
		if ev.Prefix != tc.wantPrefix || ev.Event != "reject" {
			t.Errorf("rule id %d: prefix %q event %q, want prefix %q and event reject", tc.id, ev.Prefix, ev.Event, tc.wantPrefix)
		}
	}
}
