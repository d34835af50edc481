package verdict

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/pipeline"
	"github.com/fwagent/fwagent/internal/testing/policygen"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
	"github.com/fwagent/fwagent/rules"
	"github.com/fwagent/fwagent/verdict/nfqmsg"
	"golang.org/x/sys/unix"
)

// udp4 builds an IPv4 UDP packet with a payload of n bytes.
func udp4(src, dst [4]byte, sport, dport uint16, n int) []byte {
	b := make([]byte, 28+n)
	b[0], b[8], b[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], dport)
	binary.BigEndian.PutUint16(b[24:], uint16(8+n))
	return b
}

// The benchmark's traffic: UDP to benchPort, decided by the last of
// benchRules rules.
const (
	benchPort  = 5001
	benchRules = 1000
)

// batchEngine is an engine on a 1,000-rule policy whose last rule matches
// the benchmark's traffic, with flow tracking, as the e2e comparison runs it.
func batchEngine(tb testing.TB) *Engine {
	tb.Helper()
	text := policygen.Generate(policygen.Options{Rules: benchRules,
		Last: fmt.Sprintf("{match: {proto: udp, dport: %d}, action: accept, offload: false}", benchPort)})
	pol, err := policyload.Load("bench.yaml", []byte(text), nil)
	if err != nil {
		tb.Fatal(err)
	}
	prog, err := policies.Compile(pol)
	if err != nil {
		tb.Fatal(err)
	}
	flows := conntrack.New(conntrack.Config{MaxFlows: 65536})
	shared := pipeline.NewShared(&pipeline.Policy{Program: prog, Gen: 1}, rules.DefaultConfig().Marks, flows)
	return New(Config{}, shared)
}

// readOf is one read's worth of queued packets: 64 UDP packets over 64 flows.
func readOf() []nfqmsg.Packet {
	pkts := make([]nfqmsg.Packet, 64)
	for i := range pkts {
		pkts[i] = nfqmsg.Packet{
			ID: uint32(i + 1), HwProtocol: unix.ETH_P_IP, Hook: unix.NF_INET_LOCAL_IN, InDev: 2,
			Payload: udp4([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, uint16(30000+i), benchPort, 64),
		}
	}
	return pkts
}

// TestBatchDecideZeroAllocs: deciding a read and encoding its verdicts, the
// whole per-read userspace work, allocates nothing.
func TestBatchDecideZeroAllocs(t *testing.T) {
	e := batchEngine(t)
	decide := e.batchFunc(nil)
	pkts, vs := readOf(), make([]nfqmsg.Verdict, 64)
	enc := nfqmsg.NewEncoder(0, unix.AF_UNSPEC, 64)
	decide(pkts, vs) // flows created here, outside the measurement
	for i, v := range vs {
		if v.Code != nfqmsg.Accept || v.SetMark {
			t.Fatalf("packet %d: verdict %+v, want a plain accept (rule bench)", i, v)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		decide(pkts, vs)
		enc.Reset()
		enc.AppendVerdicts(pkts, vs)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per read, want 0", allocs)
	}
	if enc.Messages() != 1 {
		t.Errorf("%d verdict messages for 64 accepts, want 1 batch", enc.Messages())
	}
}

// BenchmarkBatchDecide is the userspace cost of one read of 64 packets
// (everything but the two syscalls): decode, track, decide against 1,000
// rules, encode the verdicts.
func BenchmarkBatchDecide(b *testing.B) {
	for _, workers := range []int{0, 2} {
		b.Run(map[int]string{0: "inline", 2: "2workers"}[workers], func(b *testing.B) {
			e := batchEngine(b)
			var chans []chan batchTask
			for range workers {
				ch := make(chan batchTask, 64)
				chans = append(chans, ch)
				go e.runWorker(ch)
			}
			defer func() {
				for _, ch := range chans {
					close(ch)
				}
			}()
			decide := e.batchFunc(chans)
			pkts, vs := readOf(), make([]nfqmsg.Verdict, 64)
			enc := nfqmsg.NewEncoder(0, unix.AF_UNSPEC, 64)
			decide(pkts, vs) // the flows are created here, not measured
			b.ReportAllocs()
			for b.Loop() {
				decide(pkts, vs)
				enc.Reset()
				enc.AppendVerdicts(pkts, vs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(pkts)), "ns/pkt")
		})
	}
}
