package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/eventually"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// The tests here drive the L7 rules with real clients (dig, curl; Chromium
// in l7browser_test.go) against real servers (dnsmasq, Go's net/http) in a
// namespace pair, the agent filtering the server's input hook.

const dnsAllowPolicy = `version: 1
default: {input: accept, output: accept, log: true}
rules:
  - name: dns-allowed
    hook: input
    match: {proto: [udp, tcp], dport: 53, dns_qname: [good.example, "*.good.example"]}
    action: accept
  - name: dns-other
    hook: input
    match: {proto: [udp, tcp], dport: 53}
    action: drop
    log: true
`

// startDnsmasq runs dnsmasq in ns, bound to addr only, answering for the
// good and bad names from its own records, never forwarding.
func startDnsmasq(t *testing.T, ns *testnet.NS, addr netip.Addr) {
	t.Helper()
	testnet.RequireCommands(t, "dnsmasq")
	cmd := ns.Command(context.Background(), "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
		"--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address="+addr.String(), "--port=53",
		"--user=root", "--pid-file=", "--log-facility=-",
		"--address=/good.example/192.0.2.1", "--address=/bad.example/192.0.2.66")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by the PID we started
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq (pid %d) output:\n%s", pid, out.String())
		}
	})
	// Ready once it answers over TCP.
	var err error
	if !eventually.True(readyTimeout, 50*time.Millisecond, func() bool {
		var c net.Conn
		if c, err = dialTCP(ns, netip.AddrPortFrom(addr, 53), 0, time.Second); err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("dnsmasq not listening: %v\n%s", err, out.String())
	}
}

// dig runs dig in ns and returns the addresses it printed, one per answer,
// in order (an unanswered query prints none).
func dig(t *testing.T, ns *testnet.NS, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := ns.Command(ctx, "dig", append([]string{"+short", "+time=2", "+tries=1"}, args...)...)
	out, _ := cmd.CombinedOutput() // dig exits 9 when a query times out
	return string(out)
}

func TestDNSRealClients(t *testing.T) {
	n := agentNet(t)
	testnet.RequireCommands(t, "dig", "dnsmasq")
	srv := n.Server.Addr4()
	startDnsmasq(t, n.Server, srv)
	startAgent(t, n.Server, writePolicy(t, dnsAllowPolicy))
	at := "@" + srv.String()

	t.Run("dig +tcp +keepopen", func(t *testing.T) {
		// One TCP connection: the allowed names answer, the denied one
		// behind them gets nothing.
		out := dig(t, n.Client, at, "+tcp", "+keepopen", "good.example", "a.good.example", "bad.example")
		if strings.Count(out, "192.0.2.1") != 2 || strings.Contains(out, "192.0.2.66") {
			t.Fatalf("dig output:\n%s\nwant two answers for the good names, none for bad.example", out)
		}
	})

	t.Run("reused UDP socket", func(t *testing.T) {
		c := inNS(t, n.Client, func() (net.Conn, error) { return net.Dial("udp", netip.AddrPortFrom(srv, 53).String()) })
		defer c.Close()
		ask := func(name string) bool {
			if _, err := c.Write(dnsQuery(t, name)); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(dropWait * 2))
			_, err := c.Read(make([]byte, 512))
			return err == nil
		}
		for i, q := range []struct {
			name string
			want bool
		}{{"good.example", true}, {"bad.example", false}, {"x.good.example", true}, {"bad.example", false}} {
			if got := ask(q.name); got != q.want {
				t.Fatalf("query %d for %s on the same socket: answered %v, want %v", i, q.name, got, q.want)
			}
		}
	})

	t.Run("tcp query with its prefix split off", func(t *testing.T) {
		for _, q := range []struct {
			name string
			want bool
		}{{"good.example", true}, {"bad.example", false}} {
			c, err := dialTCP(n.Client, netip.AddrPortFrom(srv, 53), 0, answerWait)
			if err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).SetNoDelay(true)
			msg := dnsQuery(t, q.name)
			if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(msg)))); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // the prefix leaves in its own segment
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err = c.Read(make([]byte, 2))
			c.Close()
			if got := err == nil; got != q.want {
				t.Fatalf("split-prefix query for %s: answered %v (%v), want %v", q.name, got, err, q.want)
			}
		}
	})
}

const httpHostPolicy = `version: 1
default: {input: accept, output: accept}
rules:
  - name: http-blocked
    hook: input
    match: {dport: 80, http_host: [blocked.example, "*.blocked.example"]}
    action: reject
    log: true
`

// serveHTTP runs a Go HTTP/1.1 server on addr:80 in ns that answers every
// request with its Host.
func serveHTTP(t *testing.T, ns *testnet.NS, addr netip.Addr) {
	t.Helper()
	ln := inNS(t, ns, func() (net.Listener, error) { return net.Listen("tcp", netip.AddrPortFrom(addr, 80).String()) })
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s\n", r.Host)
	})}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
}

func curl(t *testing.T, ns *testnet.NS, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := ns.Command(ctx, "curl", append([]string{"-sS", "--max-time", "5"}, args...)...).CombinedOutput()
	return string(out), err
}

