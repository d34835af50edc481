// Package ifname resolves interface indexes, as netfilter reports them, to
// names, without a syscall per packet.
package ifname

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
)

// Cache maps interface indexes to names. Lookups are lock-free reads of an
// immutable map; a miss asks the kernel once and publishes a new map.
// Interfaces come and go (veths, containers), so a name is also re-resolved
// when Refresh is called, e.g. from a periodic tick.
type Cache struct {
	names atomic.Pointer[map[uint32]string]
	mu    sync.Mutex // serialises misses
	// lookup is net.InterfaceByIndex; a field so tests can fake it.
	lookup func(int) (*net.Interface, error)
}

// New makes an empty cache.
func New() *Cache {
	c := &Cache{lookup: net.InterfaceByIndex}
	m := map[uint32]string{}
	c.names.Store(&m)
	return c
}

// Name returns the interface's name, or its index as a string when the
// interface is gone (a packet can outlive its interface).
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
	name := strconv.FormatUint(uint64(index), 10)
	if ifi, err := c.lookup(int(index)); err == nil {
		name = ifi.Name
	}
	m := make(map[uint32]string, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[index] = name
	c.names.Store(&m)
	return name
}

// Refresh forgets every name, so renamed or replaced interfaces are looked up
// again.
func (c *Cache) Refresh() {
	m := map[uint32]string{}
	c.names.Store(&m)
}
