package droplog

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// lineCollector is an io.Writer that splits what the JSON sink writes into
// lines and reports each one.
type lineCollector struct {
	mu    sync.Mutex
	buf   []byte
	lines chan string
}

func (c *lineCollector) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, b...)
	for {
		i := bytes.IndexByte(c.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		c.lines <- string(c.buf[:i])
		c.buf = c.buf[i+1:]
	}
}

// TestKernelUDPDrops logs UDP datagrams dropped by an nft rule in a fresh
// namespace and checks the events end to end: odd payload lengths (the
// netlink messages are then not 4-byte aligned, which crashed older
// mdlayher/netlink releases), one datagram longer than the copy range, the
// rule resolved from the mark an nft rule set, and the interface name
// resolved inside the namespace.
func TestKernelUDPDrops(t *testing.T) {
	const port, ruleID = 9999, 3
	lines := &lineCollector{lines: make(chan string, 64)}
	rig := startRig(t, port, ruleID, NewJSONSink(lines))
	n, r, mark, ctx := rig.net, rig.reader, rig.mark, rig.ctx

	sizes := []int{1, 3, 5, 7, 1001}
	type sent struct {
		family string
		src    netip.AddrPort
		length int
	}
	var want []sent
	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		err := n.Client.Do(func() error {
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, port)))
			if err != nil {
				return err
			}
			defer c.Close()
			src := c.LocalAddr().(*net.UDPAddr).AddrPort()
			family, hdr := "ipv4", 20
			if dst.Is6() {
				family, hdr = "ipv6", 40
			}
			for _, size := range sizes {
				if _, err := c.Write(bytes.Repeat([]byte{'x'}, size)); err != nil {
					return err
				}
				want = append(want, sent{family, netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), hdr + 8 + size})
			}
			return nil
		})
		if err != nil {
			t.Fatalf("send to %s: %v", dst, err)
		}
	}

	var got []jsonEvent
	for len(got) < len(want) {
		select {
		case line := <-lines.lines:
			var ev jsonEvent
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("bad event line %q: %v", line, err)
			}
			got = append(got, ev)
		case <-ctx.Done():
			t.Fatalf("got %d of %d events before the deadline: %+v (stats %+v)", len(got), len(want), got, r.Stats())
		}
	}
	if err := rig.stop(); err != nil {
		t.Fatalf("Run returned %v after cancel", err)
	}

	serverIf := n.Server.Ifaces()[0].Name
	for i, w := range want {
		ev := got[i]
		dst := n.Server.Addr4()
		if w.family == "ipv6" {
			dst = n.Server.Addr6()
		}
		if ev.Rule != "block-udp-9999" || ev.Verdict != "drop" || ev.Event != "drop" || ev.Hook != "input" ||
			ev.Family != w.family || ev.Proto != "udp" || ev.Src != w.src.Addr().String() ||
			ev.Dst != dst.String() || ev.Sport != w.src.Port() || ev.Dport != port ||
			ev.Length != w.length || ev.In != serverIf || ev.Out != "" || ev.Prefix != "fwagent:drop" ||
			ev.Mark != mark {
			t.Errorf("event %d = %+v, want %s %s:%d -> %s:%d length %d in %s mark %#x", i, ev,
				w.family, w.src.Addr(), w.src.Port(), dst, port, w.length, serverIf, mark)
		}
		ts, err := time.Parse(time.RFC3339Nano, ev.Time)
		if err != nil || !strings.HasSuffix(ev.Time, "Z") || ts.IsZero() {
			t.Errorf("event %d time %q: not RFC 3339 UTC (%v)", i, ev.Time, err)
		}
	}
	s := r.Stats()
	if s.Received != uint64(len(want)) || s.Written != s.Received || s.Shed != 0 || s.Errors != 0 || s.Lost != 0 {
		t.Fatalf("stats %+v, want %d received and written, nothing shed, failed or lost", s, len(want))
	}
}

