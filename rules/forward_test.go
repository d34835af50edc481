package rules

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// TestForwardPath runs the forward chain on a router between two
// namespaces: traffic the agent accepts passes through, a drop is logged and
// never reaches the server, a reject reaches the client as an ICMP error.
func TestForwardPath(t *testing.T) {
	requireKernel(t)
	n := testnet.New(t, testnet.WithRouter())
	c, err := nftables.New(nftables.WithNetNSFd(int(n.Router.Handle())))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Hooks = []nf.Hook{nf.HookForward}
	cfg.QueueKind = QueueXT
	if _, err := Install(c, cfg); err != nil {
		t.Fatal(err)
	}
	ag := startFakeAgent(t, int(n.Router.Handle()), cfg)

	for _, family := range []struct {
		name   string
		server net.IP
	}{
		{"udp4", net.IP(n.Server.Addr4().AsSlice())},
		{"udp6", net.IP(n.Server.Addr6().AsSlice())},
	} {
		t.Run(family.name, func(t *testing.T) {
			var srv, cli *net.UDPConn
			if err := n.Server.Do(func() error {
				var err error
				srv, err = net.ListenUDP(family.name, &net.UDPAddr{IP: family.server})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			if err := n.Client.Do(func() error {
				var err error
				cli, err = net.DialUDP(family.name, nil, srv.LocalAddr().(*net.UDPAddr))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			for _, s := range []string{"drop fwd", "pass fwd"} {
				if _, err := cli.Write([]byte(s)); err != nil {
					t.Fatal(err)
				}
			}
			buf := make([]byte, 64)
			srv.SetReadDeadline(time.Now().Add(10 * time.Second)) // bounds a failing test only
			nr, _, err := srv.ReadFromUDP(buf)
			if err != nil || string(buf[:nr]) != "pass fwd" {
				t.Fatalf("first datagram at the server: %q, %v; want only the accepted one", buf[:nr], err)
			}
			if q := ag.waitLog(t, LogPrefix(nf.MarkDropLog)); q.payload != "fwagent:drop drop fwd" {
				t.Errorf("logged %q", q.payload)
			}
			if _, err := cli.Write([]byte("rejectlog fwd")); err != nil {
				t.Fatal(err)
			}
			cli.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := cli.Read(buf); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("read after reject: %v, want ECONNREFUSED from the router's ICMP error", err)
			}
			if q := ag.waitLog(t, LogPrefix(nf.MarkRejectLog)); q.payload != "fwagent:reject rejectlog fwd" {
				t.Errorf("logged %q", q.payload)
			}
		})
	}
}
