package testnet

import (
	"net"
	"sync"
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

// ReadEach reads every datagram that reaches one of conns, on a goroutine
// each, and calls got with the index of its socket and its length: the
// counting receivers of the queue tests. At the test's end the sockets are
// closed and the readers waited for, so got is not called after it.
func ReadEach(tb testing.TB, conns []*net.UDPConn, got func(i, n int)) {
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				got(i, n)
			}
		}()
	}
	tb.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	})
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
