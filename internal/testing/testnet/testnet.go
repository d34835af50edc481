package testnet

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Net is a client and a server namespace joined by a veth pair, or, with
// WithRouter, a client and a server each joined to a forwarding router.
//
// Addresses (x random per Net, so concurrent Nets are easy to tell apart in
// logs; the namespaces isolate them anyway):
//
//	direct:  client 10.237.x.1/24 fd00:0:237:x::1/64 — server 10.237.x.2/24 fd00:0:237:x::2/64
//	routed:  client 10.237.x.2 — router 10.237.x.1 | router 10.238.x.1 — server 10.238.x.2
//	         (same pattern in fd00:0:237:x::/64 and fd00:0:238:x::/64), default routes via the router
type Net struct {
	Client *NS
	Server *NS
	Router *NS // nil without WithRouter

	id        string
	afterStep func(n *Net) error
	closeOnce sync.Once
	closeErr  error
	all       []*NS
}

type config struct {
	prefix string
	router bool
	mtu    int
	// afterStep, when set (tests only), runs after each namespace is built
	// and can fail the build to prove that a half-built Net is torn down.
	afterStep func(n *Net) error
}

// Option configures New and Open.
type Option func(*config)

// WithRouter puts a third namespace between client and server, with IPv4
// and IPv6 forwarding on, for tests of the forward hook.
func WithRouter() Option { return func(c *config) { c.router = true } }

// WithPrefix sets the first part of namespace names (default "fwt"), to tell
// a test's namespaces apart in `ip netns list`.
func WithPrefix(p string) Option { return func(c *config) { c.prefix = p } }

// WithMTU sets the MTU of every veth interface (default: the kernel's).
func WithMTU(mtu int) Option { return func(c *config) { c.mtu = mtu } }

// New builds a Net for a test and registers its Close with t.Cleanup before
// building anything, so whatever was built is torn down even when building
// or the test fails. It calls RequireRoot first.
func New(t testing.TB, opts ...Option) *Net {
	t.Helper()
	RequireRoot(t)
	n, err := open(t, opts...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return n
}

// Open builds a Net outside a test (benchmark harnesses); the caller must
// Close it. On error nothing is left behind.
func Open(opts ...Option) (*Net, error) {
	n, err := open(nil, opts...)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// open builds a Net; with a non-nil t it registers Close as a cleanup that
// fails t if teardown leaves something behind.
func open(t testing.TB, opts ...Option) (*Net, error) {
	cfg := config{prefix: "fwt"}
	for _, o := range opts {
		o(&cfg)
	}
	var idb [4]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, fmt.Errorf("testnet: random id: %w", err)
	}
	n := &Net{id: hex.EncodeToString(idb[:]), afterStep: cfg.afterStep}
	if t != nil {
		t.Cleanup(func() {
			if err := n.Close(); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
	if err := n.build(cfg, idb); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	return n, nil
}

// ID is the random part of the namespace names.
func (n *Net) ID() string { return n.id }

// Namespaces lists client, server and (if any) router.
func (n *Net) Namespaces() []*NS { return append([]*NS(nil), n.all...) }

func (n *Net) newNS(prefix, role string) (*NS, error) {
	ns := &NS{name: fmt.Sprintf("%s-%s-%s", prefix, n.id, role), handle: netns.None()}
	h, err := createNamed(ns.name)
	if err != nil {
		return nil, err
	}
	ns.handle = h
	n.all = append(n.all, ns) // from here on Close removes it
	if n.afterStep != nil {
		if err := n.afterStep(n); err != nil {
			return nil, err
		}
	}
	if ns.nl, err = netlink.NewHandleAt(h); err != nil {
		return nil, fmt.Errorf("testnet: netlink handle in %s: %w", ns.name, err)
	}
	lo, err := ns.nl.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("testnet: find lo in %s: %w", ns.name, err)
	}
	if err := ns.nl.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("testnet: lo up in %s: %w", ns.name, err)
	}
	// Only our own addresses are marked nodad; this keeps link-local and any
	// address a test adds later usable at once too.
	for _, k := range []string{"net/ipv6/conf/all/accept_dad", "net/ipv6/conf/default/accept_dad"} {
		if err := ns.WriteSysctl(k, "0"); err != nil {
			return nil, err
		}
	}
	return ns, nil
}

func (n *Net) build(cfg config, idb [4]byte) error {
	x := int(binary.BigEndian.Uint16(idb[:2])%254) + 1 // 1..254
	var err error
	if n.Client, err = n.newNS(cfg.prefix, "client"); err != nil {
		return err
	}
	if n.Server, err = n.newNS(cfg.prefix, "server"); err != nil {
		return err
	}
	if !cfg.router {
		return link(cfg, n.Client, n.Server, "veth-c", "veth-s", 237, x)
	}
	if n.Router, err = n.newNS(cfg.prefix, "router"); err != nil {
		return err
	}
	// Router interfaces get .1, the ends get .2: link gives the first
	// namespace .1, so the router goes first.
	if err := link(cfg, n.Router, n.Client, "veth-rc", "veth-c", 237, x); err != nil {
		return err
	}
	if err := link(cfg, n.Router, n.Server, "veth-rs", "veth-s", 238, x); err != nil {
		return err
	}
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		if err := n.Router.WriteSysctl(k, "1"); err != nil {
			return err
		}
	}
	for _, end := range []*NS{n.Client, n.Server} {
		ifc := end.ifaces[0]
		peer4, peer6 := ifc.Addr4.Addr().Prev(), ifc.Addr6.Addr().Prev() // .1 and ::1
		l, err := end.nl.LinkByName(ifc.Name)
		if err != nil {
			return fmt.Errorf("testnet: find %s in %s: %w", ifc.Name, end.name, err)
		}
		for _, gw := range []netip.Addr{peer4, peer6} {
			r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(gw.AsSlice())}
			if err := end.nl.RouteAdd(r); err != nil {
				return fmt.Errorf("testnet: default route via %s in %s: %w", gw, end.name, err)
			}
		}
	}
	return nil
}

