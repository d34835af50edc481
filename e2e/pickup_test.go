package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// startPickupPolicy accepts only what the kernel vouches for: a connection the
// agent did not see start lives only if it counts as established.
const startPickupPolicy = `version: 1
default:
  input: drop
  forward: drop
  output: drop
rules:
  - name: established
    match: {state: [established, related]}
    action: accept
`

// pickupRuns is how many fresh starts each hook must survive: the bar is
// 10 of 10 (without the pickup rule a sparse stream died in 4 of 6).
const pickupRuns = 10

// TestPickupSurvivesStart runs a sparse TCP stream (a write every 100-250
// ms, an SSH session's pattern) in a namespace with no firewall, so the
// kernel does not track it, starts the agent with a policy that accepts
// only established traffic and drops the rest, and checks that the stream
// keeps working while new connections are dropped: on the input hook (the
// agent on the server) and on output (the agent on the client, whose
// writes are then the first packets the kernel sees of the flow: were the
// agent on the server, the client's packets would reach conntrack first and
// make the server's echoes replies), and on forward (the agent on a router
// between them).
func TestPickupSurvivesStart(t *testing.T) {
	requireKernelTools(t)
	t.Parallel()
	for _, hook := range []string{"input", "output", "forward"} {
		t.Run(hook, func(t *testing.T) {
			t.Parallel()
			for run := range pickupRuns {
				pickupRun(t, hook, run)
				if t.Failed() {
					t.Fatalf("run %d of %d cut the stream", run+1, pickupRuns)
				}
			}
		})
	}
}

func pickupRun(t *testing.T, hook string, run int) {
	var opts []testnet.Option
	if hook == "forward" {
		opts = append(opts, testnet.WithRouter())
	}
	n := testnet.New(t, opts...)
	port := 8090
	serveTCP(t, n.Server, port)
	dst := netip.AddrPortFrom(n.Server.Addr4(), uint16(port))
	if run%2 == 1 {
		dst = netip.AddrPortFrom(n.Server.Addr6(), uint16(port))
	}
	c, err := dialTCP(n.Client, dst, 0, answerWait)
	if err != nil {
		t.Fatalf("run %d: connect before the agent: %v", run, err)
	}
	defer c.Close()

	// The stream runs on its own while the agent starts, as a real
	// session would; its result arrives when it is stopped.
	stop := make(chan struct{})
	result := make(chan error, 1)
	go func() { result <- sparseStream(c, stop) }()

	host := n.Server
	switch hook {
	case "output":
		host = n.Client
	case "forward":
		host = n.Router
	}
	// Half the runs decide in the kernel (the policy compiles whole), half
	// in userspace: the pickup bit must count as established for both.
	mode := "auto"
	if run/2%2 == 1 {
		mode = "off"
	}
	a := startAgent(t, host, writePolicy(t, startPickupPolicy), "--hooks", hook, "--kernel-rules", mode)
	time.Sleep(1500 * time.Millisecond) // about ten writes past the agent's start
	close(stop)
	if err := <-result; err != nil {
		t.Errorf("run %d (%s, %s, --kernel-rules %s): the stream older than the agent died: %v", run, hook, dst, mode, err)
	}
	if connects(n.Client, dst, 0) {
		t.Errorf("run %d: new connection to %s accepted, want the default drop on %s", run, dst, hook)
	}
	a.stop(t, syscall.SIGTERM)
}

// sparseStream writes a short message every 100-250 ms and reads its echo
// until stop is closed; a message not echoed within 3 s (several
// retransmits) means the connection was cut.
func sparseStream(c net.Conn, stop <-chan struct{}) error {
	buf := make([]byte, 64)
	for i := 0; ; i++ {
		select {
		case <-stop:
			if i < 5 {
				return fmt.Errorf("only %d messages went through", i)
			}
			return nil
		case <-time.After(time.Duration(100+rand.IntN(150)) * time.Millisecond):
		}
		msg := fmt.Sprintf("keystroke %d", i)
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return fmt.Errorf("message %d: write: %w", i, err)
		}
		got := buf[:len(msg)]
		if _, err := readFull(c, got); err != nil {
			return fmt.Errorf("message %d: no echo: %w", i, err)
		}
		if string(got) != msg {
			return fmt.Errorf("message %d: echo %q, want %q", i, got, msg)
		}
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
