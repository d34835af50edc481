package droplog

import (
	"fmt"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

const (
	// ifCacheTTL bounds how long a renamed or re-created interface keeps its
	// old name in the log.
	ifCacheTTL = 10 * time.Second
	// ifCacheMax bounds the cache on hosts that churn through interface
	// indices (containers); past it the cache starts over.
	ifCacheMax = 4096
)

// ifCache resolves interface indices with netlink, in the Reader's
// namespace, and remembers answers for ifCacheTTL. Only the reader
// goroutine uses it, so it takes no lock.
type ifCache struct {
	h *netlink.Handle
	m map[uint32]ifEntry
}

type ifEntry struct {
	name    string
	expires time.Time
}

func newIfCache(nsFD int) (*ifCache, error) {
	var (
		h   *netlink.Handle
		err error
	)
	if nsFD != 0 {
		h, err = netlink.NewHandleAt(netns.NsHandle(nsFD))
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("droplog: open netlink for interface names: %w", err)
	}
	return &ifCache{h: h, m: make(map[uint32]ifEntry)}, nil
}

func (c *ifCache) close() { c.h.Close() }

// name returns the interface's name, or "if<index>" when the kernel no
// longer knows the index (the interface went away after the packet).
func (c *ifCache) name(index uint32) string {
	now := time.Now()
	if e, ok := c.m[index]; ok && now.Before(e.expires) {
		return e.name
	}
	var name string
	if l, err := c.h.LinkByIndex(int(index)); err == nil {
		name = l.Attrs().Name
	} else {
		name = "if" + strconv.FormatUint(uint64(index), 10)
	}
	if len(c.m) >= ifCacheMax {
		clear(c.m)
	}
	c.m[index] = ifEntry{name: name, expires: now.Add(ifCacheTTL)}
	return name
}
