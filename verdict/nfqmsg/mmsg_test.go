package nfqmsg

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/procqueue"
	"github.com/fwagent/fwagent/internal/testing/eventually"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

const (
	testMarkDrop   = 0x00100000 // repeated with this mark: the chain drops it
	testMarkAccept = 0x00200000 // repeated with this mark: the chain accepts it
)

// queueTable installs, in the namespace ns, a table whose input chain
// drops packets carrying testMarkDrop, accepts those carrying testMarkAccept
// (both counted) and sends all other UDP to queue q through the xt NFQUEUE
// target (this kernel has no native queue expression). No bypass flag:
// a packet nobody answers is lost, which the test would see.
func queueTable(t *testing.T, ns *testnet.NS, q uint16) (counters func() (drop, accept uint64)) {
	t.Helper()
	return queueTableProto(t, ns, q, unix.IPPROTO_UDP)
}

// queueTableProto is queueTable for packets of IP protocol proto.
func queueTableProto(t *testing.T, ns *testnet.NS, q uint16, proto byte) (counters func() (drop, accept uint64)) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Handle())))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Name: "fwt", Family: nftables.TableFamilyINet})
	pol := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "in", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &pol})
	markIs := func(m uint32, v expr.VerdictKind) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(m)},
			&expr.Counter{},
			&expr.Verdict{Kind: v},
		}
	}
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: markIs(testMarkDrop, expr.VerdictDrop)})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: markIs(testMarkAccept, expr.VerdictAccept)})
	// struct xt_NFQ_info_v3 {u16 queuenum, queues_total, flags}, XT_ALIGN'ed.
	info := xt.Unknown(binary.NativeEndian.AppendUint16(binary.NativeEndian.AppendUint16(binary.NativeEndian.AppendUint16(nil, q), 1), 0))
	info = append(info, 0, 0)
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("install queue table: %v", err)
	}
	return func() (drop, accept uint64) {
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			t.Fatalf("read rules: %v", err)
		}
		var got []uint64
		for _, r := range rules {
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					got = append(got, ctr.Packets)
				}
			}
		}
		if len(got) != 2 {
			t.Fatalf("found %d counters, want 2", len(got))
		}
		return got[0], got[1]
	}
}

// udpDstPort reads the destination port of an IPv4 UDP packet.
func udpDstPort(b []byte) (uint16, bool) {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != unix.IPPROTO_UDP {
		return 0, false
	}
	l4 := int(b[0]&0x0f) * 4
	if len(b) < l4+4 {
		return 0, false
	}
	return binary.BigEndian.Uint16(b[l4+2:]), true
}

