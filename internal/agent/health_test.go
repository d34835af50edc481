package agent

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/metrics"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/pipeline"
	"github.com/fwagent/fwagent/internal/testing/eventually"
	"github.com/fwagent/fwagent/internal/testing/testnet"
	"github.com/fwagent/fwagent/internal/testing/testpolicy"
	"github.com/fwagent/fwagent/verdict"
)

// netfilterSockets lists this process's NETLINK_NETFILTER sockets.
func netfilterSockets(t *testing.T) map[int]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dom, err1 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		proto, err2 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
		if err1 == nil && err2 == nil && dom == unix.AF_NETLINK && proto == unix.NETLINK_NETFILTER {
			out[fd] = true
		}
	}
	return out
}

// TestHealthWhenQueueReaderDies binds a queue in a fresh network namespace,
// then breaks the reader's socket under it (dup2 of /dev/null over the fd,
// as a fatal socket error would): the reader stops, and the queues check
// that /healthz runs turns from healthy to failing.
func TestHealthWhenQueueReaderDies(t *testing.T) {
	testnet.RequireRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("back to the original netns: %v", err)
		} else {
			runtime.UnlockOSThread()
		}
		ns.Close()
		orig.Close()
	})

	prog := testpolicy.Compile(t, "p.yaml", "version: 1\ndefault: {input: accept}\nrules: []\n")
	marks, err := nf.NewMarks(nf.DefaultMarkMask)
	if err != nil {
		t.Fatal(err)
	}
	shared := pipeline.NewShared(&pipeline.Policy{Program: prog, Gen: 1}, marks, nil)
	before := netfilterSockets(t)
	e := verdict.New(verdict.Config{QueueBase: 7, Queues: 1, BlockingRead: true}, shared)
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := e.Start(ctx)
	if err != nil {
		cancel()
		t.Fatalf("start engine: %v", err)
	}
	t.Cleanup(func() { cancel(); wait() })

	// The check the agent gives /healthz.
	health := metrics.NewHealth(metrics.Check{Name: "queues", Fn: func() error { return queuesCheck(e.Stats().ReadersLive, 1) }})
	if p := health.Problems(); len(p) > 0 {
		t.Fatalf("healthy engine: %v", p)
	}

	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	broken := 0
	for fd := range netfilterSockets(t) {
		if !before[fd] {
			if err := unix.Dup2(int(null.Fd()), fd); err != nil {
				t.Fatal(err)
			}
			broken++
		}
	}
	if broken == 0 {
		t.Fatal("found no queue socket to break")
	}
	if !eventually.True(10*time.Second, 20*time.Millisecond, func() bool { return len(health.Problems()) > 0 }) {
		t.Fatalf("the reader's socket is gone and health still passes (%d readers live)", e.Stats().ReadersLive)
	}
	t.Logf("health after the reader died: %v", health.Problems())
}