func TestHTTPHostRealClients(t *testing.T) {
	n := agentNet(t)
	testnet.RequireCommands(t, "curl", "ss")
	srv := n.Server.Addr4()
	serveHTTP(t, n.Server, srv)
	a := startAgent(t, n.Server, writePolicy(t, httpHostPolicy))
	url := "http://" + srv.String() + "/"

	if out, err := curl(t, n.Client, "-H", "Host: fine.example", url); err != nil || !strings.Contains(out, "host=fine.example") {
		t.Fatalf("allowed host: %v\n%s", err, out)
	}
	for _, h := range []string{"Host: blocked.example", "Host:blocked.example", "Host: BLOCKED.example", "Host: www.Blocked.Example:80", "host:\tblocked.example."} {
		if out, err := curl(t, n.Client, "-H", h, url); err == nil || strings.Contains(out, "host=") {
			t.Errorf("%q: answered\n%s", h, out)
		}
	}
	// Keep-alive: a blocked request after an allowed one on the same
	// connection is refused; curl reuses the connection across --next.
	out, _ := curl(t, n.Client, "-v", "-H", "Host: fine.example", url, "--next", "-sS", "--max-time", "5", "-H", "Host: blocked.example", url)
	if !strings.Contains(out, "host=fine.example") || strings.Contains(out, "host=blocked.example") {
		t.Errorf("keep-alive: want the first answered and the second refused:\n%s", out)
	}
	if !strings.Contains(out, "Re-using existing connection") && !strings.Contains(out, "Reusing existing") {
		t.Logf("curl did not say it reused the connection:\n%s", out)
	}
	if evs := a.waitEvents(t, 1, func(e event) bool { return e.str("rule") == "http-blocked" }); len(evs) == 0 {
		t.Errorf("no event for the blocked requests: %v", a.events(t))
	}

	// The rejects were mid-stream (the request head follows the
	// handshake): no server socket may be left behind.
	waitNoSockets(t, n.Server, "server sockets left after the rejects", "state", "established", "sport", "= :80")
}

// waitNoSockets polls ss in ns (bounded by answerWait) until it lists no TCP
// socket that matches filter, and fails saying what, with what ss last
// listed.
func waitNoSockets(t *testing.T, ns *testnet.NS, what string, filter ...string) {
	t.Helper()
	var out []byte
	if !eventually.True(answerWait, 100*time.Millisecond, func() bool {
		var err error
		out, err = ns.Command(context.Background(), "ss", append([]string{"-Htn"}, filter...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ss: %v\n%s", err, out)
		}
		return len(bytes.TrimSpace(out)) == 0
	}) {
		t.Fatalf("%s:\n%s", what, out)
	}
}

// TestRejectEndsServerSocket keeps a rejected client's connection in view:
// a raw request whose head is rejected mid-stream must leave the server with
// no socket for it, at once, not after the server's timeouts.
func TestRejectEndsServerSocket(t *testing.T) {
	n := agentNet(t)
	testnet.RequireCommands(t, "ss")
	srv := n.Server.Addr4()
	// A server that accepts and then only waits, as a slot-limited daemon
	// would: without the agent ending it, its socket stays.
	ln := inNS(t, n.Server, func() (net.Listener, error) { return net.Listen("tcp", netip.AddrPortFrom(srv, 80).String()) })
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = c.Read(make([]byte, 1)); time.Sleep(time.Minute) }()
		}
	}()
	startAgent(t, n.Server, writePolicy(t, httpHostPolicy))
	sport := randomPort()
	c, err := dialTCP(n.Client, netip.AddrPortFrom(srv, 80), sport, answerWait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: blocked.example\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(answerWait))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("client read: %v, want a reset", err)
	}
	waitNoSockets(t, n.Server, "the server's socket of the rejected connection is still there", "dport", fmt.Sprintf("= :%d", sport))
}

const dnsRejectPolicy = `version: 1
default: {input: accept, output: accept}
rules:
  - name: dns-denied
    hook: input
    match: {proto: [udp, tcp], dport: 53, dns_qname: [bad.example]}
    action: reject
`

// TestDnsmasqTCPSlotsAfterRejects: dnsmasq serves at most 20 TCP clients at
// once. Rejected mid-stream, each of 30 clients leaves it no socket, so an
// allowed TCP query right after is still answered.
func TestDnsmasqTCPSlotsAfterRejects(t *testing.T) {
	n := agentNet(t)
	testnet.RequireCommands(t, "dig", "dnsmasq", "ss")
	srv := n.Server.Addr4()
	startDnsmasq(t, n.Server, srv)
	startAgent(t, n.Server, writePolicy(t, dnsRejectPolicy))
	for i := range 30 {
		c, err := dialTCP(n.Client, netip.AddrPortFrom(srv, 53), 0, answerWait)
		if err != nil {
			t.Fatalf("client %d: connect: %v", i, err)
		}
		msg := dnsQuery(t, "bad.example")
		if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(answerWait))
		if _, err := c.Read(make([]byte, 2)); err == nil || isTimeout(err) {
			t.Fatalf("client %d: %v, want a reset", i, err)
		}
		c.Close()
	}
	if out := dig(t, n.Client, "@"+srv.String(), "+tcp", "good.example"); !strings.Contains(out, "192.0.2.1") {
		t.Fatalf("allowed TCP query after the rejects: %q", out)
	}
	out, err := n.Server.Command(context.Background(), "ss", "-Htn", "state", "established", "sport", "= :53").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("dnsmasq sockets left (%v):\n%s", err, out)
	}
}
