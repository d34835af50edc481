package policies_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/policygen"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
	"github.com/fwagent/fwagent/policies/policytest"
)

// genPolicy is an n-rule generated policy (internal/testing/policygen) whose last
// rule is the only one the benchmark packet matches, the worst case for a
// linear scan.
func genPolicy(n int) string {
	return policygen.Generate(policygen.Options{Rules: n, Stateful: true})
}

// genSharedPolicy writes n rules for one tenant network, told apart by
// port only: the address admits every rule, the port one.
func genSharedPolicy(n int) string {
	var b strings.Builder
	b.WriteString("version: 1\nrules:\n")
	for i := range n - 1 {
		fmt.Fprintf(&b, "  - {name: r%d, match: {proto: tcp, src: 100.64.0.0/16, dport: %d}, action: accept}\n", i, 10000+i)
	}
	b.WriteString("  - {name: last, match: {proto: tcp, src: 100.64.0.0/16, dport: 9050}, action: accept}\n")
	return b.String()
}

func benchPacket() *packet.Packet {
	return &packet.Packet{
		Family: packet.IPv4, Src: netip.MustParseAddr("100.64.7.9"), Dst: netip.MustParseAddr("100.100.3.4"),
		Proto: packet.ProtoTCP, HasL4: true, SrcPort: 50123, DstPort: 9050, TCPFlags: packet.TCPSyn, Length: 60,
	}
}

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		prog := mustCompile(b, genPolicy(n))
		in := &policies.Input{Pkt: benchPacket(), Hook: nf.HookInput, State: nf.StateNew}
		decidedByLast(b, prog, in)
		benchDecide(b, fmt.Sprintf("rules=%d/last", n), prog, in)
		miss := &policies.Input{Pkt: benchPacket(), Hook: nf.HookInput, State: nf.StateNew}
		miss.Pkt.Src = netip.MustParseAddr("10.1.1.77")
		miss.Pkt.DstPort = 3
		benchDecide(b, fmt.Sprintf("rules=%d/default", n), prog, miss)
	}
}

// decidedByLast fails b unless the generated policy's rule "last" decides
// in, so that a benchmark measures the walk through every rule.
func decidedByLast(b *testing.B, prog *policies.Program, in *policies.Input) {
	b.Helper()
	if d := prog.Decide(in); prog.RuleName(d.Rule) != "last" {
		b.Fatalf("benchmark packet decided by %s, want the last rule", prog.RuleName(d.Rule))
	}
}

// benchDecide runs Decide of in as the sub-benchmark name, with the
// thread's CPU time beside wall time.
func benchDecide(b *testing.B, name string, prog *policies.Program, in *policies.Input) {
	b.Run(name, func(b *testing.B) {
		b.ReportAllocs()
		cpu := startThreadCPU()
		for b.Loop() {
			prog.Decide(in)
		}
		cpu.report(b)
	})
}

// threadCPU measures the CPU time of the benchmark's own thread, reported
// beside wall time: on a shared 2-core machine wall time mostly measures the
// neighbours.
type threadCPU struct{ start time.Duration }

func startThreadCPU() *threadCPU {
	runtime.LockOSThread()
	return &threadCPU{start: threadCPUTime()}
}

func (c *threadCPU) report(b *testing.B) {
	used := threadCPUTime() - c.start
	runtime.UnlockOSThread()
	b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

func threadCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkDecideSharedAddress(b *testing.B) {
	for _, n := range []int{10, 10000} {
		prog := mustCompile(b, genSharedPolicy(n))
		in := &policies.Input{Pkt: benchPacket(), Hook: nf.HookInput}
		decidedByLast(b, prog, in)
		benchDecide(b, fmt.Sprintf("rules=%d", n), prog, in)
	}
}

func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		text := []byte(genPolicy(n))
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				pol, err := policyload.Load("gen.yaml", text, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := policies.Compile(pol); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestDecideAllocatesNothing(t *testing.T) {
	prog := mustCompile(t, decidePolicy+`  - name: flow-limit
    match: {proto: udp, dport: 7000}
    limit: {rate: 100/s, per: flow}
    action: accept
  - name: dns-tcp
    match: {proto: tcp, dport: 53, dns_qname: "*.example"}
    action: drop
`)
	withPayload := func(p *packet.Packet, b []byte) *packet.Packet { p.Payload = b; return p }
	inputs := []*policies.Input{
		{Pkt: benchPacket()},
		{Pkt: pk(6, "10.1.2.3", "5.6.7.8", 1000, 22)},
		{Pkt: pk(6, "2001:db8:a::1", "2001:db8:b::1", 1000, 22)},
		{Pkt: withPayload(pk(17, "10.0.0.2", "9.9.9.9", 1000, 53), policytest.DNSQuery("x.ads.example", false)), Hook: nf.HookOutput},
		{Pkt: withPayload(pk(6, "10.0.0.2", "9.9.9.9", 1000, 53), policytest.DNSQuery("A.EXAMPLE", true)), Hook: nf.HookOutput},
		{Pkt: withPayload(pk(6, "10.0.0.2", "9.9.9.9", 1000, 9443), policytest.ClientHello("tracker.example")), Hook: nf.HookOutput},
		{Pkt: withPayload(pk(6, "1.2.3.4", "5.6.7.8", 1000, 8022), []byte("SSH-2.0"))},
		{Pkt: pk(17, "1.2.3.4", "5.6.7.8", 1000, 5000), InIf: "veth3", Hook: nf.HookForward},
		{Pkt: pk(17, "1.2.3.4", "5.6.7.8", 1000, 7000), Hook: nf.HookForward},
		{Pkt: pk(17, "2001:db8::1", "2001:db8::2", 1000, 7000), Hook: nf.HookForward},
		{Pkt: pk(6, "1.2.3.4", "5.6.7.8", 1, 2), State: nf.StateEstablished},
	}
	for i, in := range inputs {
		if a := testing.AllocsPerRun(100, func() { prog.Decide(in) }); a != 0 {
			t.Errorf("input %d (%s): %v allocations per Decide", i, prog.RuleName(prog.Decide(in).Rule), a)
		}
	}
}
