package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// Deadlines for traffic that should fail. A dropped SYN or echo request
// shows as a timeout; these bounds keep the tests short, and a packet that
// got through would be answered well within them on a veth.
const (
	dropWait   = 700 * time.Millisecond // below the 1 s initial SYN retransmit, so one SYN is sent
	answerWait = 5 * time.Second
)

// serveTCP runs a dual-stack echo server on port inside ns.
func serveTCP(t *testing.T, ns *testnet.NS, port int) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatalf("listen tcp/%d in %s: %v", port, ns.Name(), err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	testnet.Serve(ln, func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		_, _ = io.Copy(c, c)
	})
}

// serveUDP runs a dual-stack UDP echo server on port inside ns; every
// datagram it receives is also sent on the returned channel.
func serveUDP(t *testing.T, ns *testnet.NS, port int) <-chan []byte {
	t.Helper()
	pc := listenPacket(t, ns, "udp", fmt.Sprintf(":%d", port))
	got := make(chan []byte, 1024)
	receive(pc, 65536, func(b []byte, from net.Addr) {
		select {
		case got <- bytes.Clone(b):
		default:
		}
		_, _ = pc.WriteTo(b, from)
	})
	return got
}

// listenPacket opens a packet socket inside ns, network and address as for
// net.ListenPacket; it closes when the test ends.
func listenPacket(t *testing.T, ns *testnet.NS, network, address string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket(network, address)
		return err
	}); err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, address, ns.Name(), err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// receive hands each packet pc reads (up to size bytes, valid only during
// the call) to handle, in a goroutine of its own, until pc is closed.
func receive(pc net.PacketConn, size int, handle func(b []byte, from net.Addr)) {
	go func() {
		buf := make([]byte, size)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			handle(buf[:n], from)
		}
	}()
}

// randomPort is a port for a client socket, chosen so the test knows the
// source port of a connection that never completes. It stays below the
// kernel's ephemeral range (32768-60999) so it cannot collide with ports the
// kernel hands to other sockets of the test.
func randomPort() int { return 10000 + rand.IntN(20000) }

// dialTCP connects from ns to dst within timeout, from source port sport
// (0: any).
func dialTCP(ns *testnet.NS, dst netip.AddrPort, sport int, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{Timeout: timeout}
		if sport != 0 {
			d.LocalAddr = &net.TCPAddr{Port: sport}
		}
		c, err = d.Dial("tcp", dst.String())
		return err
	})
	return c, err
}

// connects reports whether a connection from ns to dst (from sport, 0:
// any) opens within dropWait; one that does is closed at once. The tests
// use it for what the policy must drop.
func connects(ns *testnet.NS, dst netip.AddrPort, sport int) bool {
	c, err := dialTCP(ns, dst, sport, dropWait)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// tcpEcho asserts that a connection from ns to dst succeeds and echoes data.
func tcpEcho(t *testing.T, ns *testnet.NS, dst netip.AddrPort) {
	t.Helper()
	echoed(t, ns, dst, "tcp", []byte(fmt.Sprintf("ping %s %d", dst, rand.Int())), answerWait)
}

// echoed connects from ns to the echo server at dst, sends data and checks
// that every byte comes back in order within wait; what names the exchange
// in failures.
func echoed(t *testing.T, ns *testnet.NS, dst netip.AddrPort, what string, data []byte, wait time.Duration) {
	t.Helper()
	c, err := dialTCP(ns, dst, 0, answerWait)
	if err != nil {
		t.Errorf("%s %s: connect: %v", what, dst, err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	// Written while read back: a large write would fill both windows.
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	got := make([]byte, len(data))
	_, rerr := io.ReadFull(c, got)
	if err := <-werr; err != nil {
		t.Errorf("%s %s: write: %v", what, dst, err)
	}
	switch {
	case rerr != nil:
		t.Errorf("%s %s: read back: %v", what, dst, rerr)
	case !bytes.Equal(got, data):
		t.Errorf("%s %s: %d bytes came back altered", what, dst, len(data))
	}
}

// isTimeout reports whether err is a deadline or timeout, i.e. the peer never
// answered.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// udpExchange sends payload from ns to dst on a connected UDP socket and
// returns what Read returns: the echo, ECONNREFUSED after an ICMP port
// unreachable, or a timeout.
func udpExchange(ns *testnet.NS, dst netip.AddrPort, payload []byte, wait time.Duration) ([]byte, error) {
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.Dial("udp", dst.String())
		return err
	}); err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	return buf[:n], err
}

// ping sends one ICMP(v6) echo request from ns to dst over a raw socket and
// waits up to wait for the matching reply. It reports whether one came.
func ping(ns *testnet.NS, dst netip.Addr, id, seq, size int, wait time.Duration) (bool, error) {
	network, listen, proto := "ip4:icmp", "0.0.0.0", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, listen, proto = "ip6:ipv6-icmp", "::", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var pc *icmp.PacketConn
	if err := ns.Do(func() (err error) {
		pc, err = icmp.ListenPacket(network, listen)
		return err
	}); err != nil {
		return false, fmt.Errorf("icmp listen: %w", err)
	}
	defer pc.Close()
	msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: seq, Data: bytes.Repeat([]byte{'x'}, size)}}
	// For ICMPv6 the kernel fills in the checksum of a raw socket.
	b, err := msg.Marshal(nil)
	if err != nil {
		return false, err
	}
	if _, err := pc.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return false, fmt.Errorf("icmp send: %w", err)
	}
	deadline := time.Now().Add(wait)
	_ = pc.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if isTimeout(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("icmp read: %w", err)
		}
		// A raw socket sees every ICMP message of the namespace (neighbour
		// discovery, other tests' traffic): keep only our reply.
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != replyType {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq {
			if from.String() != dst.String() {
				return false, fmt.Errorf("echo reply from %s, want %s", from, dst)
			}
			return true, nil
		}
	}
}

var errRefused = syscall.ECONNREFUSED
