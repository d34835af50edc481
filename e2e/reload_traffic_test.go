package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/eventually"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// Two UDP streams both policies accept: one whose flow is offloaded (a
// reload moves the generation, so the kernel queues it again and the new
// policy must accept it), one that is queued packet by packet.
const (
	streamOffloaded = 9100
	streamQueued    = 9101
)

// reloadTrafficPolicy alternates a rule elsewhere (tcp 8080 or 8081, with a
// different name) between variants, so every rewrite is a real change.
func reloadTrafficPolicy(variant int) string {
	return fmt.Sprintf(`version: 1
default:
  input: drop
rules:
  - name: extra-%d
    match: {proto: tcp, dport: %d}
    action: accept
  - name: stream-offloaded
    match: {proto: udp, dport: %d}
    action: accept
  - name: stream-queued
    match: {proto: udp, dport: %d}
    action: accept
    offload: false
`, variant, 8080+variant, streamOffloaded, streamQueued)
}

// replaceFile writes text beside path and renames it over path, as editors
// and config management do, so the agent never reads half a file.
func replaceFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".policy.tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// udpCounter receives datagrams carrying a sequence number on port in ns and
// records which arrived.
type udpCounter struct {
	mu   sync.Mutex
	seen map[uint64]bool
}

func countUDP(t *testing.T, ns *testnet.NS, port int) *udpCounter {
	t.Helper()
	pc := listenPacket(t, ns, "udp4", fmt.Sprintf(":%d", port))
	// The receiver must never be the one losing packets.
	if err := pc.(*net.UDPConn).SetReadBuffer(8 << 20); err != nil {
		t.Fatal(err)
	}
	c := &udpCounter{seen: map[uint64]bool{}}
	receive(pc, 64, func(b []byte, _ net.Addr) {
		if len(b) >= 8 {
			c.mu.Lock()
			c.seen[binary.BigEndian.Uint64(b)] = true
			c.mu.Unlock()
		}
	})
	return c
}

// missing lists the sequence numbers below sent that never arrived.
func (c *udpCounter) missing(sent uint64) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []uint64
	for i := range sent {
		if !c.seen[i] {
			out = append(out, i)
		}
	}
	return out
}

// udpStream sends numbered datagrams from ns to dst at a steady pace until
// stop is closed; it reports how many it sent.
func udpStream(t *testing.T, ns *testnet.NS, dst netip.AddrPort, stop <-chan struct{}) <-chan uint64 {
	t.Helper()
	c := inNS(t, ns, func() (net.Conn, error) { return net.Dial("udp4", dst.String()) })
	done := make(chan uint64, 1)
	go func() {
		defer c.Close()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var seq uint64
		var b [32]byte
		for {
			select {
			case <-stop:
				done <- seq
				return
			case <-tick.C:
			}
			binary.BigEndian.PutUint64(b[:], seq)
			if _, err := c.Write(b[:]); err != nil {
				// A local send error is not a firewall loss: resend
				// the same number on the next tick.
				continue
			}
			seq++
		}
	}()
	return done
}

var chainHandle = regexp.MustCompile(`(?m)^\s*(table inet fwagent|chain \S+) \{ # handle (\d+)$`)

// baseHandles are the handles of the agent's table and base chains: a
// table or chain deleted and recreated gets new ones, and that would drop
// the packets waiting in the queues. The policy chains are left out: a
// reload replaces them by design, in the same transaction.
func baseHandles(t *testing.T, ns *testnet.NS) []string {
	t.Helper()
	var out []string
	for _, m := range chainHandle.FindAllStringSubmatch(nft(t, ns, "-a", "list", "table", "inet", "fwagent"), -1) {
		switch m[1] {
		case "table inet fwagent", "chain input", "chain forward", "chain output":
			out = append(out, m[1]+" "+m[2])
		}
	}
	if len(out) < 2 {
		t.Fatalf("no table and chain handles in the ruleset: %v", out)
	}
	return out
}

