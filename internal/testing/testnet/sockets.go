package testnet

import (
	"net"
	"testing"
)

// Serve accepts connections on ln until it is closed, handing each to
// handle in a goroutine of its own and closing it when handle returns: the
// servers that tests run inside a namespace.
func Serve(ln net.Listener, handle func(c net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// ListenUDP4 opens a UDP socket inside the namespace on its IPv4 address
// at port (0: any free one); it closes when the test ends.
func (ns *NS) ListenUDP4(tb testing.TB, port int) *net.UDPConn {
	tb.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: ns.Addr4().AsSlice(), Port: port})
		return err
	}); err != nil {
		tb.Fatalf("listen on udp %s:%d in %s: %v", ns.Addr4(), port, ns.Name(), err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
