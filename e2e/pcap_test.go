package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// TestLogPcap checks --log-pcap: every logged packet, and only those, is
// written to a capture that decodes back to what was sent.
func TestLogPcap(t *testing.T) {
	n := agentNet(t, 8080)
	capture := filepath.Join(t.TempDir(), "drops.pcap")
	a := startAgent(t, n.Server, writePolicy(t, webPolicy), "--log-pcap", capture)

	tcpEcho(t, n.Client, netip.AddrPortFrom(n.Server.Addr4(), 8080)) // accepted: not captured
	c := inNS(t, n.Client, func() (net.Conn, error) { return net.Dial("udp", netip.AddrPortFrom(n.Server.Addr6(), 7777).String()) })
	defer c.Close()
	sent := [][]byte{[]byte("one"), []byte("second datagram"), bytes.Repeat([]byte("z"), 101)}
	for _, p := range sent {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if evs := a.waitEvents(t, len(sent), func(e event) bool { return e.str("dport") == "7777" }); len(evs) != len(sent) {
		t.Fatalf("%d events for %d dropped datagrams; all events: %v", len(evs), len(sent), a.events(t))
	}
	// Stop the agent so the capture is flushed and closed.
	if code := a.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}

	f, err := os.Open(capture)
	if err != nil {
		t.Fatalf("open capture: %v", err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("read capture header: %v", err)
	}
	var got [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read capture: %v", err)
		}
		pkt := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		udp, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok {
			t.Errorf("captured packet is not UDP (link type %v): %v", r.LinkType(), pkt)
			continue
		}
		ip6, ok := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if !ok || !ip6.SrcIP.Equal(n.Client.Addr6().AsSlice()) || udp.DstPort != 7777 {
			t.Errorf("captured packet is not the client's datagram to 7777: %v", pkt)
			continue
		}
		got = append(got, udp.Payload)
	}
	if len(got) != len(sent) {
		t.Fatalf("%d packets captured, want the %d dropped datagrams", len(got), len(sent))
	}
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			t.Errorf("captured payload %d = %q, want %q", i, got[i], sent[i])
		}
	}

	// The capture replays through `fwagent eval` to the same decisions.
	out, code := runAgent(t, "eval", "--policy", a.policy, "--json", capture)
	if code != 0 {
		t.Fatalf("fwagent eval: exit %d:\n%s", code, out)
	}
	var lines []event
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("fwagent eval --json line %q: %v", l, err)
		}
		lines = append(lines, e)
	}
	if len(lines) != len(sent) {
		t.Fatalf("fwagent eval printed %d lines, want %d:\n%s", len(lines), len(sent), out)
	}
	for _, e := range lines {
		checkEvent(t, e, map[string]string{"verdict": "drop", "rule": "default"})
	}
}
