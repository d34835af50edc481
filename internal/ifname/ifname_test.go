package ifname

import (
	"errors"
	"net"
	"testing"
)

func TestCacheResolvesOnceAndRefreshes(t *testing.T) {
	calls := 0
	name := "eth0"
	c := New()
	c.lookup = func(i int) (string, error) {
		calls++
		if i == 7 {
			return name, nil
		}
		return "", errors.New("no such interface")
	}
	for range 3 {
		if got := c.Name(7); got != "eth0" {
			t.Fatalf("Name(7) = %q, want eth0", got)
		}
	}
	if calls != 1 {
		t.Fatalf("lookups = %d, want 1 (cached)", calls)
	}
	if got := c.Name(9); got != "if9" {
		t.Fatalf("Name(9) of a missing interface = %q, want its index", got)
	}
	if got := c.Name(0); got != "" {
		t.Fatalf("Name(0) = %q, want empty", got)
	}
	name = "wan0"
	c.Refresh()
	if got := c.Name(7); got != "wan0" {
		t.Fatalf("after Refresh Name(7) = %q, want wan0", got)
	}
}

func TestCacheLoopback(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no loopback interface")
	}
	if got := New().Name(uint32(lo.Index)); got != "lo" {
		t.Fatalf("Name(%d) = %q, want lo", lo.Index, got)
	}
}