// link joins a and b with a veth pair named nameA/nameB, gives a .1/::1 and
// b .2/::2 in 10.<third>.x.0/24 and fd00:0:<third>:x::/64, brings both up
// and waits until the kernel reports them running.
func link(cfg config, a, b *NS, nameA, nameB string, third, x int) error {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: nameA, MTU: cfg.mtu},
		PeerName:      nameB,
		PeerNamespace: netlink.NsFd(int(b.handle)),
	}
	// Created from a's handle, the pair is born inside the namespaces and
	// never exists in the root namespace.
	if err := a.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("testnet: add veth %s/%s: %w", nameA, nameB, err)
	}
	base4 := netip.AddrFrom4([4]byte{10, byte(third), byte(x), 0})
	// The decimal third octet is written as hex digits so 10.237.x and
	// fd00:0:237:x read alike.
	base6 := netip.MustParseAddr(fmt.Sprintf("fd00:0:%d:%x::", third, x))
	for i, end := range []struct {
		ns   *NS
		name string
	}{{a, nameA}, {b, nameB}} {
		ifc := Iface{
			Name:  end.name,
			Addr4: netip.PrefixFrom(nth(base4, i+1), 24),
			Addr6: netip.PrefixFrom(nth(base6, i+1), 64),
		}
		end.ns.ifaces = append(end.ns.ifaces, ifc)
		l, err := end.ns.nl.LinkByName(end.name)
		if err != nil {
			return fmt.Errorf("testnet: find %s in %s: %w", end.name, end.ns.name, err)
		}
		for _, p := range []netip.Prefix{ifc.Addr4, ifc.Addr6} {
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
			if p.Addr().Is6() {
				addr.Flags = unix.IFA_F_NODAD
			}
			if err := end.ns.nl.AddrAdd(l, addr); err != nil {
				return fmt.Errorf("testnet: add %s to %s in %s: %w", p, end.name, end.ns.name, err)
			}
		}
		if err := end.ns.nl.LinkSetUp(l); err != nil {
			return fmt.Errorf("testnet: set %s up in %s: %w", end.name, end.ns.name, err)
		}
	}
	for _, end := range []struct {
		ns   *NS
		name string
	}{{a, nameA}, {b, nameB}} {
		if err := waitRunning(end.ns, end.name); err != nil {
			return err
		}
	}
	return nil
}

// nth returns base + i.
func nth(base netip.Addr, i int) netip.Addr {
	for ; i > 0; i-- {
		base = base.Next()
	}
	return base
}

// waitRunning polls until the link is operationally up, so tests start with
// a carrier. The bound only turns a broken setup into an error.
func waitRunning(ns *NS, name string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := ns.nl.LinkByName(name)
		if err != nil {
			return fmt.Errorf("testnet: find %s in %s: %w", name, ns.name, err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testnet: %s in %s not running (state %s)", name, ns.name, l.Attrs().OperState)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close deletes the veth pairs and the namespaces' mounts. It is safe to
// call more than once and from t.Cleanup; processes still running inside a
// namespace keep it alive (unnamed) until they exit, so stop them first.
func (n *Net) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		for i := len(n.all) - 1; i >= 0; i-- {
			errs = append(errs, n.all[i].close())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}
