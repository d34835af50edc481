package verdict

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/pipeline"
	"github.com/fwagent/fwagent/internal/testnet"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/rules"
	"github.com/fwagent/fwagent/verdict/nfqmsg"
)

// The end-to-end comparison of queue handlers, measured as DESIGN.md
// (Baselines) says: 64-byte UDP over 64 flows through a veth pair, the sender
// pinned to CPU 0, the handler and the sink to CPU 1, fail-closed (no
// bypass, so every delivered packet went through the handler). Each handler,
// sink and sender is this test binary re-executed in a role
// (TestE2EHelper), so the handler's CPU time is its own process's.
//
//	FWAGENT_E2E_BENCH=1 [FWAGENT_E2E_SECONDS=5] [FWAGENT_E2E_PPS=n] \
//	  [FWAGENT_E2E_ONLY=regexp] [FWAGENT_E2E_ROUNDS=n] [FWAGENT_E2E_PPROF=dir] \
//	  go test -run TestE2EThroughput -v ./verdict/
//
// PPS paces the sender (default: as fast as CPU 0 goes), so handlers can be
// compared at the same load: CPU per packet depends on how many packets
// each read finds waiting. Other work on the machine moves the numbers by
// ±20%; ROUNDS repeats every handler, interleaved, to see the spread.
const (
	e2ePort    = 5001
	e2eFlows   = 64
	e2ePayload = 64
	e2eRules   = 1000
)

type e2eResult struct {
	name                string
	sent, recv, handled uint64
	cpu                 time.Duration
	mallocs             int64 // -1: not measured (C)
}

