package rules

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/florianl/go-nflog/v2"
	"github.com/florianl/go-nfqueue/v2"
	"github.com/vishvananda/netns"

	"github.com/fwagent/fwagent/internal/nf"
)

// dialUDP connects a UDP socket in the namespace to addr, closed when the
// test ends.
func (ns *testNS) dialUDP(t *testing.T, addr *net.UDPAddr) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	ns.do(t, func() error {
		var err error
		c, err = net.DialUDP("udp4", nil, addr)
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// do runs fn on a locked OS thread switched into the namespace. Sockets
// created inside keep the namespace after the thread switches back.
func (ns *testNS) do(t *testing.T, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns.h); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = fn()
		if serr := netns.Set(orig); serr != nil {
			// Leave the thread locked: the runtime then ends it with this
			// goroutine instead of reusing a thread in the wrong namespace.
			errc <- errors.Join(err, serr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in namespace: %v", err)
	}
}

// fakeAgent stands in for verdict/: it listens on the table's queue and
// NFLOG group in a namespace and answers by the first word of each UDP
// payload ("drop", "rejectlog", "acceptlog", "offload"; TCP SYNs to the
// configured port are rejected; anything else is accepted), the way the
// agent answers: NF_REPEAT with the action in the mark.
type fakeAgent struct {
	m    nf.Marks
	logs chan queuedPacket

	mu      sync.Mutex
	queued  []queuedPacket
	gen     uint32
	tcpPort uint16
}

func startFakeAgent(t *testing.T, nsFd int, cfg Config) *fakeAgent {
	t.Helper()
	ag := &fakeAgent{m: cfg.Marks, gen: cfg.Generation, logs: make(chan queuedPacket, 64)}
	// Cancel before closing: go-nflog and go-nfqueue stop their receive
	// loops on cancellation, and closing a socket under a blocked receive
	// can hang.
	ctx, cancel := context.WithCancel(context.Background())
	var closers []func() error
	t.Cleanup(func() {
		cancel()
		for _, c := range closers {
			c()
		}
	})
	nl, err := nflog.Open(&nflog.Config{NetNS: nsFd, Group: cfg.LogGroup, Copymode: nflog.CopyPacket, Bufsize: 0xffff, QThresh: 1})
	if err != nil {
		t.Fatalf("nflog open: %v", err)
	}
	closers = append(closers, nl.Close)
	if err := nl.RegisterWithErrorFunc(ctx, func(a nflog.Attribute) int {
		var q queuedPacket
		if a.Prefix != nil {
			q.payload = *a.Prefix
		}
		if a.Mark != nil {
			q.mark = *a.Mark
		}
		if a.Payload != nil {
			q.payload += " " + udpPayload(*a.Payload)
		}
		ag.logs <- q
		return 0
	}, func(error) int { return 0 }); err != nil {
		t.Fatalf("nflog register: %v", err)
	}
	nfq, err := nfqueue.Open(&nfqueue.Config{NetNS: nsFd, NfQueue: cfg.QueueBase, MaxPacketLen: 0xffff, MaxQueueLen: 256, Copymode: nfqueue.NfQnlCopyPacket, WriteTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("nfqueue open: %v", err)
	}
	closers = append(closers, nfq.Close)
	m := cfg.Marks
	if err := nfq.RegisterWithErrorFunc(ctx, func(a nfqueue.Attribute) int {
		if a.PacketID == nil || a.Payload == nil {
			return 0
		}
		q := queuedPacket{payload: udpPayload(*a.Payload)}
		if a.Mark != nil {
			q.mark = *a.Mark
		}
		ag.mu.Lock()
		if isTCPSyn(*a.Payload, ag.tcpPort) {
			q.payload = "tcp-syn"
		}
		ag.queued = append(ag.queued, q)
		g := ag.gen
		ag.mu.Unlock()
		id := *a.PacketID
		repeat := func(mark uint32) { _ = nfq.SetVerdictWithOption(id, nfqueue.NfRepeat, nfqueue.WithMark(mark)) }
		switch strings.Fields(q.payload + " x")[0] {
		case "drop":
			repeat(m.Encode(q.mark, nf.MarkDropLog, 5))
		case "rejectlog":
			repeat(m.Encode(q.mark, nf.MarkRejectLog, 6))
		case "tcp-syn":
			repeat(m.Encode(q.mark, nf.MarkReject, 0))
		case "acceptlog":
			repeat(m.Encode(q.mark, nf.MarkAcceptLog, 9))
		case "offload":
			repeat(m.OffloadMark(q.mark, g))
		default:
			_ = nfq.SetVerdict(id, nfqueue.NfAccept)
		}
		return 0
	}, func(error) int { return 0 }); err != nil {
		t.Fatalf("nfqueue register: %v", err)
	}
	return ag
}

func (ag *fakeAgent) setTCPPort(p uint16) {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	ag.tcpPort = p
}

func (ag *fakeAgent) setGeneration(g uint32) {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	ag.gen = g
}

// queuedWith returns the queued packets whose payload starts with prefix.
func (ag *fakeAgent) queuedWith(prefix string) []queuedPacket {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	var out []queuedPacket
	for _, q := range ag.queued {
		if strings.HasPrefix(q.payload, prefix) {
			out = append(out, q)
		}
	}
	return out
}

// waitLog returns the next NFLOG message and checks its prefix.
func (ag *fakeAgent) waitLog(t *testing.T, prefix string) queuedPacket {
	t.Helper()
	select {
	case q := <-ag.logs:
		if !strings.HasPrefix(q.payload, prefix+" ") {
			t.Fatalf("NFLOG got %q, want prefix %q", q.payload, prefix)
		}
		return q
	case <-time.After(10 * time.Second):
		t.Fatalf("no NFLOG message with prefix %q", prefix)
	}
	return queuedPacket{}
}

// queuedPacket is what the test's queue handler saw.
type queuedPacket struct {
	payload string // UDP payload, or "tcp-syn"
	mark    uint32
}

// TestPacketPath drives real packets over loopback in a private namespace
// through the installed table and a go-nfqueue handler that answers the way
// verdict/ does, and checks what the kernel rules then do: drop and log,
// reject (ICMP and TCP reset), accept and log, offload, re-queue after a
// generation change, and mark established flows.
func TestPacketPath(t *testing.T) {
	ns := newTestNS(t)
	ns.mustRun(t, "", "ip", "link", "set", "lo", "up")
	cfg := DefaultConfig()
	cfg.Hooks = []nf.Hook{nf.HookInput}
	cfg.AcceptLoopback = false // the test traffic is loopback traffic
	cfg.QueueKind = QueueXT
	cfg.Generation = 11
	cfg.LogGroup = 100
	m := cfg.Marks
	tbl, err := Install(ns.conn(t), cfg)
	if err != nil {
		t.Fatal(err)
	}

	ag := startFakeAgent(t, ns.fd(), cfg)
	queuedWith := ag.queuedWith

	var srv, cli, cli2 *net.UDPConn
	var tcpLn net.Listener
	ns.do(t, func() error {
		var err error
		if srv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			return err
		}
		if cli, err = net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr)); err != nil {
			return err
		}
		if cli2, err = net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr)); err != nil {
			return err
		}
		tcpLn, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	})
	t.Cleanup(func() { srv.Close(); cli.Close(); cli2.Close(); tcpLn.Close() })
	ag.setTCPPort(uint16(tcpLn.Addr().(*net.TCPAddr).Port))

	// recvUntil reads datagrams until want arrives and returns all read.
	recvUntil := func(t *testing.T, want string) []string {
		t.Helper()
		var got []string
		buf := make([]byte, 2048)
		for {
			// The deadline only bounds a failing test; no assertion uses time.
			srv.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, _, err := srv.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("waiting for %q (got %v): %v", want, got, err)
			}
			got = append(got, string(buf[:n]))
			if string(buf[:n]) == want {
				return got
			}
		}
	}
	send := func(t *testing.T, c *net.UDPConn, s string) {
		t.Helper()
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatalf("send %q: %v", s, err)
		}
	}

	t.Run("drop with log", func(t *testing.T) {
		send(t, cli, "drop 1")
		send(t, cli, "pass 1")
		if got := recvUntil(t, "pass 1"); len(got) != 1 {
			t.Fatalf("delivered %q, want only the accepted packet", got)
		}
		q := ag.waitLog(t, LogPrefix(nf.MarkDropLog))
		if q.payload != "fwagent:drop drop 1" {
			t.Errorf("logged %q", q.payload)
		}
		if a, _, id := m.Decode(q.mark); a != nf.MarkDropLog || id != 5 {
			t.Errorf("logged mark %#x decodes to %v id %d, want droplog id 5", q.mark, a, id)
		}
	})

	t.Run("accept with log", func(t *testing.T) {
		send(t, cli, "acceptlog 1")
		if got := recvUntil(t, "acceptlog 1"); len(got) != 1 {
			t.Fatalf("delivered %q", got)
		}
		q := ag.waitLog(t, LogPrefix(nf.MarkAcceptLog))
		if a, _, id := m.Decode(q.mark); a != nf.MarkAcceptLog || id != 9 {
			t.Errorf("logged mark %#x decodes to %v id %d", q.mark, a, id)
		}
	})

	t.Run("reject with log sends ICMP port unreachable", func(t *testing.T) {
		send(t, cli, "rejectlog 1")
		cli.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := cli.Read(make([]byte, 64))
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("read after reject: %v, want ECONNREFUSED from the ICMP error", err)
		}
		q := ag.waitLog(t, LogPrefix(nf.MarkRejectLog))
		if q.payload != "fwagent:reject rejectlog 1" {
			t.Errorf("logged %q", q.payload)
		}
	})

	t.Run("IPv6 drop with log and reject", func(t *testing.T) {
		var srv6, cli6 *net.UDPConn
		ns.do(t, func() error {
			var err error
			if srv6, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
				return err
			}
			cli6, err = net.DialUDP("udp6", nil, srv6.LocalAddr().(*net.UDPAddr))
			return err
		})
		defer srv6.Close()
		defer cli6.Close()
		send(t, cli6, "drop 6")
		send(t, cli6, "pass 6")
		srv6.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		n, _, err := srv6.ReadFromUDP(buf)
		if err != nil || string(buf[:n]) != "pass 6" {
			t.Fatalf("first datagram delivered: %q, %v; want only the accepted one", buf[:n], err)
		}
		if q := ag.waitLog(t, LogPrefix(nf.MarkDropLog)); q.payload != "fwagent:drop drop 6" {
			t.Errorf("logged %q", q.payload)
		}
		send(t, cli6, "rejectlog 6")
		cli6.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := cli6.Read(buf); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("read after reject: %v, want ECONNREFUSED from the ICMPv6 error", err)
		}
		if q := ag.waitLog(t, LogPrefix(nf.MarkRejectLog)); q.payload != "fwagent:reject rejectlog 6" {
			t.Errorf("logged %q", q.payload)
		}
	})

	t.Run("reject TCP with reset", func(t *testing.T) {
		var err error
		ns.do(t, func() error {
			d := net.Dialer{Timeout: 10 * time.Second}
			var c net.Conn
			c, err = d.Dial("tcp4", tcpLn.Addr().String())
			if c != nil {
				c.Close()
			}
			return nil
		})
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial: %v, want ECONNREFUSED from the TCP reset", err)
		}
		if len(queuedWith("tcp-syn")) == 0 {
			t.Fatal("SYN never queued")
		}
	})

	t.Run("established flows are marked", func(t *testing.T) {
		send(t, cli2, "hello")
		recvUntil(t, "hello")
		// A reply makes the kernel's conntrack entry established.
		if _, err := srv.WriteToUDP([]byte("reply"), cli2.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
		cli2.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := cli2.Read(make([]byte, 64)); err != nil {
			t.Fatal(err)
		}
		send(t, cli2, "again")
		recvUntil(t, "again")
		first, again := queuedWith("hello"), queuedWith("again")
		if len(first) != 1 || len(again) != 1 {
			t.Fatalf("queued hello %d, again %d times", len(first), len(again))
		}
		if _, est, _ := m.Decode(first[0].mark); est {
			t.Errorf("first packet of a new flow marked established (%#x)", first[0].mark)
		}
		if _, est, _ := m.Decode(again[0].mark); !est {
			t.Errorf("packet of an established flow not marked (%#x)", again[0].mark)
		}
	})

	t.Run("offload then generation change", func(t *testing.T) {
		oc := ns.dialUDP(t, srv.LocalAddr().(*net.UDPAddr))
		// One at a time: packets sent before the first verdict would all
		// be in the queue already.
		for i := 1; i <= 3; i++ {
			send(t, oc, fmt.Sprintf("offload %d", i))
			recvUntil(t, fmt.Sprintf("offload %d", i))
		}
		if n := len(queuedWith("offload")); n != 1 {
			t.Fatalf("offloaded flow queued %d times, want once", n)
		}
		if err := tbl.SetGeneration(12); err != nil {
			t.Fatal(err)
		}
		ag.setGeneration(12)
		send(t, oc, "offload 4") // stale generation: queued again, offloaded anew
		recvUntil(t, "offload 4")
		send(t, oc, "offload 5")
		recvUntil(t, "offload 5")
		if n := len(queuedWith("offload")); n != 2 {
			t.Fatalf("after the generation change the flow was queued %d times in all, want 2", n)
		}
		// The offload was for the original direction at input: the
		// replies, which reach input too over loopback, still queue.
		for i := 1; i <= 2; i++ {
			if _, err := srv.WriteToUDP([]byte(fmt.Sprintf("back %d", i)), oc.LocalAddr().(*net.UDPAddr)); err != nil {
				t.Fatal(err)
			}
			oc.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := oc.Read(make([]byte, 64)); err != nil {
				t.Fatalf("reply %d: %v", i, err)
			}
		}
		if n := len(queuedWith("back")); n != 2 {
			t.Fatalf("replies of a flow offloaded in its original direction queued %d times, want 2", n)
		}
	})

	t.Run("stale generation bits are cleared, not revived by a wrap", func(t *testing.T) {
		sc := ns.dialUDP(t, srv.LocalAddr().(*net.UDPAddr))
		gen := tbl.Generation()
		send(t, sc, "offload stale")
		recvUntil(t, "offload stale")
		// A reload: the flow's next packet is queued, and the agent now
		// accepts without offloading.
		if err := tbl.SetGeneration(gen + 1); err != nil {
			t.Fatal(err)
		}
		ag.setGeneration(gen + 1)
		send(t, sc, "keep 1")
		recvUntil(t, "keep 1")
		// MaxGen+1 reloads later the generation number comes round again;
		// the flow's old offload bit must be gone by then.
		wrapped := gen + m.MaxGen() + 1
		if err := tbl.SetGeneration(wrapped); err != nil {
			t.Fatal(err)
		}
		ag.setGeneration(wrapped)
		send(t, sc, "keep 2")
		recvUntil(t, "keep 2")
		if n := len(queuedWith("keep")); n != 2 {
			t.Fatalf("after the generation wrapped the flow was queued %d times, want 2 (its stale offload bit revived)", n)
		}
	})

	// Nothing else was logged: every log message was expected above.
	select {
	case q := <-ag.logs:
		t.Errorf("unexpected NFLOG message %q", q.payload)
	default:
	}
}

// udpPayload returns the UDP payload of an IPv4 packet or of an IPv6 packet
// without extension headers, or "".
func udpPayload(p []byte) string {
	switch {
	case len(p) >= 20 && p[0]>>4 == 4 && p[9] == syscall.IPPROTO_UDP:
		if ihl := int(p[0]&0xf) * 4; len(p) >= ihl+8 {
			return string(p[ihl+8:])
		}
	case len(p) >= 48 && p[0]>>4 == 6 && p[6] == syscall.IPPROTO_UDP:
		return string(p[48:])
	}
	return ""
}

func isTCPSyn(p []byte, port uint16) bool {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != syscall.IPPROTO_TCP {
		return false
	}
	ihl := int(p[0]&0xf) * 4
	if len(p) < ihl+14 {
		return false
	}
	dport := uint16(p[ihl+2])<<8 | uint16(p[ihl+3])
	flags := p[ihl+13]
	return dport == port && flags&0x02 != 0 && flags&0x10 == 0
}
