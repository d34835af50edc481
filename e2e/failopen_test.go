package e2e

import (
	"net/netip"
	"syscall"
	"testing"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

const dropAllPolicy = `version: 1
default:
  input: drop
  log: false
rules:
  - name: web
    match: {proto: tcp, dport: 8080}
    action: accept
`

// TestFailOpen checks what happens to traffic while the agent is dead and
// its table is still installed (SIGKILL gives it no chance to remove it):
// fail-open (the default) lets packets through, fail-closed drops them.
func TestFailOpen(t *testing.T) {
	requireKernelTools(t)
	t.Parallel()
	for _, tc := range []struct {
		name     string
		args     []string
		wantPass bool
	}{
		{"default is fail-open", nil, true},
		{"fail-open=false", []string{"--fail-open=false"}, false},
		{"fail-closed", []string{"--fail-closed"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := testnet.New(t)
			serveTCP(t, n.Server, 8081)
			a := startAgent(t, n.Server, writePolicy(t, dropAllPolicy), tc.args...)
			dst := netip.AddrPortFrom(n.Server.Addr4(), 8081)
			if connects(n.Client, dst, 0) {
				t.Fatalf("%s reachable while the agent runs, want it dropped", dst)
			}
			a.stop(t, syscall.SIGKILL)
			tables := nft(t, n.Server, "list", "tables")
			if !fwagentTable.MatchString(tables) && !tc.wantPass {
				// A table owned by the agent's netlink socket vanishes
				// with it, and then nothing can keep traffic out.
				t.Errorf("the killed fail-closed agent left no table, so traffic is let through:\n%s", tables)
			}
			c, err := dialTCP(n.Client, dst, 0, answerWait)
			if err == nil {
				c.Close()
			}
			if got := err == nil; got != tc.wantPass {
				t.Errorf("with the agent dead, %s connect err=%v; want passing=%v", dst, err, tc.wantPass)
			}
		})
	}
}