func TestE2EThroughput(t *testing.T) {
	secs := 5
	switch {
	case os.Getenv("FWAGENT_E2E_BENCH") != "":
	case os.Getenv("CI") == "true":
		// In CI the comparison runs briefly, as a check that every
		// handler passes traffic; numbers come from opt-in runs.
		secs = 1
	default:
		t.Skip("opt-in load test: set FWAGENT_E2E_BENCH=1")
	}
	testnet.RequireCommands(t, "taskset", "gcc")
	if s := os.Getenv("FWAGENT_E2E_SECONDS"); s != "" {
		secs, _ = strconv.Atoi(s)
	}
	dur := time.Duration(secs) * time.Second
	pps := os.Getenv("FWAGENT_E2E_PPS")
	if pps == "" {
		pps = "0"
	}
	rounds := 1
	if s := os.Getenv("FWAGENT_E2E_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	n := testnet.New(t, testnet.WithPrefix("fwb"))
	cloop := filepath.Join(t.TempDir(), "nfq_accept_loop")
	if out, err := exec.Command("gcc", "-O2", "-o", cloop, "nfqmsg/testdata/nfq_accept_loop.c", "-lnetfilter_queue", "-lnfnetlink").CombinedOutput(); err != nil {
		t.Fatalf("build C loop: %v\n%s", err, out)
	}
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(e2ePolicy(e2eRules)), 0o644); err != nil {
		t.Fatal(err)
	}
	nft, err := nftables.New(nftables.WithNetNSFd(int(n.Server.Handle())))
	if err != nil {
		t.Fatal(err)
	}
	handlers := []struct {
		name  string
		table string // "", "xt" (accept-all queue), "agent" (rules.Install)
		cmd   []string
	}{
		{"kernel only (no queue)", "", nil},
		{"C libnetfilter_queue loop", "xt", []string{cloop, "0"}},
		{"go-nfqueue loop (SetVerdict per packet)", "xt", []string{"gonfqueue"}},
		{"nfqmsg batch reader, netpoller", "xt", []string{"batch"}},
		{"nfqmsg batch reader, blocking", "xt", []string{"batch-blocking"}},
		{"fwagent engine, reader nfqueue, 1000 rules", "agent", []string{"engine", ReaderNfqueue, "0", "0"}},
		{"fwagent engine, reader batch, 1000 rules", "agent", []string{"engine", ReaderBatch, "0", "0"}},
		{"fwagent engine, reader batch blocking, 1000 rules", "agent", []string{"engine", ReaderBatch, "1", "0"}},
		{"fwagent engine, reader batch, 2 workers, 1000 rules", "agent", []string{"engine", ReaderBatch, "0", "2"}},
	}
	var results []e2eResult
	for round := 0; round < rounds; round++ {
		for _, h := range handlers {
			if only := os.Getenv("FWAGENT_E2E_ONLY"); only != "" && !regexp.MustCompile(only).MatchString(h.name) && h.table != "" {
				continue
			}
			var cleanup func()
			switch h.table {
			case "xt":
				cleanup = e2eQueueTable(t, nft)
			case "agent":
				rcfg := rules.DefaultConfig()
				rcfg.Bypass, rcfg.Generation, rcfg.QueueKind = false, 1, rules.QueueXT
				tbl, err := rules.Install(nft, rcfg)
				if err != nil {
					t.Fatalf("install agent table: %v", err)
				}
				cleanup = func() { tbl.Remove() }
			}
			var handler *e2eProc
			if h.cmd != nil {
				env := []string{"FWAGENT_E2E_POLICY=" + policyFile}
				if d := os.Getenv("FWAGENT_E2E_PPROF"); d != "" {
					env = append(env, "FWAGENT_E2E_PPROF="+filepath.Join(d, strings.NewReplacer(" ", "_", ",", "", "(", "", ")", "").Replace(h.name)+".pprof"))
				}
				if h.cmd[0] == cloop {
					handler = e2eStart(t, n.Server, 1, nil, h.cmd...)
				} else {
					handler = e2eStart(t, n.Server, 1, append(env, "FWAGENT_E2E_ROLE=handler"), h.cmd...)
				}
			}
			sink := e2eStart(t, n.Server, 1, []string{"FWAGENT_E2E_ROLE=sink"}, n.Server.Addr4().String())
			sender := e2eStart(t, n.Client, 0, []string{"FWAGENT_E2E_ROLE=sender"}, n.Server.Addr4().String(), n.Client.Addr4().String(), dur.String(), pps)
			r := e2eResult{name: h.name}
			r.sent = sender.wait(t, "SENT")
			time.Sleep(300 * time.Millisecond)
			r.recv = sink.stop(t, "RECV")
			if handler != nil {
				r.handled = handler.stop(t, "PACKETS")
				r.cpu = handler.cpu
				r.mallocs = -1
				if h.cmd[0] != cloop {
					r.mallocs = int64(handler.mallocs)
				}
			}
			if cleanup != nil {
				cleanup()
			}
			results = append(results, r)
		}
	}
	// Per handler: the median CPU per packet over the rounds, and its ratio
	// to the C loop's median.
	perPkt := func(r e2eResult) float64 { return r.cpu.Seconds() / (float64(r.handled) / 1e6) }
	medians := map[string]float64{}
	var names []string
	for _, r := range results {
		if _, ok := medians[r.name]; ok || r.handled == 0 {
			continue
		}
		var v []float64
		for _, o := range results {
			if o.name == r.name && o.handled > 0 {
				v = append(v, perPkt(o))
			}
		}
		slices.Sort(v)
		medians[r.name] = v[len(v)/2]
		names = append(names, r.name)
	}
	for _, r := range results {
		if r.name != "kernel only (no queue)" && r.handled == 0 {
			t.Errorf("%s handled no packet", r.name)
		}
		if r.recv == 0 {
			t.Errorf("%s: nothing arrived at the sink", r.name)
		}
	}
	cName := "C libnetfilter_queue loop"
	t.Logf("%d s, %d flows of %d-byte UDP, sender pacing %s pps (0: none); sender on CPU 0, handler and sink on CPU 1", secs, e2eFlows, e2ePayload, pps)
	t.Logf("%-52s %10s %10s %7s %12s %10s", "handler", "offered/s", "deliv/s", "loss", "CPU s/Mpkt", "allocs/pkt")
	for _, r := range results {
		loss := 100 * (1 - float64(r.recv)/float64(max(r.sent, 1)))
		line := fmt.Sprintf("%-52s %10.0f %10.0f %6.1f%%", r.name, float64(r.sent)/dur.Seconds(), float64(r.recv)/dur.Seconds(), loss)
		if r.handled > 0 {
			line += fmt.Sprintf(" %12.2f", perPkt(r))
			if r.mallocs >= 0 {
				line += fmt.Sprintf(" %10.3f", float64(r.mallocs)/float64(r.handled))
			}
		}
		t.Log(line)
	}
	t.Logf("median CPU per packet over %d round(s), against the C loop:", rounds)
	for _, name := range names {
		line := fmt.Sprintf("  %-52s %6.2f s/Mpkt", name, medians[name])
		if c, ok := medians[cName]; ok {
			line += fmt.Sprintf("  %.2fx", medians[name]/c)
		}
		t.Log(line)
	}
}

