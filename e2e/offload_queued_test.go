package e2e

import (
	"io"
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

const offloadQueuedPolicy = `version: 1
default: {input: drop, log: true}
` + statefulWebRules

// TestOffloadKeepsFlowsOutOfTheQueue runs a TCP conversation of 5,000 round
// trips (at least 10,000 data segments, one per write, plus their ACKs)
// through the agent under a policy whose accepting rules offload, and reads
// from the agent's own counters how many packets the kernel queued: the
// handshake and the few packets in flight while the offload connmark is
// being set, never the conversation itself.
func TestOffloadKeepsFlowsOutOfTheQueue(t *testing.T) {
	n := agentNet(t, 8080)
	sock := filepath.Join(t.TempDir(), "metrics.sock")
	startAgent(t, n.Server, writePolicy(t, offloadQueuedPolicy), "--metrics-addr", "unix:"+sock)
	s := newScraper(sock)
	before := s.scrape(t).get("fwagent_queue_kernel_packets_total", "queue", "0")

	c, err := dialTCP(n.Client, netip.AddrPortFrom(n.Server.Addr4(), 8080), 0, answerWait)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close()
	const roundTrips = 5000
	msg, got := []byte{0}, make([]byte, 1)
	deadline := time.Now().Add(2 * time.Minute) // a bound on a hung test, not a speed check
	for i := range roundTrips {
		msg[0] = byte(i)
		c.SetDeadline(deadline)
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("round trip %d: write: %v", i, err)
		}
		if _, err := io.ReadFull(c, got); err != nil || got[0] != msg[0] {
			t.Fatalf("round trip %d: read %v, %v; want the echo %v", i, got, err, msg)
		}
	}

	queued := s.scrape(t).get("fwagent_queue_kernel_packets_total", "queue", "0") - before
	if queued >= 20 {
		t.Errorf("the kernel queued %v packets of a %d-round-trip offloaded flow, want fewer than 20", queued, roundTrips)
	}
	if queued < 1 {
		t.Errorf("the kernel queued %v packets: the flow's first packets must be decided by the agent", queued)
	}
	t.Logf("%d round trips, %v packets queued", roundTrips, queued)
}
