package gen

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/testing/eventually"
)

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

func startSink(t *testing.T) (*Sink, func() SinkStats) {
	t.Helper()
	s, err := ListenSink(loopback)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return s, func() SinkStats {
		// Loopback delivery is synchronous with the send, so every packet
		// sent is in the socket's queue or already read; wait until the
		// sink has read the queue empty (a fixed pause was too short on a
		// loaded machine running -race), then stop it.
		waitDrained(t, s.conn)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return s.Stats()
	}
}

// waitDrained waits until c's receive queue is empty, for at most 30 s.
func waitDrained(t *testing.T, c *net.UDPConn) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	// Empty is enough: the sink may still be counting the batch it last
	// read, but it does so before its next read, which cancel interrupts.
	var queued int
	if !eventually.True(30*time.Second, 5*time.Millisecond, func() bool {
		var qerr error
		if err := rc.Control(func(fd uintptr) { queued, qerr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil || qerr != nil {
			t.Fatalf("receive queue: %v %v", err, qerr)
		}
		return queued == 0
	}) {
		t.Fatalf("the sink left %d bytes unread for 30 s", queued)
	}
}

func TestSendSink(t *testing.T) {
	tests := []struct {
		name  string
		flows int
		rate  float64
		dur   time.Duration
	}{
		{"one flow paced", 1, 5000, 300 * time.Millisecond},
		{"eight flows paced", 8, 20000, 300 * time.Millisecond},
		{"max rate", 4, 0, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, stop := startSink(t)
			res, err := Send(context.Background(), SendConfig{Dst: s.Addr(), Flows: tt.flows, Payload: 36, Rate: tt.rate, Duration: tt.dur})
			if err != nil {
				t.Fatal(err)
			}
			st := stop()
			if res.Sent == 0 || res.Errors != 0 {
				t.Fatalf("sent %d errors %d", res.Sent, res.Errors)
			}
			if st.Packets != res.Sent {
				t.Errorf("sink got %d packets, sender sent %d", st.Packets, res.Sent)
			}
			if st.Bytes != 36*st.Packets {
				t.Errorf("sink got %d bytes for %d packets of 36", st.Bytes, st.Packets)
			}
			// Each send goes to the next flow, so enough sends visit them
			// all; a starved sender (a loaded test machine) may make too
			// few sends to visit every flow, but never more flows.
			if st.Flows > tt.flows || st.Flows == 0 || (res.Sent >= uint64(64*tt.flows) && st.Flows != tt.flows) {
				t.Errorf("sink saw %d flows, want %d: %+v %+v", st.Flows, tt.flows, st, res)
			}
			if tt.rate > 0 && float64(res.Sent+res.Skipped) > tt.rate*res.Elapsed.Seconds()+float64(64) {
				t.Errorf("paced sender sent %d in %v at rate %v: more than one batch over", res.Sent, res.Elapsed, tt.rate)
			}
		})
	}
}

func TestSendRejectsBadPayload(t *testing.T) {
	if _, err := Send(context.Background(), SendConfig{Dst: netip.MustParseAddrPort("127.0.0.1:9"), Payload: -1, Duration: time.Millisecond}); err == nil {
		t.Fatal("negative payload accepted")
	}
}

// serveUntilStopped runs serve on a goroutine of its own; stop cancels its
// context and returns its error once it has returned.
func serveUntilStopped(serve func(ctx context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

func TestEchoProbe(t *testing.T) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	stop := serveUntilStopped(func(ctx context.Context) error { return ServeEcho(ctx, c) })
	dst := c.LocalAddr().(*net.UDPAddr).AddrPort()
	res, err := Probe(context.Background(), ProbeConfig{Dst: dst, Rate: 2000, Duration: 100 * time.Millisecond, Payload: 64})
	serveErr := stop()
	if err != nil {
		t.Fatal(err)
	}
	if serveErr != nil {
		t.Fatal(serveErr)
	}
	if res.Sent < 150 || res.Received != res.Sent {
		t.Fatalf("sent %d received %d", res.Sent, res.Received)
	}
	if !(0 < res.P50us && res.P50us <= res.P99us && res.P99us <= res.P999us && res.P999us <= res.MaxUs) {
		t.Errorf("percentiles out of order: %+v", res)
	}
}

func TestProbeLosesToNothing(t *testing.T) {
	// A port nobody serves: every probe is lost, and the result says so.
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	dst := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	res, err := Probe(context.Background(), ProbeConfig{Dst: dst, Rate: 1000, Duration: 20 * time.Millisecond, Grace: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Received != 0 || res.P99us != 0 {
		t.Fatalf("%+v", res)
	}
}

func TestConnectRate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := serveUntilStopped(func(ctx context.Context) error { return ServeTCP(ctx, ln) })
	dst := ln.Addr().(*net.TCPAddr).AddrPort()
	res, err := ConnectRate(context.Background(), ConnectConfig{Dst: dst, Concurrency: 4, Duration: 100 * time.Millisecond})
	serveErr := stop()
	if err != nil {
		t.Fatal(err)
	}
	if serveErr != nil {
		t.Fatal(serveErr)
	}
	if res.Connects == 0 || res.Errors != 0 || res.PerSec <= 0 {
		t.Fatalf("%+v", res)
	}
}

func TestPercentile(t *testing.T) {
	ds := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ds(7), 0.999, 7},
		{"median of four", ds(1, 2, 3, 4), 0.5, 2},
		{"p99 of 100", ds(hundred...), 0.99, 99},
		{"p99.9 of 100 is the max", ds(hundred...), 0.999, 100},
		{"p50 of 100", ds(hundred...), 0.5, 50},
	}
	for _, tt := range tests {
		if got := Percentile(tt.sorted, tt.q); got != tt.want {
			t.Errorf("%s: Percentile(q=%v) = %v, want %v", tt.name, tt.q, got, tt.want)
		}
	}
}