// e2ePolicy is n rules of which only the last matches the test traffic, so
// every packet is decided against the whole index.
func e2ePolicy(n int) string {
	var b strings.Builder
	b.WriteString("version: 1\ndefault: {input: drop, output: accept, forward: drop}\nrules:\n")
	for i := range n - 1 {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "  - {name: r%d, match: {proto: tcp, dport: %d}, action: accept}\n", i, 10000+i)
		case 1:
			fmt.Fprintf(&b, "  - {name: r%d, match: {src: 10.%d.%d.0/24}, action: drop}\n", i, 100+i/250, i%250)
		case 2:
			fmt.Fprintf(&b, "  - {name: r%d, match: {proto: udp, sport: %d, dst: 192.0.2.%d}, action: accept}\n", i, 20000+i, i%250)
		}
	}
	fmt.Fprintf(&b, "  - {name: bench, match: {proto: udp, dport: %d}, action: accept, offload: false}\n", e2ePort)
	return b.String()
}

// e2eQueueTable queues all UDP arriving in the server namespace to queue 0
// through the xt NFQUEUE target, without bypass.
func e2eQueueTable(t *testing.T, c *nftables.Conn) (remove func()) {
	t.Helper()
	tbl := c.AddTable(&nftables.Table{Name: "fwb", Family: nftables.TableFamilyINet})
	pol := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "in", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &pol})
	info := xt.Unknown{0, 0, 1, 0, 0, 0, 0, 0} // queuenum 0, total 1, flags 0 (little-endian u16s)
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		info = xt.Unknown{0, 0, 0, 1, 0, 0, 0, 0}
	}
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("install queue table: %v", err)
	}
	return func() {
		c.DelTable(tbl)
		if err := c.Flush(); err != nil {
			t.Errorf("remove queue table: %v", err)
		}
	}
}

// e2eProc is a helper process that prints READY when set up and "KEY n"
// lines as results.
type e2eProc struct {
	cmd     *exec.Cmd
	lines   chan string
	cpu     time.Duration
	mallocs uint64
}

func e2eStart(t *testing.T, ns *testnet.NS, cpu int, env []string, args ...string) *e2eProc {
	t.Helper()
	prog := args
	if env != nil { // a role of this test binary
		prog = append([]string{os.Args[0], "-test.run=^TestE2EHelper$", "--"}, args...)
	}
	cmd := ns.Command(context.Background(), "taskset", append([]string{"-c", strconv.Itoa(cpu)}, prog...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &e2eProc{cmd: cmd, lines: make(chan string, 16)}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	if l := p.expect(t, "READY", 30*time.Second); l == "" {
		t.Fatalf("%v: never ready", args)
	}
	return p
}

func (p *e2eProc) expect(t *testing.T, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return ""
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			return ""
		}
	}
}

func (p *e2eProc) value(t *testing.T, key string) uint64 {
	t.Helper()
	l := p.expect(t, key, time.Minute)
	f := strings.Fields(l)
	if len(f) < 2 {
		t.Fatalf("no %s from %v", key, p.cmd.Args)
	}
	v, _ := strconv.ParseUint(f[1], 10, 64)
	if len(f) >= 4 && f[2] == "CPU" {
		us, _ := strconv.ParseInt(f[3], 10, 64)
		p.cpu = time.Duration(us) * time.Microsecond
	}
	if len(f) >= 6 && f[4] == "MALLOCS" {
		p.mallocs, _ = strconv.ParseUint(f[5], 10, 64)
	}
	return v
}

func (p *e2eProc) wait(t *testing.T, key string) uint64 {
	v := p.value(t, key)
	p.cmd.Wait()
	return v
}

func (p *e2eProc) stop(t *testing.T, key string) uint64 {
	p.cmd.Process.Signal(syscall.SIGTERM)
	v := p.value(t, key)
	p.cmd.Wait()
	if p.cpu == 0 && p.cmd.ProcessState != nil { // the C loop: whole-process time
		p.cpu = p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
	}
	return v
}

// TestE2EHelper is the sender, sink or handler of TestE2EThroughput when
// FWAGENT_E2E_ROLE says so; otherwise it does nothing.
func TestE2EHelper(t *testing.T) {
	role := os.Getenv("FWAGENT_E2E_ROLE")
	if role == "" {
		return // a role of TestE2EThroughput, run only in a re-executed binary
	}
	var args []string
	for i, a := range os.Args {
		if a == "--" {
			args = os.Args[i+1:]
		}
	}
	var err error
	switch role {
	case "sender":
		err = e2eSender(args)
	case "sink":
		err = e2eSink(args)
	case "handler":
		err = e2eHandler(args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, role+":", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func e2eSender(args []string) error {
	dst, src := netip.MustParseAddr(args[0]), netip.MustParseAddr(args[1])
	d, err := time.ParseDuration(args[2])
	if err != nil {
		return err
	}
	var fds []int
	for i := range e2eFlows {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4(), Port: 30000 + i}); err != nil {
			return err
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.As4(), Port: e2ePort}); err != nil {
			return err
		}
		fds = append(fds, fd)
	}
	fmt.Println("READY")
	pps, _ := strconv.ParseFloat(args[3], 64)
	payload := make([]byte, e2ePayload)
	var sent uint64
	start := time.Now()
	end := start.Add(d)
	for i := 0; ; i++ {
		if i%256 == 0 {
			now := time.Now()
			if now.After(end) {
				break
			}
			if pps > 0 {
				if due := start.Add(time.Duration(float64(i) / pps * 1e9)); due.After(now) {
					time.Sleep(due.Sub(now))
				}
			}
		}
		if _, err := unix.Write(fds[i%len(fds)], payload); err == nil {
			sent++
		}
	}
	fmt.Println("SENT", sent)
	return nil
}

