package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// The three minimal cases of #13, each found by an independent oracle that
// runs the same probes through a hand-written nftables translation of the
// policy: the kernel-only reference and the agent must decide alike. Each
// test failed on the agent before the fix: the agent let through traffic
// the reference drops or rejects.

// semanticsWait bounds how long a test waits for an echo the policy must
// stop; an echo that got through would arrive in well under it on a veth.
const semanticsWait = 2 * time.Second

// echoAfterConnect connects from ns to dst, writes msg and reports whether
// the echo came back (connect itself succeeding is not the question: the
// handshake's first packet is accepted in every case below).
func echoAfterConnect(t *testing.T, ns *testnet.NS, dst netip.AddrPort, msg string) bool {
	t.Helper()
	c, err := dialTCP(ns, dst, 0, answerWait)
	if err != nil {
		t.Fatalf("tcp %s: connect: %v", dst, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(semanticsWait))
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c, got)
	return err == nil && string(got) == msg
}

const estDropAfterDefaultAccept = `version: 1
default: {input: accept}
rules:
  - name: est-drop
    match: {proto: tcp, state: established}
    action: drop
`

// TestStateTaintedDecisionNotOffloaded: the default accepts the SYN only
// because est-drop was skipped for its state. The kernel then sees the
// handshake ACK and the data as established, and est-drop must drop them;
// the old agent offloaded the flow on the SYN and echoed the data.
func TestStateTaintedDecisionNotOffloaded(t *testing.T) {
	n := agentNet(t, 7301)
	startAgent(t, n.Server, writePolicy(t, estDropAfterDefaultAccept))
	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		if echoAfterConnect(t, n.Client, netip.AddrPortFrom(dst, 7301), "data") {
			t.Errorf("%s: established data was echoed; est-drop must drop it", dst)
		}
	}
}

const estDropThenAll = `version: 1
default: {input: drop}
rules:
  - name: est-drop
    match: {state: established}
    action: drop
  - name: all
    match: {}
    action: accept
    offload: false
`

// TestInboundUDPAndICMPBecomeEstablished: with --hooks input the server's
// replies leave by output unqueued, so only the kernel knows the flow is
// established by the second datagram or echo request. The old agent called
// it new and accepted it by "all".
func TestInboundUDPAndICMPBecomeEstablished(t *testing.T) {
	n := agentNet(t)
	got := serveUDP(t, n.Server, 7302)
	startAgent(t, n.Server, writePolicy(t, estDropThenAll), "--hooks", "input")
	for i, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		t.Run(fmt.Sprintf("udp %s", dst), func(t *testing.T) {
			c := inNS(t, n.Client, func() (net.Conn, error) { return net.Dial("udp", netip.AddrPortFrom(dst, 7302).String()) })
			defer c.Close()
			buf := make([]byte, 64)
			if _, err := c.Write([]byte("first")); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(answerWait))
			if _, err := c.Read(buf); err != nil {
				t.Fatalf("first datagram: no echo: %v", err)
			}
			if _, err := c.Write([]byte("second")); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(semanticsWait))
			if m, err := c.Read(buf); err == nil {
				t.Errorf("second datagram echoed (%q); the kernel calls it established and est-drop must drop it", buf[:m])
			}
			for {
				select {
				case d := <-got:
					if string(d) == "second" {
						t.Errorf("the server received the second datagram")
					}
					continue
				default:
				}
				break
			}
		})
		t.Run(fmt.Sprintf("icmp %s", dst), func(t *testing.T) {
			id := 7300 + i
			if ok, err := ping(n.Client, dst, id, 1, 8, answerWait); err != nil || !ok {
				t.Fatalf("first echo request: reply %v, %v; want a reply", ok, err)
			}
			if ok, err := ping(n.Client, dst, id, 2, 8, semanticsWait); err != nil || ok {
				t.Errorf("second echo request: reply %v, %v; the kernel calls it established and est-drop must drop it", ok, err)
			}
		})
	}
}

const inputOutputNoPush = `version: 1
default: {input: drop, output: accept}
rules:
  - name: no-push
    hook: input
    match: {tcp_flags: P/P}
    action: reject
  - name: tcp-in
    hook: input
    match: {proto: tcp}
    action: accept
`

// TestOffloadStaysOnItsHookAndDirection: with --hooks input,output the
// output default accepts the server's SYN-ACK and offloads that direction
// at output. The old agent's connmark then let the client's data skip the
// input rules, so no-push never fired. Run with the 8-bit mask documented
// for Calico, so the narrow layout is exercised live too.
func TestOffloadStaysOnItsHookAndDirection(t *testing.T) {
	n := agentNet(t, 7303)
	startAgent(t, n.Server, writePolicy(t, inputOutputNoPush), "--hooks", "input,output", "--mark-mask", "0x00ff0000")
	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		if echoAfterConnect(t, n.Client, netip.AddrPortFrom(dst, 7303), "pushed") {
			t.Errorf("%s: data with PSH was echoed; no-push must reject it at input", dst)
		}
	}
}

const rejectWithOutputHook = `version: 1
default: {input: drop, output: accept}
rules:
  - name: refuse
    hook: input
    match: {dport: 7304}
    action: reject
`

// rejectWithOutputInspection adds an output rule that needs userspace and
// that every output packet could match, the reply to a rejected packet
// too: its queue rule is the first thing that reply meets.
const rejectWithOutputInspection = rejectWithOutputHook + `  - name: inspect-out
    hook: output
    match: {payload: {contains: "never sent"}}
    action: drop
`

