package testnet

import (
	"net"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/packet"
)

// TestRawLink: a UDP datagram written as an Ethernet frame onto the
// client's veth arrives at a socket of the server, from the client.
func TestRawLink(t *testing.T) {
	n := New(t)
	srv := n.Server.ListenUDP4(t, 0)
	port := srv.LocalAddr().(*net.UDPAddr).Port
	b, err := packet.Build(packet.Spec{Src: n.Client.Addr4(), Dst: n.Server.Addr4(), Proto: packet.ProtoUDP, SrcPort: 4000, DstPort: uint16(port), Payload: []byte("raw frame")})
	if err != nil {
		t.Fatal(err)
	}
	link := n.Client.OpenRawLink(t, n.Client.Ifaces()[0].Name, n.Server, n.Server.Ifaces()[0].Name)
	if err := link.Send(0x0800, b); err != nil {
		t.Fatal(err)
	}
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	k, from, err := srv.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got := string(buf[:k]); got != "raw frame" || from.AddrPort().Addr().Unmap() != n.Client.Addr4() || from.Port != 4000 {
		t.Errorf("got %q from %v, want \"raw frame\" from %s:4000", got, from, n.Client.Addr4())
	}
}
