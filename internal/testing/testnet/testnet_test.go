package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// echoServer listens on addr inside ns and echoes the first connection.
func echoServer(t *testing.T, ns *NS, network string, addr netip.Addr) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	err := ns.Do(func() error {
		var err error
		ln, err = net.Listen(network, netip.AddrPortFrom(addr, 0).String())
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", ns.Name(), err)
	}
	t.Cleanup(func() { ln.Close() })
	Serve(ln, func(c net.Conn) { _, _ = io.Copy(c, c) })
	return netip.MustParseAddrPort(ln.Addr().String())
}

func dialEcho(t *testing.T, from *NS, network string, to netip.AddrPort) {
	t.Helper()
	var c net.Conn
	err := from.Do(func() error {
		var err error
		c, err = net.DialTimeout(network, to.String(), 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", to, from.Name(), err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("hello from " + from.Name())
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
	local := netip.MustParseAddrPort(c.LocalAddr().String()).Addr()
	if local != addrOf(from, to.Addr().Is6()) {
		t.Errorf("connection came from %s, want the client's own address %s", local, addrOf(from, to.Addr().Is6()))
	}
}

func addrOf(ns *NS, v6 bool) netip.Addr {
	if v6 {
		return ns.Addr6()
	}
	return ns.Addr4()
}

// topologies are the two shapes New builds: client and server on one
// veth, or each on its own behind a router namespace.
var topologies = []struct {
	name string
	opts []Option
}{
	{"direct", nil},
	{"routed", []Option{WithRouter()}},
}

func TestReach(t *testing.T) {
	for _, tc := range topologies {
		t.Run(tc.name, func(t *testing.T) {
			n := New(t, tc.opts...)
			for _, fam := range []struct {
				network string
				v6      bool
			}{{"tcp4", false}, {"tcp6", true}} {
				t.Run(fam.network, func(t *testing.T) {
					srv := echoServer(t, n.Server, fam.network, addrOf(n.Server, fam.v6))
					dialEcho(t, n.Client, fam.network, srv)
				})
			}
		})
	}
}

func TestAddresses(t *testing.T) {
	n := New(t)
	c4, s4 := n.Client.Addr4(), n.Server.Addr4()
	if !c4.Is4() || !s4.Is4() || c4.Next() != s4 {
		t.Errorf("v4 addresses %s, %s: want consecutive IPv4", c4, s4)
	}
	if p := netip.MustParsePrefix("10.237.0.0/16"); !p.Contains(c4) {
		t.Errorf("client v4 %s outside %s", c4, p)
	}
	c6, s6 := n.Client.Addr6(), n.Server.Addr6()
	if !c6.Is6() || c6.Next() != s6 || !netip.MustParsePrefix("fd00::/8").Contains(c6) {
		t.Errorf("v6 addresses %s, %s: want consecutive ULA", c6, s6)
	}
	// The v6 address must be usable at once: no tentative (DAD) flag.
	out, err := n.Client.Command(context.Background(), "ip", "-6", "-o", "addr", "show", "dev", "veth-c").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), c6.String()) {
		t.Errorf("ip addr in client does not show %s:\n%s", c6, out)
	}
	if strings.Contains(string(out), "tentative") {
		t.Errorf("address still tentative:\n%s", out)
	}
}

func TestDoRunsInsideAndRestores(t *testing.T) {
	n := New(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()

	var inside string
	if err := n.Server.Do(func() error {
		h, err := netns.Get()
		if err != nil {
			return err
		}
		defer h.Close()
		inside = h.UniqueId()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inside != n.Server.Handle().UniqueId() {
		t.Errorf("Do ran in %s, want the server namespace %s", inside, n.Server.Handle().UniqueId())
	}

	wantErr := errors.New("boom")
	if err := n.Client.Do(func() error { return wantErr }); !errors.Is(err, wantErr) {
		t.Errorf("Do returned %v, want %v", err, wantErr)
	}

	func() {
		defer func() {
			if v := recover(); v != "panic inside" {
				t.Errorf("recovered %v, want the panic from inside Do", v)
			}
		}()
		_ = n.Client.Do(func() error { panic("panic inside") })
	}()

	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !after.Equal(before) {
		t.Errorf("caller thread moved from %s to %s", before.UniqueId(), after.UniqueId())
	}
}

func TestCommandAndSysctl(t *testing.T) {
	n := New(t, WithRouter())
	ctx := context.Background()
	for _, tc := range []struct {
		ns   *NS
		file string
		want string
	}{
		{n.Router, "/proc/sys/net/ipv4/ip_forward", "1"},
		{n.Router, "/proc/sys/net/ipv6/conf/all/forwarding", "1"},
		{n.Client, "/proc/sys/net/ipv4/ip_forward", "0"},
		{n.Server, "/proc/sys/net/ipv6/conf/all/forwarding", "0"},
	} {
		out, err := tc.ns.Command(ctx, "cat", tc.file).Output()
		if err != nil {
			t.Fatalf("cat %s in %s: %v", tc.file, tc.ns.Name(), err)
		}
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("%s in %s = %q, want %q", tc.file, tc.ns.Name(), got, tc.want)
		}
	}
}

// rootState is what a Net could leak into the root namespace.
func rootState(t *testing.T) (nsNames string, links map[string]bool) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	ls, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("root link list: %v", err)
	}
	links = map[string]bool{}
	for _, l := range ls {
		links[l.Attrs().Name] = true
	}
	return string(out), links
}

func assertGone(t *testing.T, id string, ifnames []string) {
	t.Helper()
	list, _ := rootState(t)
	if strings.Contains(list, id) {
		t.Errorf("ip netns list still shows namespaces of %s:\n%s", id, list)
	}
	assertNotInRoot(t, ifnames)
}

func assertNotInRoot(t *testing.T, ifnames []string) {
	t.Helper()
	_, links := rootState(t)
	for _, name := range ifnames {
		if links[name] {
			t.Errorf("interface %s present in the root namespace", name)
		}
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	RequireRoot(t)
	for _, tc := range topologies {
		t.Run(tc.name, func(t *testing.T) {
			n, err := Open(tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			var ifnames []string
			for _, ns := range n.Namespaces() {
				for _, ifc := range ns.Ifaces() {
					ifnames = append(ifnames, ifc.Name)
				}
			}
			list, _ := rootState(t)
			for _, ns := range n.Namespaces() {
				if !strings.Contains(list, ns.Name()) {
					t.Errorf("ip netns list does not show %s while open:\n%s", ns.Name(), list)
				}
			}
			// Born inside the namespaces, the veths never show in the root one.
			assertNotInRoot(t, ifnames)

			if err := n.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			assertGone(t, n.ID(), ifnames)
			if err := n.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestFailedBuildLeavesNothing(t *testing.T) {
	RequireRoot(t)
	for _, failAt := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(failAt), func(t *testing.T) {
			var id string
			steps := 0
			failing := func(c *config) {
				c.afterStep = func(n *Net) error {
					id = n.ID()
					steps++
					if steps == failAt {
						return errors.New("injected failure")
					}
					return nil
				}
			}
			n, err := Open(WithRouter(), failing)
			if err == nil {
				n.Close()
				t.Fatalf("Open succeeded despite a failure at step %d", failAt)
			}
			if id == "" {
				t.Fatal("the failure hook never ran")
			}
			assertGone(t, id, []string{"veth-c", "veth-s", "veth-rc", "veth-rs"})
		})
	}
}

// fakeTB records what a test helper does to its test, so helpers can be
// tested for failing, skipping and cleaning up without failing this test.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	fatal    []string
	errors   []string
	skipped  []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = append(f.fatal, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.mu.Lock()
	f.skipped = append(f.skipped, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	runtime.Goexit()
}

// run calls body as a test body would run: on its own goroutine, which
// Fatalf and Skipf end; then it runs the cleanups in reverse order.
func (f *fakeTB) run(body func(tb testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(f)
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestNewCleansUpAfterFailingTest(t *testing.T) {
	RequireRoot(t)
	f := &fakeTB{TB: t}
	var id string
	var ifnames []string
	f.run(func(tb testing.TB) {
		n := New(tb, WithRouter())
		id = n.ID()
		for _, ns := range n.Namespaces() {
			for _, ifc := range ns.Ifaces() {
				ifnames = append(ifnames, ifc.Name)
			}
		}
		tb.Fatalf("the test body fails on purpose")
	})
	if id == "" {
		t.Fatal("New did not return")
	}
	if len(f.fatal) != 1 || len(f.errors) != 0 {
		t.Errorf("fatal %q, errors %q: want only the body's own failure", f.fatal, f.errors)
	}
	assertGone(t, id, ifnames)
}

func TestSkipOrFail(t *testing.T) {
	for _, tc := range []struct {
		ci        string
		wantSkip  bool
		wantFatal bool
	}{
		{"", true, false},
		{"false", true, false},
		{"true", false, true},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			f := &fakeTB{TB: t}
			f.run(func(tb testing.TB) { skipOrFail(tb, "missing %s", "thing") })
			if got := len(f.skipped) == 1; got != tc.wantSkip {
				t.Errorf("skipped %q, want skip=%v", f.skipped, tc.wantSkip)
			}
			if got := len(f.fatal) == 1; got != tc.wantFatal {
				t.Errorf("fatal %q, want fatal=%v", f.fatal, tc.wantFatal)
			}
			for _, m := range append(f.skipped, f.fatal...) {
				if !strings.Contains(m, "missing thing") {
					t.Errorf("message %q lacks the reason", m)
				}
			}
		})
	}
	t.Run("RequireCommands", func(t *testing.T) {
		t.Setenv("CI", "true")
		f := &fakeTB{TB: t}
		f.run(func(tb testing.TB) { RequireCommands(tb, "ip", "fwt-no-such-program") })
		if len(f.fatal) != 1 || !strings.Contains(f.fatal[0], "fwt-no-such-program") {
			t.Errorf("fatal %q: want one failure naming the missing program", f.fatal)
		}
	})
}

func BenchmarkDo(b *testing.B) {
	n := New(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := n.Client.Do(func() error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewClose(b *testing.B) {
	RequireRoot(b)
	b.ReportAllocs()
	for b.Loop() {
		n, err := Open()
		if err != nil {
			b.Fatal(err)
		}
		if err := n.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestIntoCgroup: a command started with IntoCgroup reads its own cgroup
// as the test's, from its first instruction.
func TestIntoCgroup(t *testing.T) {
	cg := NewCgroup(t)
	cmd := exec.Command("cat", "/proc/self/cgroup")
	closeDir := IntoCgroup(t, cmd, cg.Dir())
	out, err := cmd.Output()
	closeDir()
	if err != nil {
		t.Fatal(err)
	}
	// The cgroup2 line is "0::PATH"; a hybrid host lists v1 lines too.
	want := "0::/" + strings.TrimPrefix(cg.Path, "/")
	if !slices.Contains(strings.Split(strings.TrimSpace(string(out)), "\n"), want) {
		t.Errorf("/proc/self/cgroup = %q, want a line %q", out, want)
	}
}
