package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fwagent/fwagent/bench/gen"
)

// soakPolicy has a bit of everything the workload exercises: state, sets,
// L7, rate limits, rejects, offloaded and inspected flows. Its established
// rule leaves DNS out: each lookup uses a fresh ephemeral port, and one that
// reuses the port of an answered lookup still in conntrack is established,
// which the policy would then accept whatever name it asks for.
const soakPolicy = `version: 1
default:
  input: drop
  log: true
sets:
  web: [8080, 8443]
  ads: ["*.ads.example"]
rules:
  - name: established
    match: {state: established, proto: udp, dport: "!53"}
    action: accept
    offload: false
  - name: web
    match: {proto: tcp, dport: $web}
    action: accept
  - name: inspected
    match: {proto: tcp, dport: 8082}
    action: accept
    offload: false
  - name: no-ads
    match: {proto: udp, dport: 53, dns_qname: $ads}
    action: drop
    log: true
  - name: dns
    match: {proto: udp, dport: 53}
    action: accept
  - name: bulk
    match: {proto: udp, dport: 9000}
    action: accept
    offload: false
  - name: ping
    match: {proto: [icmp, icmpv6], icmp_type: [echo-request]}
    limit: {rate: 50/s, burst: 50}
    action: accept
  - name: closed
    match: {proto: tcp, dport: 24}
    action: reject
`

// soakDuration is how long TestSoak runs: FWAGENT_SOAK (a Go duration), or
// 60 s in CI; without either the test is skipped, as it is long.
func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	if v := os.Getenv("FWAGENT_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Second {
			t.Fatalf("FWAGENT_SOAK=%q: want a duration of at least 10s", v)
		}
		return d
	}
	if os.Getenv("CI") == "true" {
		return 60 * time.Second
	}
	t.Skip("soak runs with CI=true (60 s) or FWAGENT_SOAK=DURATION (scripts/soak.sh)")
	return 0
}

// soakSample is the agent's footprint at one moment.
type soakSample struct {
	at         time.Duration
	ps         procStatus
	goroutines float64 // -1 without metrics
}

func (s soakSample) String() string {
	return fmt.Sprintf("t=%-6v rss=%3d MiB hwm=%3d MiB threads=%2d fds=%2d goroutines=%v",
		s.at.Round(time.Second), s.ps.RSS>>20, s.ps.HWM>>20, s.ps.Threads, s.ps.FDs, s.goroutines)
}

