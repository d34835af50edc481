package rules

import (
	"testing"

	"github.com/google/nftables"
)

// benchConns are the two ways a caller can open the connection: a fresh
// netlink socket per operation (the library's default), or one lasting
// socket. In a network namespace the first costs a namespace switch per
// dial, which dominates these numbers.
func benchConns(b *testing.B, ns *testNS) map[string]*nftables.Conn {
	lasting, err := nftables.New(nftables.WithNetNSFd(ns.fd()), nftables.AsLasting())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lasting.CloseLasting() })
	return map[string]*nftables.Conn{"per-op": ns.conn(b), "lasting": lasting}
}

// BenchmarkSetGeneration is the kernel cost of a policy reload: one
// transaction replacing the two offload rules in each of three chains.
func BenchmarkSetGeneration(b *testing.B) {
	ns := newTestNS(b)
	cfg := DefaultConfig()
	cfg.Hooks, cfg.QueueKind = allHooks, QueueXT
	for name, c := range benchConns(b, ns) {
		b.Run(name, func(b *testing.B) {
			tbl, err := Install(c, cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			gen := uint32(0)
			for b.Loop() {
				gen++
				if err := tbl.SetGeneration(gen); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInstall is the cost of building the table (three chains) over an
// existing one, as at agent start.
func BenchmarkInstall(b *testing.B) {
	ns := newTestNS(b)
	cfg := DefaultConfig()
	cfg.Hooks, cfg.QueueKind = allHooks, QueueXT
	for name, c := range benchConns(b, ns) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Install(c, cfg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerify is the cost of one Guard tick on a healthy table.
func BenchmarkVerify(b *testing.B) {
	ns := newTestNS(b)
	cfg := DefaultConfig()
	cfg.Hooks, cfg.QueueKind = allHooks, QueueXT
	for name, c := range benchConns(b, ns) {
		b.Run(name, func(b *testing.B) {
			tbl, err := Install(c, cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := tbl.Verify(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