func e2eSink(args []string) error {
	dst := netip.MustParseAddr(args[0])
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: dst.As4(), Port: e2ePort}); err != nil {
		return err
	}
	var stop atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() { <-sig; stop.Store(true) }()
	type mmsghdr struct {
		hdr unix.Msghdr
		len uint32
		_   [4]byte
	}
	const batch = 64
	bufs := make([]byte, batch*2048)
	iovs := make([]unix.Iovec, batch)
	msgs := make([]mmsghdr, batch)
	for i := range msgs {
		iovs[i].Base = &bufs[i*2048]
		iovs[i].SetLen(2048)
		msgs[i].hdr.Iov = &iovs[i]
		msgs[i].hdr.SetIovlen(1)
	}
	fmt.Println("READY")
	var recv uint64
	for !stop.Load() {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), batch, unix.MSG_WAITFORONE, 0, 0)
		if e == 0 {
			recv += uint64(n)
		}
	}
	fmt.Println("RECV", recv)
	return nil
}

func cpuNow() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func e2eHandler(args []string) error {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	var count func() uint64
	var wait func()
	switch args[0] {
	case "gonfqueue":
		q, err := nfqueue.Open(&nfqueue.Config{NfQueue: 0, MaxPacketLen: 0xffff, MaxQueueLen: 4096,
			Copymode: nfqueue.NfQnlCopyPacket, AfFamily: unix.AF_UNSPEC, WriteTimeout: 100 * time.Millisecond})
		if err != nil {
			return err
		}
		q.Con.SetReadBuffer(16 << 20)
		var n atomic.Uint64
		err = q.RegisterWithErrorFunc(ctx, func(a nfqueue.Attribute) int {
			if a.PacketID != nil {
				q.SetVerdict(*a.PacketID, nfqueue.NfAccept)
				n.Add(1)
			}
			return 0
		}, func(error) int {
			if ctx.Err() != nil {
				return 1
			}
			return 0
		})
		if err != nil {
			return err
		}
		count, wait = n.Load, func() { <-ctx.Done(); q.Close() }
	case "batch", "batch-blocking":
		r, err := nfqmsg.Open(nfqmsg.Config{Queue: 0, Blocking: args[0] == "batch-blocking"})
		if err != nil {
			return err
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.Run(ctx, func(pkts []nfqmsg.Packet, vs []nfqmsg.Verdict) {
				for i := range vs {
					vs[i] = nfqmsg.Verdict{Code: nfqmsg.Accept}
				}
			})
		}()
		count, wait = func() uint64 { return r.Counters().Packets.Load() }, func() { <-done }
	case "engine":
		pol, err := policies.LoadFile(os.Getenv("FWAGENT_E2E_POLICY"))
		if err != nil {
			return err
		}
		prog, err := policies.Compile(pol)
		if err != nil {
			return err
		}
		marks := rules.DefaultConfig().Marks
		flows := conntrack.New(conntrack.Config{MaxFlows: 65536})
		shared := pipeline.NewShared(&pipeline.Policy{Program: prog, Gen: 1}, marks, flows)
		workers, _ := strconv.Atoi(args[3])
		e := New(Config{Reader: args[1], Workers: workers, BlockingRead: args[2] == "1"}, shared)
		w, err := e.Start(ctx)
		if err != nil {
			return err
		}
		count, wait = func() uint64 { return shared.Stats().Total() }, w
	default:
		return fmt.Errorf("unknown handler %q", args[0])
	}
	if path := os.Getenv("FWAGENT_E2E_PPROF"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	start := cpuNow()
	fmt.Println("READY")
	<-ctx.Done()
	used := cpuNow() - start
	runtime.ReadMemStats(&ms)
	wait()
	fmt.Println("PACKETS", count(), "CPU", used.Microseconds(), "MALLOCS", ms.Mallocs-mallocs)
	return nil
}
