package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

const multiQueuePolicy = webPolicy + `  - name: telnet
    match: {proto: tcp, dport: 23}
    action: drop
    log: true
`

// TestMultiQueue spreads many concurrent flows over several queues and
// workers: every accepted flow completes and every dropped one is logged
// once per source port, with the right rule.
func TestMultiQueue(t *testing.T) {
	requireKernelTools(t)
	t.Parallel()
	for _, args := range [][]string{
		{"--queues", "2", "--queue-base", "7", "--workers", "3"},
		{"--queues", "3", "--workers", "0"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) { manyFlows(t, args) })
	}
}

func manyFlows(t *testing.T, args []string) {
	n := testnet.New(t)
	serveTCP(t, n.Server, 8080)
	serveTCP(t, n.Server, 23)
	a := startAgent(t, n.Server, writePolicy(t, multiQueuePolicy), args...)

	const flows = 16
	var wg sync.WaitGroup
	sports := make(chan int, 2*flows)
	for i := 0; i < flows; i++ {
		for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
			wg.Add(2)
			go func() {
				defer wg.Done()
				tcpEcho(t, n.Client, netip.AddrPortFrom(dst, 8080))
			}()
			go func() {
				defer wg.Done()
				sport := randomPort()
				c, err := dialTCP(n.Client, netip.AddrPortFrom(dst, 23), sport, dropWait)
				if err == nil {
					c.Close()
					t.Errorf("%s:23 connected, want it dropped", dst)
					return
				}
				if isTimeout(err) {
					sports <- sport
				} else {
					// e.g. EADDRINUSE from a random port collision
					t.Logf("%s:23 from %d: %v", dst, sport, err)
				}
			}()
		}
	}
	wg.Wait()
	close(sports)
	want := map[string]bool{}
	for p := range sports {
		want[fmt.Sprint(p)] = true
	}
	if len(want) < flows {
		t.Fatalf("only %d dropped flows to check, want at least %d", len(want), flows)
	}
	evs := a.waitEvents(t, len(want), func(e event) bool { return e.str("dport") == "23" })
	seen := map[string]bool{}
	for _, e := range evs {
		checkEvent(t, e, map[string]string{"rule": "telnet", "verdict": "drop"})
		seen[e.str("sport")] = true
	}
	for p := range want {
		if !seen[p] {
			t.Errorf("no event for the dropped flow from port %s", p)
		}
	}
	if !a.alive() {
		t.Errorf("agent exited: %v", a.waitErr)
	}
}
