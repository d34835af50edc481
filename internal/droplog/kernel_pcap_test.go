package droplog

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/fwagent/fwagent/internal/capture"
	"github.com/fwagent/fwagent/internal/packet"
)

// TestKernelPcapSink logs dropped UDP datagrams with a copy range large
// enough for whole packets and checks that the pcap sink holds each of them
// whole, including one the client sent in two IP fragments (the kernel logs
// the reassembled datagram).
func TestKernelPcapSink(t *testing.T) {
	const port = 9999
	var pcap bytes.Buffer
	ps, err := NewPcapSink(&pcap)
	if err != nil {
		t.Fatal(err)
	}
	lines := &lineCollector{lines: make(chan string, 64)}
	rig := startRigWith(t, port, 3, func(c *Config) { c.CopyRange = 0xffff }, NewJSONSink(lines), ps)

	payloads := [][]byte{[]byte("a"), bytes.Repeat([]byte("b"), 1001), bytes.Repeat([]byte("c"), 3000)}
	dst := rig.net.Server.Addr4()
	err = rig.net.Client.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, port)))
		if err != nil {
			return err
		}
		defer c.Close()
		for _, p := range payloads {
			if _, err := c.Write(p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for range payloads {
		select {
		case <-lines.lines:
		case <-rig.ctx.Done():
			t.Fatalf("events before the deadline: stats %+v", rig.reader.Stats())
		}
	}
	if err := rig.stop(); err != nil {
		t.Fatal(err)
	}

	cr, err := capture.Open(&pcap)
	if err != nil {
		t.Fatal(err)
	}
	d := packet.NewDecoder()
	var p packet.Packet
	for i, want := range payloads {
		f, err := cr.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if err := d.Decode(f.Data, &p); err != nil {
			t.Fatalf("frame %d (%d bytes) does not decode whole: %v", i, len(f.Data), err)
		}
		if p.Dst != dst || p.DstPort != port || p.Fragment || !bytes.Equal(p.Payload, want) || f.Truncated {
			t.Fatalf("frame %d: %v -> %v:%d fragment %v, %d payload bytes; want the %d-byte datagram to %v:%d",
				i, p.Src, p.Dst, p.DstPort, p.Fragment, len(p.Payload), len(want), dst, port)
		}
	}
	if _, err := cr.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}
