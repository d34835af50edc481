package ifname

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/eventually"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// TestWatchSeesRename renames and then removes an interface in a namespace
// and checks that the cache gives the new name, then the fallback, without
// a Refresh: iif/oif rules must not keep matching a name the host no longer
// uses.
func TestWatchSeesRename(t *testing.T) {
	testnet.RequireRoot(t)
	n := testnet.New(t)
	ns := n.Server
	c, err := NewAt(int(ns.Handle()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	watchErr := make(chan error, 1)
	go func() { watchErr <- c.Watch(ctx) }()
	defer func() {
		cancel()
		if err := <-watchErr; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()

	h := ns.Netlink()
	link, err := h.LinkByName(ns.Ifaces()[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	index := uint32(link.Attrs().Index)
	waitName := func(want string) {
		t.Helper()
		if !eventually.True(10*time.Second, 10*time.Millisecond, func() bool { return c.Name(index) == want }) {
			t.Fatalf("Name(%d) = %q, want %q", index, c.Name(index), want)
		}
	}
	waitName(link.Attrs().Name)

	// A rename needs the link down.
	if err := h.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetName(link, "renamed0"); err != nil {
		t.Fatal(err)
	}
	waitName("renamed0")

	if err := h.LinkDel(link); err != nil {
		t.Fatal(err)
	}
	waitName("if" + strconv.FormatUint(uint64(index), 10))
}
