package nfqmsg

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// TestReaderGSOCopyRange streams TCP through a GSO queue that first copies
// 128 bytes of each packet, then, after SetCopyRange on the running reader,
// whole packets. With the short range every packet's copy stops at 128 bytes
// while NFQA_CAP_LEN reports aggregates longer than the link's MTU, and every
// byte still arrives (a verdict never carries a payload back, so an accepted
// packet leaves whole). With the whole range the copies are the aggregates
// themselves.
func TestReaderGSOCopyRange(t *testing.T) {
	n := testnet.New(t, testnet.WithPrefix("fwq"))
	const q, port, mtu = 7, 45000, 1500
	queueTableProto(t, n.Server, q, unix.IPPROTO_TCP)

	var ln net.Listener
	if err := n.Server.Do(func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(n.Server.Addr4().String(), "45000"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan int64, 4)
	testnet.Serve(ln, func(c net.Conn) {
		k, _ := io.Copy(io.Discard, c)
		got <- k
	})

	r, err := Open(Config{Queue: q, NetNS: int(n.Server.Handle()), MaxPacketLen: 128, GSO: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.GSOActive() {
		t.Fatal("the kernel did not take NFQA_CFG_F_GSO")
	}
	var mu sync.Mutex
	var maxCopy, maxCap, gso, requeue int
	decide := func(pkts []Packet, vs []Verdict) {
		mu.Lock()
		defer mu.Unlock()
		for i, p := range pkts {
			if p.Requeue {
				requeue++
				continue
			}
			maxCopy = max(maxCopy, len(p.Payload))
			maxCap = max(maxCap, int(p.CapLen))
			if p.SkbInfo&SkbGSO != 0 {
				gso++
			}
			vs[i] = Verdict{Code: Accept}
		}
	}
	defer runReader(t, r, decide)()

	const size = 8 << 20
	stream := func() {
		t.Helper()
		var c net.Conn
		if err := n.Client.Do(func() (err error) {
			c, err = net.Dial("tcp4", net.JoinHostPort(n.Server.Addr4().String(), "45000"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64<<10)
		for sent := 0; sent < size; sent += len(buf) {
			if _, err := c.Write(buf); err != nil {
				t.Fatalf("write: %v", err)
			}
		}
		c.Close()
		select {
		case k := <-got:
			if k != size {
				t.Fatalf("server received %d bytes, want %d", k, size)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("stream did not finish")
		}
	}
	reset := func() (copyLen, capLen, aggregates int) {
		mu.Lock()
		defer mu.Unlock()
		copyLen, capLen, aggregates = maxCopy, maxCap, gso
		maxCopy, maxCap, gso = 0, 0, 0
		return
	}

	stream()
	copyLen, capLen, aggregates := reset()
	if copyLen > 128 || copyLen == 0 {
		t.Errorf("copy range 128: longest copy %d bytes", copyLen)
	}
	if capLen <= mtu || aggregates == 0 {
		t.Errorf("copy range 128: longest packet %d bytes, %d GSO aggregates; want aggregates over the %d-byte MTU", capLen, aggregates, mtu)
	}

	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := r.SetCopyRange(sctx, 0xffff); err != nil {
		t.Fatalf("SetCopyRange: %v", err)
	}
	stream()
	copyLen, capLen, _ = reset()
	if copyLen <= mtu || capLen != 0 {
		t.Errorf("whole packets: longest copy %d bytes, cap len %d; want whole aggregates over the MTU", copyLen, capLen)
	}
	c := r.Counters().Snapshot()
	if c.Truncated+c.KernelErrors+c.SendErrors+c.ReadErrors+c.NoID != 0 {
		t.Errorf("counters %+v, want no errors", c)
	}
	if c.GSO == 0 {
		t.Errorf("counters %+v: no GSO aggregate counted", c)
	}
	t.Logf("%+v (requeued in BatchFunc: %d)", c, requeue)
}

// TestMarkRequeue: a packet cut shorter than the range the kernel now
// applies is pre-answered with a repeat; a whole packet, and one cut at the
// current range, are left to the BatchFunc.
func TestMarkRequeue(t *testing.T) {
	r := &Reader{cnt: new(Counters), copyRange: 1000}
	buf := make([]byte, 2000)
	pkts := []Packet{
		{ID: 1, Payload: buf[:128], CapLen: 1500},                      // cut under an older, smaller range
		{ID: 2, Payload: buf[:1000], CapLen: 1500},                     // cut at the current range
		{ID: 3, Payload: buf[:600], SkbInfo: SkbGSO | SkbCsumNotReady}, // whole
		{ID: 4, Truncated: true, CapLen: 1500},                         // our buffer cut it: undecodable, not requeued
	}
	vs := make([]Verdict, len(pkts))
	for i := range vs {
		vs[i] = Verdict{Code: Drop}
	}
	r.markRequeue(pkts, vs)
	want := []bool{true, false, false, false}
	for i, p := range pkts {
		if p.Requeue != want[i] {
			t.Errorf("packet %d: Requeue=%v, want %v", p.ID, p.Requeue, want[i])
		}
		if wantCode := map[bool]uint32{true: Repeat, false: Drop}[want[i]]; vs[i].Code != wantCode || vs[i].SetMark {
			t.Errorf("packet %d: verdict %+v, want code %d without a mark", p.ID, vs[i], wantCode)
		}
	}
	if c := r.cnt.Snapshot(); c.Requeued != 1 || c.GSO != 1 || c.CsumPartial != 1 {
		t.Errorf("counters %+v, want 1 requeued, 1 GSO, 1 partial checksum", c)
	}
}