// TestSoak runs a mixed workload against one agent for soakDuration: short
// and long TCP connections, refused and rejected ones, a paced UDP stream
// over changing flows, DNS (allowed and blocked), pings, malformed frames
// and a policy reload every few seconds. At the end the agent's memory,
// goroutines, threads and open descriptors must be where they were once
// warmed up: nothing leaks per connection, flow, reload or packet.
func TestSoak(t *testing.T) {
	d := soakDuration(t)
	n := agentNet(t)
	for _, p := range []int{8080, 8082, 24} {
		serveTCP(t, n.Server, p)
	}
	serveUDP(t, n.Server, 53)
	runSink(t, n.Server, netip.AddrPortFrom(n.Server.Addr4(), 9000))
	margs, sock := metricsArgs(t)
	policy := writePolicy(t, soakPolicy)
	// The soak looks for leaks, not overload: a queue that holds several
	// seconds of the workload keeps a busy machine (other tests run
	// beside this one) from stalling the agent into fail-open, which
	// would let through what the checks below expect dropped.
	a := startAgent(t, n.Server, policy, append([]string{"--queue-maxlen", "16384"}, margs...)...)
	pid := a.cmd.Process.Pid
	link := n.Client.OpenRawLink(t, "veth-c", n.Server, "veth-s")
	frames := hostileFrames(n)

	t0 := time.Now()
	sample := func() soakSample {
		t.Helper()
		ps, err := readProcStatus(pid)
		if err != nil {
			t.Fatalf("agent gone: %v", err)
		}
		s := soakSample{at: time.Since(t0), ps: ps, goroutines: -1}
		if m := scrape(t, sock); m != nil {
			s.goroutines = m["go_goroutines"]
		}
		return s
	}

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []string
		counts = map[string]int{}
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 20 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	loop := func(name string, every time.Duration, fn func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					mu.Lock()
					counts[name] = i
					mu.Unlock()
					return
				case <-tick.C:
				}
				fn(i)
			}
		}()
	}
	s4, s6 := n.Server.Addr4(), n.Server.Addr6()
	pick := func(i int) netip.Addr {
		if i%2 == 0 {
			return s4
		}
		return s6
	}
	loop("short tcp", 20*time.Millisecond, func(i int) {
		c, err := dialTCP(n.Client, netip.AddrPortFrom(pick(i), []uint16{8080, 8082}[i%2]), 0, answerWait)
		if err != nil {
			fail("short tcp %d: %v", i, err)
			return
		}
		e := &echoConn{c: c}
		if err := e.roundTrip(answerWait); err != nil {
			fail("short tcp %d: %v", i, err)
		}
		c.Close()
	})
	long := openEcho(t, n.Client, netip.AddrPortFrom(s4, 8082).String())
	loop("long tcp", 50*time.Millisecond, func(i int) {
		if err := long.roundTrip(answerWait); err != nil {
			fail("long tcp round trip %d: %v", i, err)
		}
	})
	loop("refused tcp", 300*time.Millisecond, func(i int) {
		if c, err := dialTCP(n.Client, netip.AddrPortFrom(pick(i), 8081), 0, 200*time.Millisecond); err == nil {
			c.Close()
			fail("8081 reachable")
		}
		if _, err := dialTCP(n.Client, netip.AddrPortFrom(pick(i), 24), 0, answerWait); !errors.Is(err, syscall.ECONNREFUSED) {
			fail("port 24: %v, want refused", err)
		}
	})
	loop("dns", 50*time.Millisecond, func(i int) {
		name := fmt.Sprintf("host%d.example", i)
		if i%4 == 0 {
			name = fmt.Sprintf("x%d.ads.example", i)
		}
		blocked := i%4 == 0
		wait := answerWait
		if blocked {
			wait = 300 * time.Millisecond
		}
		_, err := udpExchange(n.Client, netip.AddrPortFrom(pick(i), 53), rawDNSQuery(name), wait)
		if blocked != (err != nil) {
			fail("dns %s: err %v, want blocked=%v", name, err, blocked)
		}
	})
	loop("ping", 100*time.Millisecond, func(i int) {
		if ok, err := ping(n.Client, pick(i), 0x5eed, i, 56, answerWait); !ok || err != nil {
			fail("ping %d: ok=%v err=%v", i, ok, err)
		}
	})
	loop("hostile", 50*time.Millisecond, func(i int) {
		f := frames[i%len(frames)]
		if err := link.Send(f.etherType, f.pkt); err != nil {
			fail("hostile %s: %v", f.name, err)
		}
	})
	loop("reload", 5*time.Second, func(i int) {
		if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			fail("SIGHUP: %v", err)
		}
	})
	// A paced UDP stream over 64 fresh flows every second: the flow table
	// fills and expires. 2k pps: 8 s of it fill the queue.
	wg.Add(1)
	var udpSent uint64
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			var res gen.SendResult
			err := n.Client.Do(func() (err error) {
				res, err = gen.Send(ctx, gen.SendConfig{Dst: netip.AddrPortFrom(s4, 9000), Flows: 64, Payload: 200, Rate: 2000, Duration: time.Second})
				return err
			})
			if err != nil && ctx.Err() == nil {
				fail("udp stream: %v", err)
			}
			mu.Lock()
			udpSent += res.Sent
			mu.Unlock()
		}
	}()

	// Warm-up: the first tenth of the run (at least 5 s) fills the flow
	// table, the caches and the Go heap to their working size.
	var samples []soakSample
	warm := max(d/10, 5*time.Second)
	sampleTick := time.NewTicker(d / 10)
	defer sampleTick.Stop()
	time.Sleep(warm)
	base := sample()
	samples = append(samples, base)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-sampleTick.C:
			samples = append(samples, sample())
		}
	}
	wg.Wait()
	// Let connections close and short-lived goroutines finish.
	time.Sleep(2 * time.Second)
	last := sample()
	samples = append(samples, last)
	var b strings.Builder
	for _, s := range samples {
		fmt.Fprintln(&b, s)
	}
	t.Logf("agent footprint over %v:\n%s", d, b.String())
	t.Logf("workload: %v, %d UDP packets", counts, udpSent)

	if !a.alive() {
		t.Fatalf("the agent died: %v", a.waitErr)
	}
	for _, e := range errs {
		t.Errorf("workload: %s", e)
	}
	// Flat: what the workload uses is released once it stops. The margins
	// absorb a GC cycle and the runtime's thread pool, not growth per
	// connection or reload (thousands of each above).
	if last.ps.FDs > base.ps.FDs+2 {
		t.Errorf("open fds %d at the end, %d after warm-up: a descriptor leaks", last.ps.FDs, base.ps.FDs)
	}
	if last.ps.Threads > base.ps.Threads+4 {
		t.Errorf("threads %d at the end, %d after warm-up", last.ps.Threads, base.ps.Threads)
	}
	if base.goroutines >= 0 && last.goroutines > base.goroutines+10 {
		t.Errorf("goroutines %v at the end, %v after warm-up: goroutines leak", last.goroutines, base.goroutines)
	}
	if limit := base.ps.RSS + base.ps.RSS/2 + 16<<20; last.ps.RSS > limit {
		t.Errorf("RSS %d MiB at the end, %d MiB after warm-up (limit %d MiB): memory grows", last.ps.RSS>>20, base.ps.RSS>>20, limit>>20)
	}
	if reloads := counts["reload"]; reloads > 0 && !strings.Contains(a.stderrAfterReady(), "policy reloaded") {
		t.Errorf("%d SIGHUPs and no policy reloaded", reloads)
	}
}
