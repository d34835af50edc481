// Package ifname resolves interface indexes, as netfilter reports them, to
// names, without a syscall per packet, and forgets a name as soon as the
// kernel says the interface was renamed or removed.
package ifname

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// maxEntries bounds the cache on hosts that churn through interface indexes
// (containers); past it the cache starts over.
const maxEntries = 4096

// Cache maps interface indexes to names. Lookups are lock-free reads of an
// immutable map; a miss asks the kernel once and publishes a new map. Names
// change (renames, an index reused by a new veth), so Watch drops an entry
// when the kernel announces a change to its link; without Watch, Refresh is
// the only way to forget.
type Cache struct {
	names atomic.Pointer[map[uint32]string]
	mu    sync.Mutex // serialises misses and invalidations
	// lookup asks the kernel for an index's name; a field so tests can
	// fake it.
	lookup func(index int) (string, error)
	// ns is the namespace the cache resolves in (watched by Watch);
	// netns.None() for the caller's.
	ns     netns.NsHandle
	handle *netlink.Handle
}

// New makes an empty cache for the caller's network namespace.
func New() *Cache {
	c := &Cache{ns: netns.None(), lookup: func(i int) (string, error) {
		ifi, err := net.InterfaceByIndex(i)
		if err != nil {
			return "", err
		}
		return ifi.Name, nil
	}}
	c.reset()
	return c
}

// NewAt makes an empty cache that resolves names in the network namespace
// open as nsFD, which must stay open until Close. Close releases the cache's
// netlink socket.
func NewAt(nsFD int) (*Cache, error) {
	ns := netns.NsHandle(nsFD)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("ifname: open netlink in namespace: %w", err)
	}
	c := &Cache{ns: ns, handle: h, lookup: func(i int) (string, error) {
		l, err := h.LinkByIndex(i)
		if err != nil {
			return "", err
		}
		return l.Attrs().Name, nil
	}}
	c.reset()
	return c, nil
}

// Close releases what NewAt opened; it is a no-op for New's caches.
func (c *Cache) Close() {
	if c.handle != nil {
		c.handle.Close()
	}
}

// Name returns the interface's name, or "if<index>" when the kernel does not
// know the index (a packet can outlive its interface).
func (c *Cache) Name(index uint32) string {
	if index == 0 {
		return ""
	}
	if n, ok := (*c.names.Load())[index]; ok {
		return n
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.names.Load()
	if n, ok := old[index]; ok {
		return n
	}
	name, err := c.lookup(int(index))
	if err != nil {
		name = "if" + strconv.FormatUint(uint64(index), 10)
	}
	var m map[uint32]string
	if len(old) >= maxEntries {
		m = make(map[uint32]string, 1)
	} else {
		m = make(map[uint32]string, len(old)+1)
		for k, v := range old {
			m[k] = v
		}
	}
	m[index] = name
	c.names.Store(&m)
	return name
}

// Refresh forgets every name, so renamed or replaced interfaces are looked up
// again.
func (c *Cache) Refresh() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reset()
}

func (c *Cache) reset() {
	m := map[uint32]string{}
	c.names.Store(&m)
}

// forget drops one index unless the cache already holds name for it.
// Holding mu while Name resolves a miss means an invalidation cannot be
// overtaken by a lookup that read the old name.
func (c *Cache) forget(index uint32, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.names.Load()
	if n, ok := old[index]; !ok || n == name {
		return
	}
	m := make(map[uint32]string, len(old))
	for k, v := range old {
		if k != index {
			m[k] = v
		}
	}
	c.names.Store(&m)
}

// Watch follows the kernel's link notifications in the cache's namespace
// until ctx is done, dropping the entry of every interface that is renamed
// or removed, so `iif`/`oif` rules and the drop log see the new name at
// once. It forgets everything when it starts and whenever the subscription
// reports an error (notifications may have been lost). It returns an error
// only if it cannot subscribe.
func (c *Cache) Watch(ctx context.Context) error {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	errs := make(chan error, 1)
	opts := netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			select {
			case errs <- err:
			default:
			}
		},
	}
	if c.ns.IsOpen() {
		ns := c.ns
		opts.Namespace = &ns
	}
	if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
		return fmt.Errorf("ifname: subscribe to link updates: %w", err)
	}
	c.Refresh()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-errs:
			c.Refresh()
		case u, ok := <-updates:
			if !ok {
				return nil
			}
			name := ""
			if u.Attrs() != nil && u.Header.Type != unix.RTM_DELLINK {
				name = u.Attrs().Name
			}
			c.forget(uint32(u.Index), name)
		}
	}
}
