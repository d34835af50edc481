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

// benchEachConn runs op in a loop over each kind of connection, on a table
// of three chains installed first (install false: op installs it).
func benchEachConn(b *testing.B, install bool, op func(c *nftables.Conn, cfg Config, tbl *Table) error) {
	ns := newTestNS(b)
	cfg := DefaultConfig()
	cfg.Hooks, cfg.QueueKind = allHooks, QueueXT
	for name, c := range benchConns(b, ns) {
		b.Run(name, func(b *testing.B) {
			var tbl *Table
			if install {
				var err error
				if tbl, err = Install(c, cfg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := op(c, cfg, tbl); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSetGeneration is the kernel cost of a policy reload: one
// transaction replacing the two offload rules in each of three chains.
func BenchmarkSetGeneration(b *testing.B) {
	gen := uint32(0)
	benchEachConn(b, true, func(_ *nftables.Conn, _ Config, tbl *Table) error {
		gen++
		return tbl.SetGeneration(gen)
	})
}

// BenchmarkInstall is the cost of building the table (three chains) over an
// existing one, as at agent start.
func BenchmarkInstall(b *testing.B) {
	benchEachConn(b, false, func(c *nftables.Conn, cfg Config, _ *Table) error {
		_, err := Install(c, cfg)
		return err
	})
}

// BenchmarkVerify is the cost of one Guard tick on a healthy table.
func BenchmarkVerify(b *testing.B) {
	benchEachConn(b, true, func(_ *nftables.Conn, _ Config, tbl *Table) error { return tbl.Verify() })
}