// TestReloadUnderTraffic rewrites the policy file again and again (the file
// watch reloads it; no signal) while two UDP streams that every version
// accepts flow, and writes a broken version in the middle: every packet
// arrives, every valid rewrite is applied in place (same table and base
// chain handles, new generation), and the broken one is counted and leaves the old
// policy in force.
func TestReloadUnderTraffic(t *testing.T) {
	n := agentNet(t)
	offloaded := countUDP(t, n.Server, streamOffloaded)
	queued := countUDP(t, n.Server, streamQueued)
	serveTCP(t, n.Server, 8080)
	serveTCP(t, n.Server, 8081)
	policy := writePolicy(t, reloadTrafficPolicy(0))
	sock := filepath.Join(t.TempDir(), "metrics.sock")
	a := startAgent(t, n.Server, policy, "--metrics-addr", "unix:"+sock)
	s := newScraper(sock)
	dst := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(n.Server.Addr4(), port) }
	handles := baseHandles(t, n.Server)

	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	t.Cleanup(halt)
	sentOffloaded := udpStream(t, n.Client, dst(streamOffloaded), stop)
	sentQueued := udpStream(t, n.Client, dst(streamQueued), stop)

	const rewrites = 8
	var ok, failed atomic.Int32
	gen := s.scrape(t).get("fwagent_policy_generation")
	for i := 1; i <= rewrites; i++ {
		time.Sleep(200 * time.Millisecond) // traffic between reloads
		if i == rewrites/2 {
			replaceFile(t, policy, "version: 1\nrules:\n  - name: oops\n    action: acept\n")
			failed.Add(1)
			m := s.waitMetric(t, "the failed reload", func(m metricSet) bool {
				return m.get("fwagent_policy_reloads_total", "result", "error") == float64(failed.Load())
			})
			if g := m.get("fwagent_policy_generation"); g != gen {
				t.Fatalf("generation %v after a broken policy, want %v kept", g, gen)
			}
			if m.get("fwagent_policy_last_reload_success") != 0 || m.get("fwagent_policy_last_reload_error_info") != 1 {
				t.Fatal("the failed reload is not reported as the last result")
			}
			time.Sleep(200 * time.Millisecond)
		}
		replaceFile(t, policy, reloadTrafficPolicy(i%2))
		ok.Add(1)
		m := s.waitMetric(t, fmt.Sprintf("reload %d", i), func(m metricSet) bool {
			return m.get("fwagent_policy_reloads_total", "result", "ok") == float64(ok.Load())
		})
		if g := m.get("fwagent_policy_generation"); g == gen {
			t.Fatalf("reload %d kept generation %v", i, g)
		} else {
			gen = g
		}
		if m.get("fwagent_rule_hits_total", "rule", fmt.Sprintf("extra-%d", i%2)) != 0 {
			t.Fatalf("reload %d: the new rule counts hits it never had", i)
		}
	}
	time.Sleep(200 * time.Millisecond)
	halt()
	nOff, nQ := <-sentOffloaded, <-sentQueued
	if nOff < 1000 || nQ < 1000 {
		t.Fatalf("sent only %d and %d packets: the streams did not run through the reloads", nOff, nQ)
	}
	// Bounded wait for the last packets in flight.
	eventually.True(5*time.Second, 50*time.Millisecond, func() bool { return len(offloaded.missing(nOff))+len(queued.missing(nQ)) == 0 })
	for _, st := range []struct {
		name    string
		c       *udpCounter
		sent    uint64
		port    int
		minHits float64
	}{
		{"offloaded stream", offloaded, nOff, streamOffloaded, 1},
		{"queued stream", queued, nQ, streamQueued, float64(nQ)},
	} {
		if miss := st.c.missing(st.sent); len(miss) > 0 {
			t.Errorf("%s: %d of %d packets lost across %d reloads (first: %v)", st.name, len(miss), st.sent, rewrites, miss[:min(len(miss), 10)])
		} else {
			t.Logf("%s: all %d packets arrived across %d reloads and a broken policy", st.name, st.sent, rewrites)
		}
	}
	m := s.scrape(t)
	if got := m.get("fwagent_rule_hits_total", "rule", "stream-queued"); got < float64(nQ) {
		t.Errorf("stream-queued hits %v, want at least the %d packets sent (hits carry over reloads)", got, nQ)
	}
	if got, want := m.get("fwagent_policy_reloads_total", "result", "ok"), float64(rewrites); got != want {
		t.Errorf("%v successful reloads counted, want %v", got, want)
	}
	if got := m.get("fwagent_policy_reloads_total", "result", "error"); got != 1 {
		t.Errorf("%v failed reloads counted, want 1", got)
	}
	if after := baseHandles(t, n.Server); !slices.Equal(after, handles) {
		t.Errorf("table or chains recreated by reloads: handles %v, then %v", handles, after)
	}
	// The last variant is in force: its extra port passes, the other not.
	last := rewrites % 2
	tcpEcho(t, n.Client, dst(uint16(8080+last)))
	if connects(n.Client, dst(uint16(8080+1-last)), 0) {
		t.Errorf("tcp/%d accepted, want the last policy's drop", 8080+1-last)
	}
	if !a.alive() {
		t.Fatalf("agent died: %v", a.waitErr)
	}
}