// TestRejectReplyLeavesThroughQueuedOutput: with --hooks input,output the
// reset or port unreachable that answers a rejected packet passes the
// output hook. It is related to the rejected packet's conntrack entry,
// which is not confirmed yet, and NFQUEUE drops such a packet rather than
// queue it: with --kernel-rules off the client used to wait for a timeout
// where the kernel-only reference refuses at once. Found by the oracle test.
// With an output rule that needs userspace in front, both modes lost the
// reply at that rule's queue rule; the kernel now decides it with the
// rules it runs (docs/policy.md, "Replies to rejected packets").
func TestRejectReplyLeavesThroughQueuedOutput(t *testing.T) {
	for _, tc := range []struct{ mode, name, policy string }{
		{"off", "plain", rejectWithOutputHook},
		{"auto", "plain", rejectWithOutputHook},
		{"off", "output-queue-rule", rejectWithOutputInspection},
		{"auto", "output-queue-rule", rejectWithOutputInspection},
	} {
		t.Run(tc.mode+"/"+tc.name, func(t *testing.T) {
			n := agentNet(t)
			startAgent(t, n.Server, writePolicy(t, tc.policy), "--hooks", "input,output", "--kernel-rules", tc.mode)
			for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
				to := netip.AddrPortFrom(dst, 7304)
				if _, err := dialTCP(n.Client, to, 0, dropWait); !errors.Is(err, errRefused) {
					t.Errorf("tcp %s: %v, want connection refused (a reset)", to, err)
				}
				if _, err := udpExchange(n.Client, to, []byte("refuse me"), dropWait); !errors.Is(err, errRefused) {
					t.Errorf("udp %s: %v, want connection refused (a port unreachable)", to, err)
				}
			}
		})
	}
}

const invalidLogged = `version: 1
default: {input: drop}
rules:
  - name: inv
    match: {state: invalid}
    action: drop
    log: true
  - name: all
    match: {}
    action: accept
    offload: false
`

// TestKernelInvalidIsInvalid: the agent's `state` is the kernel
// conntrack's. A TCP FIN|ACK that no connection explains is invalid to the
// kernel (it attaches no flow), so rule inv drops and logs it. A stray ACK
// is new to the kernel (loose pickup starts a flow mid-stream), so rule all
// accepts it, although the agent's own tracker calls such an ACK invalid:
// before this branch the agent dropped it where the kernel-only reference
// accepts it. What reaches the server is read from a raw socket there,
// which sees only packets the input hook accepted.
func TestKernelInvalidIsInvalid(t *testing.T) {
	n := agentNet(t)
	a := startAgent(t, n.Server, writePolicy(t, invalidLogged))
	src, dst := n.Client.Addr4(), n.Server.Addr4()
	cli := listenPacket(t, n.Client, "ip4:tcp", src.String())
	srv := listenPacket(t, n.Server, "ip4:tcp", dst.String())
	arrived := make(chan uint16, 16)
	receive(srv, 1500, func(b []byte, _ net.Addr) {
		if len(b) >= 20 {
			arrived <- uint16(b[0])<<8 | uint16(b[1])
		}
	})
	const fin, ack = 0x01, 0x10
	send := func(sport uint16, flags byte) {
		t.Helper()
		if _, err := cli.WriteTo(tcpSeg(src, dst, sport, 7305, flags, 5, nil), &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			t.Fatal(err)
		}
	}
	send(7304, fin|ack)
	evs := a.waitEvents(t, 1, func(e event) bool { return e.str("rule") == "inv" && e.isProto("tcp", 6) })
	if len(evs) != 1 {
		t.Fatalf("%d drop events by rule inv for a stray FIN, want 1: %v", len(evs), a.events(t))
	}
	send(7308, ack)
	deadline := time.After(answerWait)
	for {
		select {
		case sport := <-arrived:
			if sport == 7304 {
				t.Fatal("the invalid FIN reached the server")
			}
			if sport != 7308 {
				continue
			}
		case <-deadline:
			t.Fatalf("the stray ACK (new to the kernel) never reached the server; events: %v", a.events(t))
		}
		break
	}
	for _, e := range a.events(t) {
		if e.str("sport") == "7308" {
			t.Errorf("the stray ACK was logged: %v", e)
		}
	}
}

const forwardOneWay = `version: 1
default: {forward: drop}
rules:
  - name: out
    hook: forward
    match: {proto: udp, dport: 7309}
    action: accept
`

// TestForwardOffloadIsOneWay: on a router, an accept of a forwarded UDP
// flow's original direction offloads that direction only. The policy has
// no rule for the replies (sport 7309, no `state` rule), so the kernel-only
// reference drops them; the old agent's connmark accepted them at the same
// hook without a decision.
func TestForwardOffloadIsOneWay(t *testing.T) {
	n := routerNet(t)
	got := serveUDP(t, n.Server, 7309)
	startAgent(t, n.Router, writePolicy(t, forwardOneWay), "--hooks", "forward")
	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		c := inNS(t, n.Client, func() (net.Conn, error) { return net.Dial("udp", netip.AddrPortFrom(dst, 7309).String()) })
		for i := range 3 {
			msg := fmt.Sprintf("one-way %d", i)
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			select {
			case d := <-got:
				if string(d) != msg {
					t.Fatalf("%s: server got %q, want %q", dst, d, msg)
				}
			case <-time.After(answerWait):
				t.Fatalf("%s: datagram %d never reached the server: out must accept it", dst, i)
			}
			_ = c.SetReadDeadline(time.Now().Add(semanticsWait / 2))
			if m, err := c.Read(make([]byte, 64)); err == nil {
				t.Errorf("%s: reply %d came back (%d bytes); no rule accepts the reply direction at forward", dst, i, m)
			}
		}
		c.Close()
	}
}
