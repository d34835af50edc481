package testnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps named namespaces; mounting ours there is
// what lets `ip netns exec` enter them.
const netnsDir = "/var/run/netns"

// Iface is one interface of a namespace with the addresses the package gave it.
type Iface struct {
	Name  string
	Addr4 netip.Prefix
	Addr6 netip.Prefix
}

// NS is one named network namespace owned by a Net.
type NS struct {
	name   string
	handle netns.NsHandle
	nl     *netlink.Handle
	ifaces []Iface
}

// Name is the namespace's name, as `ip netns list` shows it.
func (ns *NS) Name() string { return ns.name }

// Path is the bind mount that keeps the namespace alive, usable with
// `nsenter --net=PATH` or nftables.WithNetNSFd after opening it.
func (ns *NS) Path() string { return filepath.Join(netnsDir, ns.name) }

// Handle is an open file descriptor of the namespace, valid until Close.
func (ns *NS) Handle() netns.NsHandle { return ns.handle }

// Netlink is a netlink handle bound to the namespace, valid until Close.
func (ns *NS) Netlink() *netlink.Handle { return ns.nl }

// Ifaces lists the namespace's veth interfaces in creation order; the
// router's first interface faces the client.
func (ns *NS) Ifaces() []Iface { return append([]Iface(nil), ns.ifaces...) }

// Addr4 is the IPv4 address of the namespace's first interface.
func (ns *NS) Addr4() netip.Addr { return ns.ifaces[0].Addr4.Addr() }

// Addr6 is the IPv6 address of the namespace's first interface.
func (ns *NS) Addr6() netip.Addr { return ns.ifaces[0].Addr6.Addr() }

// Do runs fn on a locked OS thread switched into the namespace and returns
// its error. The calling goroutine's own thread is never switched, so Do is
// safe from any goroutine. A panic in fn is re-raised in the caller after the
// thread has been switched back.
func (ns *NS) Do(fn func() error) error {
	return do(ns.handle, fn)
}

// do runs fn on a fresh locked thread inside target.
func do(target netns.NsHandle, fn func() error) error {
	enter := func() error {
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("testnet: enter namespace: %w", err)
		}
		return nil
	}
	return onThread(enter, fn)
}

// onThread runs fn on a fresh locked OS thread that enter has moved to
// another network namespace, and moves the thread back to the one it came
// from. If the thread cannot be switched back it stays locked, so the
// runtime destroys it when the goroutine exits instead of reusing a thread
// in the wrong namespace. A panic in fn is re-raised in the caller after
// the thread has been switched back.
func onThread(enter, fn func() error) error {
	type result struct {
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("testnet: get thread namespace: %w", err)}
			return
		}
		defer origin.Close()
		if err := enter(); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		var res result
		func() {
			defer func() {
				if v := recover(); v != nil {
					res = result{panicked: true, panicVal: v}
				}
			}()
			res.err = fn()
		}()
		if err := netns.Set(origin); err != nil {
			res.err = errors.Join(res.err, fmt.Errorf("testnet: restore thread namespace: %w", err))
		} else {
			runtime.UnlockOSThread()
		}
		done <- res
	}()
	res := <-done
	if res.panicked {
		panic(res.panicVal)
	}
	return res.err
}

// Command prepares name with args to run inside the namespace through
// `ip netns exec`, which execs the program in place: the Cmd's process is the
// program itself, so signals sent to it reach the program.
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.name, name}, args...)...)
}

// WriteSysctl sets a sysctl of the namespace, e.g. "net/ipv4/ip_forward".
// /proc/sys/net resolves to the network namespace of the opening thread,
// which is why it is opened inside Do.
func (ns *NS) WriteSysctl(key, value string) error {
	return ns.Do(func() error {
		if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
			return fmt.Errorf("testnet: sysctl %s=%s in %s: %w", key, value, ns.name, err)
		}
		return nil
	})
}

// createNamed makes a new network namespace and bind-mounts it at
// /var/run/netns/name, on a thread of its own so no caller thread changes
// namespace. It returns an open handle to it.
func createNamed(name string) (netns.NsHandle, error) {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return netns.None(), fmt.Errorf("testnet: create %s: %w", netnsDir, err)
	}
	target := filepath.Join(netnsDir, name)
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return netns.None(), fmt.Errorf("testnet: create mount point: %w", err)
	}
	f.Close()

	unshare := func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("testnet: unshare: %w", err)
		}
		return nil
	}
	h := netns.None()
	err = onThread(unshare, func() error {
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, target, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("testnet: bind mount %s: %w", target, err)
		}
		opened, err := netns.GetFromPath(target)
		if err != nil {
			return fmt.Errorf("testnet: open %s: %w", target, err)
		}
		h = opened
		return nil
	})
	if err != nil {
		if h.IsOpen() {
			h.Close()
		}
		_ = unix.Unmount(target, unix.MNT_DETACH)
		_ = os.Remove(target)
		return netns.None(), err
	}
	return h, nil
}

// close removes the namespace's interfaces and its mount. The kernel frees
// the namespace once no process or socket holds it any more.
func (ns *NS) close() error {
	var errs []error
	if ns.nl != nil {
		// Deleting one end of a veth deletes both; the peer may already be gone.
		for _, ifc := range ns.ifaces {
			if l, err := ns.nl.LinkByName(ifc.Name); err == nil {
				if err := ns.nl.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
					errs = append(errs, fmt.Errorf("testnet: delete %s in %s: %w", ifc.Name, ns.name, err))
				}
			}
		}
		ns.nl.Close()
		ns.nl = nil
	}
	if ns.handle.IsOpen() {
		ns.handle.Close()
	}
	target := filepath.Join(netnsDir, ns.name)
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("testnet: unmount %s: %w", target, err))
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("testnet: remove %s: %w", target, err))
	}
	return errors.Join(errs...)
}
