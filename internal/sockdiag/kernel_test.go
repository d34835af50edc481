package sockdiag

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// TestDestroyEndsTheConnectionNotTheListener runs in a namespace pair: the
// server's accepted socket is ended (the client sees a reset, `ss` no longer
// lists it), while the listener and a second connection live on; addresses
// of no connection are refused rather than taken as the listener's.
func TestDestroyEndsTheConnectionNotTheListener(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireCommands(t, "ss")
	n := testnet.New(t)
	for _, fam := range []struct {
		name     string
		cli, srv netip.Addr
	}{{"ipv4", n.Client.Addr4(), n.Server.Addr4()}, {"ipv6", n.Client.Addr6(), n.Server.Addr6()}} {
		t.Run(fam.name, func(t *testing.T) {
			var ln net.Listener
			var c *Conn
			if err := n.Server.Do(func() error {
				var err error
				if ln, err = net.Listen("tcp", netip.AddrPortFrom(fam.srv, 0).String()); err != nil {
					return err
				}
				c, err = Dial()
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			defer c.Close()
			srvAddr := netip.MustParseAddrPort(ln.Addr().String())
			dial := func() net.Conn {
				var conn net.Conn
				if err := n.Client.Do(func() error {
					var err error
					conn, err = net.DialTimeout("tcp", srvAddr.String(), 5*time.Second)
					return err
				}); err != nil {
					t.Fatal(err)
				}
				return conn
			}
			victim, other := dial(), dial()
			defer victim.Close()
			defer other.Close()
			accepted := make([]net.Conn, 0, 2)
			for range 2 {
				a, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				defer a.Close()
				accepted = append(accepted, a)
			}
			remote := netip.MustParseAddrPort(victim.LocalAddr().String())
			if err := c.Destroy(srvAddr, remote); err != nil {
				t.Fatalf("Destroy: %v", err)
			}
			// The client's end gets the socket's reset.
			victim.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := victim.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "timeout") {
				t.Fatalf("client read after destroy: %v, want a reset", err)
			}
			out, err := n.Server.Command(t.Context(), "ss", "-Htn", "state", "established").CombinedOutput()
			if err != nil {
				t.Fatalf("ss: %v: %s", err, out)
			}
			if strings.Contains(string(out), remote.String()) || strings.Count(string(out), "\n") != 1 {
				t.Fatalf("ss still lists the ended connection, or lost the other:\n%s", out)
			}
			// The other connection still works, and the listener too.
			if _, err := other.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			accepted[1].SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := accepted[1].Read(make([]byte, 1)); err != nil {
				t.Fatalf("the other connection: %v", err)
			}
			// No such connection: the lookup would fall back to the
			// listener, which Destroy refuses to end.
			stale := netip.AddrPortFrom(fam.cli, 1)
			if err := c.Destroy(srvAddr, stale); err == nil {
				t.Fatal("Destroy of no connection succeeded")
			}
			third := dial()
			defer third.Close()
		})
	}
}
