package testnet

import "net"

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
