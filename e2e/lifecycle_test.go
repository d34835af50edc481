package e2e

import (
	"errors"
	"net/netip"
	"regexp"
	"syscall"
	"testing"
)

const lifecyclePolicy = webPolicy + `  - name: reject-tcp
    match: {proto: tcp, dport: 24}
    action: reject
`

var fwagentTable = regexp.MustCompile(`(?m)^table inet fwagent$`)

// testOwnedTable is a table the agent must never touch.
const testOwnedTable = `table inet testowned {
	set blocked {
		type ipv4_addr
		elements = { 192.0.2.1, 198.51.100.7 }
	}

	chain c {
		type filter hook input priority 10; policy accept;
		ip saddr @blocked counter drop
		tcp dport 9999 counter accept
	}
}
`

func TestLifecycle(t *testing.T) {
	n := agentNet(t, 8080, 8081, 24)
	policy := writePolicy(t, lifecyclePolicy)

	nft(t, n.Server, "-f", writePolicy(t, testOwnedTable))
	before := nft(t, n.Server, "-j", "list", "table", "inet", "testowned")

	// filtered checks the policy is enforced from the client, both families.
	filtered := func(t *testing.T) {
		t.Helper()
		for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
			tcpEcho(t, n.Client, netip.AddrPortFrom(dst, 8080))
			if c, err := dialTCP(n.Client, netip.AddrPortFrom(dst, 8081), 0, dropWait); err == nil {
				c.Close()
				t.Errorf("%s:8081 reachable, want it dropped by the default", dst)
			} else if !isTimeout(err) {
				t.Errorf("%s:8081: %v, want a timeout", dst, err)
			}
			if c, err := dialTCP(n.Client, netip.AddrPortFrom(dst, 24), 0, answerWait); err == nil {
				c.Close()
				t.Errorf("%s:24 reachable, want it rejected", dst)
			} else if !errors.Is(err, errRefused) {
				t.Errorf("%s:24: %v, want ECONNREFUSED", dst, err)
			}
		}
	}

	t.Run("SIGTERM removes the table", func(t *testing.T) {
		a := startAgent(t, n.Server, policy)
		if got := len(fwagentTable.FindAllString(nft(t, n.Server, "list", "tables"), -1)); got != 1 {
			t.Fatalf("%d fwagent tables while running, want 1", got)
		}
		filtered(t)
		if code := a.stop(t, syscall.SIGTERM); code != 0 {
			t.Errorf("exit code after SIGTERM = %d, want 0", code)
		}
		if tables := nft(t, n.Server, "list", "tables"); fwagentTable.MatchString(tables) {
			t.Errorf("table inet fwagent left after SIGTERM:\n%s", tables)
		}
		if after := nft(t, n.Server, "-j", "list", "table", "inet", "testowned"); after != before {
			t.Errorf("the test's own table changed:\nbefore %s\nafter  %s", before, after)
		}
		// With the agent gone, nothing filters any more.
		for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
			tcpEcho(t, n.Client, netip.AddrPortFrom(dst, 8081))
		}
	})

	t.Run("SIGINT removes the table", func(t *testing.T) {
		a := startAgent(t, n.Server, policy)
		if code := a.stop(t, syscall.SIGINT); code != 0 {
			t.Errorf("exit code after SIGINT = %d, want 0", code)
		}
		if tables := nft(t, n.Server, "list", "tables"); fwagentTable.MatchString(tables) {
			t.Errorf("table inet fwagent left after SIGINT:\n%s", tables)
		}
	})

	t.Run("restart after SIGKILL", func(t *testing.T) {
		a := startAgent(t, n.Server, policy)
		a.stop(t, syscall.SIGKILL)
		t.Logf("tables after SIGKILL:\n%s", nft(t, n.Server, "list", "tables"))

		startAgent(t, n.Server, policy)
		tables := nft(t, n.Server, "list", "tables")
		if got := len(fwagentTable.FindAllString(tables, -1)); got != 1 {
			t.Fatalf("%d fwagent tables after restart, want exactly 1:\n%s", got, tables)
		}
		// Chains of the killed agent must not linger beside the new ones.
		table := nft(t, n.Server, "list", "table", "inet", "fwagent")
		if got := len(regexp.MustCompile(`(?m)^\s*chain input \{`).FindAllString(table, -1)); got != 1 {
			t.Errorf("%d input chains in the restarted table, want 1:\n%s", got, table)
		}
		filtered(t)
		if after := nft(t, n.Server, "-j", "list", "table", "inet", "testowned"); after != before {
			t.Errorf("the test's own table changed:\nbefore %s\nafter  %s", before, after)
		}
	})
}
