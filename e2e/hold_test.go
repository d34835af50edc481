package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/florianl/go-nflog/v2"
	"github.com/florianl/go-nfqueue/v2"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// holdEnv makes the test binary a helper that binds a queue ("queue:N") or
// an NFLOG group ("log:N"), says "bound" and holds it until killed: another
// reader the agent must not take for a missing capability.
const holdEnv = "FWAGENT_E2E_HOLD"

func holdMain(spec string) int {
	kind, num, _ := strings.Cut(spec, ":")
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hold:", err)
		return 2
	}
	bind, ok := holdBinders[kind]
	if !ok {
		fmt.Fprintln(os.Stderr, "hold: unknown kind", kind)
		return 2
	}
	if err := bind(context.Background(), uint16(n)); err != nil {
		fmt.Fprintln(os.Stderr, "hold:", err)
		return 1
	}
	fmt.Println("bound")
	select {}
}

// holdBinders bind a queue or an NFLOG group by number, with a callback
// that takes every packet and does nothing.
var holdBinders = map[string]func(ctx context.Context, n uint16) error{
	"queue": func(ctx context.Context, n uint16) error {
		q, err := nfqueue.Open(&nfqueue.Config{NfQueue: n, MaxPacketLen: 0xffff, MaxQueueLen: 16, Copymode: nfqueue.NfQnlCopyPacket, AfFamily: unix.AF_UNSPEC})
		if err != nil {
			return err
		}
		return q.RegisterWithErrorFunc(ctx, func(nfqueue.Attribute) int { return 0 }, func(error) int { return 0 })
	},
	"log": func(ctx context.Context, n uint16) error {
		l, err := nflog.Open(&nflog.Config{Group: n, Copymode: nflog.CopyPacket})
		if err != nil {
			return err
		}
		return l.RegisterWithErrorFunc(ctx, func(nflog.Attribute) int { return 0 }, func(error) int { return 0 })
	},
}

// hold runs the helper in ns and waits until it has bound what spec names.
func hold(t *testing.T, ns *testnet.NS, spec string) {
	t.Helper()
	cmd := ns.Command(context.Background(), os.Args[0])
	cmd.Env = append(os.Environ(), holdEnv+"="+spec)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if strings.TrimSpace(s) != "bound" {
			t.Fatalf("hold %s: helper said %q", spec, s)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("hold %s: helper did not bind", spec)
	}
}

// runIn runs the agent with args inside ns to completion (bounded) and
// returns its combined output and exit code.
func runIn(t *testing.T, ns *testnet.NS, timeout time.Duration, args ...string) (string, int) {
	t.Helper()
	return runCmdIn(t, ns, timeout, append([]string{agentBin}, args...)...)
}

// runCmdIn runs argv inside ns to completion (a fatal error past timeout)
// and returns its combined output and exit code.
func runCmdIn(t *testing.T, ns *testnet.NS, timeout time.Duration, argv ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := ns.Command(ctx, argv[0], argv[1:]...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s still running after %v:\n%s", strings.Join(argv, " "), timeout, out)
	}
	return string(out), exitCode(t, err, argv...)
}