func TestSockaddrAddrPort(t *testing.T) {
	var v4 unix.RawSockaddrInet4
	v4.Family = unix.AF_INET
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&v4.Port))[:], 5201)
	v4.Addr = [4]byte{10, 1, 2, 3}
	var v6 unix.RawSockaddrInet6
	v6.Family = unix.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&v6.Port))[:], 9000)
	v6.Addr = netip.MustParseAddr("fd00::2").As16()
	raw := func(p unsafe.Pointer, n uintptr) []byte { return unsafe.Slice((*byte)(p), n) }
	tests := []struct {
		name string
		b    []byte
		want netip.AddrPort
		ok   bool
	}{
		{"ipv4", raw(unsafe.Pointer(&v4), unsafe.Sizeof(v4)), netip.MustParseAddrPort("10.1.2.3:5201"), true},
		{"ipv6", raw(unsafe.Pointer(&v6), unsafe.Sizeof(v6)), netip.MustParseAddrPort("[fd00::2]:9000"), true},
		{"short ipv6", raw(unsafe.Pointer(&v6), 12), netip.AddrPort{}, false},
		{"empty", nil, netip.AddrPort{}, false},
	}
	for _, tt := range tests {
		got, ok := sockaddrAddrPort(tt.b)
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s: got %v %v, want %v %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestProbeRoundTrip(t *testing.T) {
	tests := []struct {
		seq  uint64
		sent int64
		pad  int
	}{{0, 0, 0}, {1, 12345, 44}, {^uint64(0), -1, 3}}
	for _, tt := range tests {
		b := appendProbe(nil, tt.seq, tt.sent)
		b = append(b, make([]byte, tt.pad)...)
		seq, sent, ok := parseProbe(b)
		if !ok || seq != tt.seq || sent != tt.sent {
			t.Errorf("round trip of %d/%d gave %d/%d/%v", tt.seq, tt.sent, seq, sent, ok)
		}
		if _, _, ok := parseProbe(b[:probeLen-1]); ok {
			t.Errorf("truncated probe accepted")
		}
	}
}

func FuzzParseProbe(f *testing.F) {
	f.Add(appendProbe(nil, 1, 2))
	f.Add([]byte("FWBP"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, sent, ok := parseProbe(b)
		if !ok {
			return
		}
		// Whatever parses must be exactly what appendProbe would write.
		again := appendProbe(nil, seq, sent)
		if string(again) != string(b[:probeLen]) {
			t.Fatalf("parse(%x) = %d,%d which encodes as %x", b, seq, sent, again)
		}
	})
}

func BenchmarkParseProbe(b *testing.B) {
	p := appendProbe(make([]byte, 0, 64), 42, 123456789)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := parseProbe(p); !ok {
			b.Fatal("not parsed")
		}
	}
}

// BenchmarkSendLoopback measures the sender's own cost per packet over
// loopback (one sendmmsg of 64 per op), the ceiling it puts on every
// measurement.
func BenchmarkSendLoopback(b *testing.B) {
	s, err := ListenSink(loopback)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	b.ReportAllocs()
	var sent uint64
	for b.Loop() {
		res, err := Send(ctx, SendConfig{Dst: s.Addr(), Flows: 1, Payload: 36, Duration: time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		sent += res.Sent
	}
	b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "pkts/s")
}