// queueStats reads the namespace's /proc line for queue q: packets waiting,
// dropped by the kernel, dropped for want of socket room.
func queueStats(t *testing.T, ns *testnet.NS, q uint16) (waiting, dropped, userDropped uint64) {
	t.Helper()
	var data []byte
	if err := ns.Do(func() (err error) {
		data, err = os.ReadFile("/proc/thread-self/net/netfilter/nfnetlink_queue")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	qs, err := procqueue.Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, kq := range qs {
		if kq.Queue == q {
			return kq.Waiting, kq.QueueDropped, kq.UserDropped
		}
	}
	return 0, 0, 0
}

// TestReaderKernel sends 10,000 UDP packets of odd and even sizes through a
// real queue to the batched reader, in a namespace of its own. Each of four
// ports gets its own verdict: accept, drop, repeat with a mark the chain
// drops on, repeat with a mark the chain accepts on. Every packet must be
// answered exactly once, arrive exactly when accepted, and never come back
// to the queue after a repeat.
func TestReaderKernel(t *testing.T) {
	n := testnet.New(t, testnet.WithPrefix("fwq"))
	const q = 3
	counters := queueTable(t, n.Server, q)

	const basePort = 40000
	var recv [4]atomic.Uint64
	var lens sync.Map // payload length seen by the receivers
	var conns []*net.UDPConn
	for i := range 4 {
		c := n.Server.ListenUDP4(t, basePort+i)
		c.SetReadBuffer(8 << 20)
		conns = append(conns, c)
	}
	testnet.ReadEach(t, conns, func(i, m int) {
		recv[i].Add(1)
		lens.Store(m, true)
	})
	send := n.Client.ListenUDP4(t, 0)

	sizes := []int{1, 3, 5, 7, 8, 64, 1001, 1400}
	for _, blocking := range []bool{false, true} {
		t.Run(fmt.Sprintf("blocking=%v", blocking), func(t *testing.T) {
			for i := range recv {
				recv[i].Store(0)
			}
			drop0, accept0 := counters()
			r, err := Open(Config{Queue: q, NetNS: int(n.Server.Handle()), Blocking: blocking, Batch: 32})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			seen := make(map[uint32]int)
			var requeued, undecodable int
			decide := func(pkts []Packet, vs []Verdict) {
				for i, p := range pkts {
					seen[p.ID]++
					if p.Mark != 0 {
						requeued++
					}
					port, ok := udpDstPort(p.Payload)
					if !ok || port < basePort || port >= basePort+4 {
						undecodable++
						continue
					}
					switch port - basePort {
					case 0:
						vs[i] = Verdict{Code: Accept}
					case 1:
						vs[i] = Verdict{Code: Drop}
					case 2:
						vs[i] = Verdict{Code: Repeat, SetMark: true, Mark: testMarkDrop}
					case 3:
						vs[i] = Verdict{Code: Repeat, SetMark: true, Mark: testMarkAccept}
					}
				}
			}
			defer runReader(t, r, decide)()

			const total = 10240 // a multiple of 4*len(sizes)
			payload := make([]byte, 1400)
			cnt := r.Counters()
			for i := range total {
				// Runs of 8 to one port, so equal verdicts come in runs
				// and every port sees every size.
				dst := &net.UDPAddr{IP: n.Server.Addr4().AsSlice(), Port: basePort + (i/len(sizes))%4}
				if _, err := send.WriteToUDP(payload[:sizes[i%len(sizes)]], dst); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
				// Keep the kernel queue and the receivers' buffers from
				// overflowing: the test is about answers, not load.
				if i%500 == 499 {
					waitFor(t, func() bool { return cnt.Packets.Load() >= uint64(i+1) })
				}
			}
			waitFor(t, func() bool {
				return cnt.Packets.Load() >= total && recv[0].Load() >= total/4 && recv[3].Load() >= total/4
			})
			// Late arrivals would show up here.
			time.Sleep(100 * time.Millisecond)

			c := cnt.Snapshot()
			if c.Packets != total || len(seen) != total {
				t.Errorf("answered %d packets, %d distinct ids; want %d", c.Packets, len(seen), total)
			}
			for id, k := range seen {
				if k != 1 {
					t.Errorf("packet %d seen %d times", id, k)
				}
			}
			if requeued != 0 || undecodable != 0 {
				t.Errorf("%d packets came back with a mark, %d undecodable", requeued, undecodable)
			}
			if got := [4]uint64{recv[0].Load(), recv[1].Load(), recv[2].Load(), recv[3].Load()}; got != [4]uint64{total / 4, 0, 0, total / 4} {
				t.Errorf("received per port %v, want [%d 0 0 %d]", got, total/4, total/4)
			}
			drop, accept := counters()
			if drop-drop0 != total/4 || accept-accept0 != total/4 {
				t.Errorf("mark rules matched drop=%d accept=%d, want %d each", drop-drop0, accept-accept0, total/4)
			}
			if c.KernelErrors+c.NoID+c.Truncated+c.ENOBUFS+c.SendErrors+c.ReadErrors != 0 {
				t.Errorf("counters %+v, want no errors", c)
			}
			if c.Messages >= c.Packets {
				t.Errorf("%d messages for %d packets: runs were not batched", c.Messages, c.Packets)
			}
			if waiting, dropped, udropped := queueStats(t, n.Server, q); waiting+dropped+udropped != 0 {
				t.Errorf("kernel queue: %d waiting, %d dropped, %d user-dropped", waiting, dropped, udropped)
			}
			for _, s := range sizes {
				if _, ok := lens.Load(s); !ok {
					t.Errorf("no %d-byte datagram arrived", s)
				}
			}
			t.Logf("%+v", c)
		})
	}
}

// udpFlow opens a UDP socket on the server at port that counts the
// datagrams it receives in recv, and a client socket connected to it; both
// close when the test ends.
func udpFlow(t *testing.T, n *testnet.Net, port int) (recv *atomic.Uint64, sc *net.UDPConn) {
	t.Helper()
	recv = new(atomic.Uint64)
	rc := n.Server.ListenUDP4(t, port)
	rc.SetReadBuffer(8 << 20)
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := rc.Read(buf); err != nil {
				return
			}
			recv.Add(1)
		}
	}()
	if err := n.Client.Do(func() (err error) {
		sc, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: n.Server.Addr4().AsSlice(), Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return recv, sc
}

// runReader runs r with decide in the background until the returned stop
// is called; stop waits for Run and fails the test if it returned an error.
func runReader(t *testing.T, r *Reader, decide BatchFunc) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, decide) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	if !eventually.True(20*time.Second, time.Millisecond, cond) {
		t.Fatal("timed out waiting for the queue")
	}
}