// TestKernelGroupTaken: a group has one listener per namespace; a second
// Reader must fail with an error instead of hanging or stealing it, and a
// Reader runs once.
func TestKernelGroupTaken(t *testing.T) {
	rig := startRig(t, 9999, 1, NewJSONSink(io.Discard))
	second, err := NewReader(Config{Group: rig.group, Marks: testMarks(t), NetNS: int(rig.net.Server.Handle())}, NewJSONSink(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	err = second.Run(rig.ctx)
	if err == nil || !strings.Contains(err.Error(), "bind group") || !errors.Is(err, unix.EPERM) {
		t.Fatalf("second Run on a taken group = %v, want the kernel's EPERM on binding the group", err)
	}
	if err := rig.reader.Run(rig.ctx); err == nil {
		t.Fatal("Run on a running Reader succeeded")
	}
	select {
	case <-second.Ready():
		t.Fatal("a Reader that failed to bind reports ready")
	default:
	}
}

// auditPort is the TCP port whose SYNs the rig's output chain logs as
// would_drop and accepts.
const auditPort = 7777

// TestKernelTCPAuditOnOutput: a SYN the host sends, logged as would_drop at
// the output hook and accepted, becomes an event with the output interface,
// the SYN flag and verdict accept, over IPv4 and IPv6.
func TestKernelTCPAuditOnOutput(t *testing.T) {
	lines := &lineCollector{lines: make(chan string, 64)}
	rig := startRig(t, 9999, 1, NewJSONSink(lines))
	n := rig.net
	// Nothing listens on the client: each connect ends with a reset, after
	// the SYN has been logged.
	for _, dst := range []netip.Addr{n.Client.Addr4(), n.Client.Addr6()} {
		_ = n.Server.Do(func() error {
			d := net.Dialer{Timeout: 5 * time.Second}
			c, err := d.DialContext(rig.ctx, "tcp", netip.AddrPortFrom(dst, auditPort).String())
			if err == nil {
				c.Close()
			}
			return nil
		})
	}
	serverIf := n.Server.Ifaces()[0].Name
	for i, want := range []struct{ family, src, dst string }{
		{"ipv4", n.Server.Addr4().String(), n.Client.Addr4().String()},
		{"ipv6", n.Server.Addr6().String(), n.Client.Addr6().String()},
	} {
		var ev jsonEvent
		select {
		case line := <-lines.lines:
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("bad event line %q: %v", line, err)
			}
		case <-rig.ctx.Done():
			t.Fatalf("event %d never arrived (stats %+v)", i, rig.reader.Stats())
		}
		if ev.Rule != "audit-tcp" || ev.Verdict != "accept" || ev.Event != "would_drop" || ev.Hook != "output" ||
			ev.Family != want.family || ev.Proto != "tcp" || ev.Src != want.src || ev.Dst != want.dst ||
			ev.Dport != auditPort || ev.Sport == 0 || ev.TCPFlags == nil || *ev.TCPFlags != "S" || ev.In != "" || ev.Out != serverIf ||
			ev.Prefix != "fwagent:would_drop" || ev.Mark != rig.auditMark {
			t.Errorf("event %d = %+v, want a would_drop SYN %s -> %s:%d out %s", i, ev, want.src, want.dst, auditPort, serverIf)
		}
	}
	if err := rig.stop(); err != nil {
		t.Fatal(err)
	}
}

// rig is a client and server namespace, an nft table in the server that
// marks UDP to port with a drop-log mark for ruleID, logs it to a random
// NFLOG group and drops it, and a running Reader on that group.
type rig struct {
	net    *testnet.Net
	reader *Reader
	mark   uint32
	// auditMark is what the output chain sets on TCP to auditPort.
	auditMark uint32
	group     uint16
	ctx       context.Context
	stop      func() error
}

func startRig(tb testing.TB, port uint16, ruleID uint32, sinks ...Sink) *rig {
	tb.Helper()
	return startRigWith(tb, port, ruleID, nil, sinks...)
}

// startRigWith is startRig with a chance to change the Reader's Config.
func startRigWith(tb testing.TB, port uint16, ruleID uint32, tweak func(*Config), sinks ...Sink) *rig {
	tb.Helper()
	n := testnet.New(tb, testnet.WithPrefix("fwt-dlog"))
	testnet.RequireCommands(tb, "nft")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	tb.Cleanup(cancel)

	marks := testMarks(tb)
	mark := marks.Encode(0x5, nf.MarkDropLog, ruleID)
	auditMark := marks.Encode(0, nf.MarkWouldDrop, ruleID+1)
	var rb [2]byte
	if _, err := rand.Read(rb[:]); err != nil {
		tb.Fatal(err)
	}
	group := binary.BigEndian.Uint16(rb[:])%60000 + 1000

	ruleset := fmt.Sprintf(`table inet fwt_droplog {
	chain in {
		type filter hook input priority 0; policy accept;
		udp dport %d meta mark set %#x
		udp dport %d log group %d prefix "fwagent:drop" drop
	}
	chain out {
		type filter hook output priority 0; policy accept;
		tcp dport %d meta mark set %#x
		tcp dport %d log group %d prefix "fwagent:would_drop" accept
	}
}
`, port, mark, port, group, auditPort, auditMark, auditPort, group)
	cmd := n.Server.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("nft -f: %v\n%s", err, out)
	}

	cfg := Config{
		Group: group,
		Marks: marks,
		RuleName: func(id uint32) string {
			switch id {
			case ruleID:
				return "block-udp-9999"
			case ruleID + 1:
				return "audit-tcp"
			}
			return ""
		},
		// IfName stays nil: names are resolved inside the namespace.
		NetNS: int(n.Server.Handle()),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	r, err := NewReader(cfg, sinks...)
	if err != nil {
		tb.Fatal(err)
	}
	runDone := make(chan error, 1)
	runCtx, stopRun := context.WithCancel(ctx)
	go func() { runDone <- r.Run(runCtx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopRun()
		return <-runDone
	}
	tb.Cleanup(func() { _ = stop() })
	select {
	case <-r.Ready():
	case err := <-runDone:
		tb.Fatalf("Run: %v", err)
	case <-ctx.Done():
		tb.Fatal("reader never bound the log group")
	}
	return &rig{net: n, reader: r, mark: mark, auditMark: auditMark, group: group, ctx: ctx, stop: stop}
}

// BenchmarkKernelLogPath floods a namespace with UDP datagrams (hping3, a
// separate process, so its CPU is not counted) that an nft rule logs and
// drops, until the Reader has received b.N events, and reports:
//   - cpu-ns/event: this process's CPU time (user+sys: go-nflog, decode,
//     encode, sink) per event received; 1e9 / it is the events/s one core
//     sustains;
//   - written/s: the rate that reached the JSON sink (io.Discard);
//   - lost% (kernel could not queue to the socket) and shed% (queue full).
func BenchmarkKernelLogPath(b *testing.B) {
	testnet.RequireCommands(b, "hping3")
	const port = 9999
	rig := startRig(b, port, 3, NewJSONSink(io.Discard))
	r := rig.reader

	var before, after unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &before); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	flood := rig.net.Client.Command(rig.ctx, "hping3", "--udp", "-p", fmt.Sprint(port), "--flood", "-q", "-d", "64",
		rig.net.Server.Addr4().String())
	if err := flood.Start(); err != nil {
		b.Fatal(err)
	}
	for r.Stats().Received < uint64(b.N) && rig.ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	_ = flood.Process.Kill()
	_ = flood.Wait()
	if err := unix.Getrusage(unix.RUSAGE_SELF, &after); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	s := r.Stats()
	if err := rig.stop(); err != nil {
		b.Fatal(err)
	}
	if s.Received < uint64(b.N) {
		b.Fatalf("received %d of %d events before the deadline", s.Received, b.N)
	}
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(s.Received), "cpu-ns/event")
	b.ReportMetric(float64(s.Written)/elapsed.Seconds(), "written/s")
	b.ReportMetric(100*float64(s.Lost)/float64(s.Received+s.Lost), "lost%")
	b.ReportMetric(100*float64(s.Shed)/float64(s.Received), "shed%")
}