// TestReaderBindUnderLoad binds and unbinds the queue again and again while
// UDP keeps arriving. A fresh queue numbers its packets from 1 without gaps
// (while no message is lost to ENOBUFS), so each bind must have answered
// ids 1..max: in the BatchFunc, or, for packets queued while the bind was
// still being configured, with a repeat that queues them again under a new
// id. Every answered packet must arrive. (Packets sent while no reader is
// bound are dropped by the rule, which has no bypass flag.)
func TestReaderBindUnderLoad(t *testing.T) {
	n := testnet.New(t, testnet.WithPrefix("fwq"))
	const q = 5
	queueTable(t, n.Server, q)
	recv, sc := udpFlow(t, n, 41000)
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for {
			select {
			case <-stop:
				return
			default:
			}
			sc.Write([]byte{1, 2, 3})
			// Paced, so that the receiver (slow under -race) never
			// overflows its socket buffer: a packet lost there is not one
			// the reader failed to answer.
			time.Sleep(20 * time.Microsecond)
		}
	}()
	var cnt Counters
	checked := 0
	for range 30 {
		before := cnt.Snapshot()
		r, err := Open(Config{Queue: q, NetNS: int(n.Server.Handle()), Counters: &cnt})
		if err != nil {
			close(stop)
			t.Fatalf("Open: %v", err)
		}
		seen := make(map[uint32]bool)
		var maxID uint32
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err = r.Run(ctx, func(pkts []Packet, vs []Verdict) {
			for i, p := range pkts {
				seen[p.ID] = true
				maxID = max(maxID, p.ID)
				vs[i] = Verdict{Code: Accept}
			}
		})
		cancel()
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		after := cnt.Snapshot()
		if after.ENOBUFS != before.ENOBUFS {
			continue // lost messages leave gaps in the ids
		}
		checked++
		if early := after.BindRepeats - before.BindRepeats; uint64(len(seen))+early != uint64(maxID) {
			t.Errorf("answered %d packets in the loop and %d during the bind, but the queue numbered %d", len(seen), early, maxID)
		}
	}
	if checked == 0 {
		t.Error("every bind saw ENOBUFS; nothing checked")
	}
	close(stop)
	<-sent
	waitFor(t, func() bool { return recv.Load() >= cnt.Packets.Load() })
	c := cnt.Snapshot()
	if waiting, _, _ := queueStats(t, n.Server, q); waiting != 0 {
		t.Errorf("%d packets left waiting in the kernel queue", waiting)
	}
	if got := recv.Load(); got != c.Packets || c.Packets == 0 {
		t.Errorf("received %d of %d accepted packets", got, c.Packets)
	}
	if c.KernelErrors+c.NoID != 0 {
		t.Errorf("counters %+v", c)
	}
	t.Logf("%+v", c)
}

// TestReaderSurvivesENOBUFS floods a reader whose socket buffer is tiny and
// whose decisions are slow, so the kernel overruns the socket: the overruns
// are counted, the reader keeps going, nothing it answered is lost or
// answered twice, and traffic after the flood flows normally.
func TestReaderSurvivesENOBUFS(t *testing.T) {
	n := testnet.New(t, testnet.WithPrefix("fwq"))
	const q = 6
	queueTable(t, n.Server, q)
	recv, sc := udpFlow(t, n, 42000)

	r, err := Open(Config{Queue: q, NetNS: int(n.Server.Handle()), ReadBuffer: 4096, Batch: 8})
	if err != nil {
		t.Fatal(err)
	}
	var slow atomic.Bool
	slow.Store(true)
	seen := make(map[uint32]int)
	var dup atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- r.Run(ctx, func(pkts []Packet, vs []Verdict) {
			if slow.Load() {
				time.Sleep(time.Millisecond)
			}
			for i, p := range pkts {
				if seen[p.ID]++; seen[p.ID] > 1 {
					dup.Add(1)
				}
				vs[i] = Verdict{Code: Accept}
			}
		})
	}()
	cnt := r.Counters()
	for i := 0; i < 20000 && cnt.ENOBUFS.Load() == 0; i++ {
		sc.Write(make([]byte, 200))
	}
	if cnt.ENOBUFS.Load() == 0 {
		t.Fatal("no ENOBUFS after the flood; the test did not test anything")
	}
	slow.Store(false)
	// Settled: everything answered has arrived and nothing more comes in.
	last := ^uint64(0)
	waitFor(t, func() bool {
		time.Sleep(50 * time.Millisecond)
		now := cnt.Packets.Load()
		settled := now == last && recv.Load() >= now
		last = now
		return settled
	})
	before := cnt.Packets.Load()
	recvBefore := recv.Load()
	for range 200 {
		sc.Write([]byte{7})
		time.Sleep(100 * time.Microsecond)
	}
	waitFor(t, func() bool { return recv.Load()-recvBefore >= 200 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	c := cnt.Snapshot()
	if got := c.Packets - before; got != 200 {
		t.Errorf("answered %d packets after the flood, want 200", got)
	}
	if recv.Load() != c.Packets || dup.Load() != 0 {
		t.Errorf("received %d, answered %d, answered twice %d", recv.Load(), c.Packets, dup.Load())
	}
	if c.KernelErrors+c.ReadErrors+c.SendErrors+c.NoID != 0 {
		t.Errorf("counters %+v", c)
	}
	t.Logf("%+v", c)
}
