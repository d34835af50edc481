package e2e

import (
	"context"
	"crypto/rand"

	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

const offloadPolicy = webPolicy + `  - name: inspected
    match: {proto: tcp, dport: 8081}
    action: accept
    offload: false
`

// bulkEcho streams size random bytes through the echo server at dst and
// checks every byte comes back in order.
func bulkEcho(t *testing.T, ns *testnet.NS, dst netip.AddrPort, size int) {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	echoed(t, ns, dst, "bulk", data, 60*time.Second)
}

var ctMark = regexp.MustCompile(`mark=(\d+)`)

// connmarks returns the conntrack marks of the TCP flows to dport in ns.
func connmarks(t *testing.T, ns *testnet.NS, dport int) []uint32 {
	t.Helper()
	out, err := ns.Command(context.Background(), "conntrack", "-L", "-p", "tcp", "--dport", strconv.Itoa(dport)).CombinedOutput()
	if err != nil {
		t.Fatalf("conntrack -L in %s: %v\n%s", ns.Name(), err, out)
	}
	var marks []uint32
	for _, m := range ctMark.FindAllStringSubmatch(string(out), -1) {
		v, err := strconv.ParseUint(m[1], 10, 32)
		if err != nil {
			t.Fatalf("conntrack mark %q: %v", m[1], err)
		}
		marks = append(marks, uint32(v))
	}
	return marks
}

// TestOffload checks that an accepted flow is handed to the kernel (its
// conntrack mark carries the offload action inside the agent's mark mask)
// unless the rule says offload: false, and that bulk data passes intact
// either way, including the large GSO packets a veth produces when every
// packet goes through the queue.
func TestOffload(t *testing.T) {
	requireKernelTools(t)
	testnet.RequireCommands(t, "conntrack")
	t.Parallel()
	for _, tc := range []struct {
		name string
		mask uint32
		args []string
	}{
		{"default mask", nf.DefaultMarkMask, nil},
		{"custom mask", 0x1ff00000, []string{"--mark-mask", "0x1ff00000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := testnet.New(t)
			serveTCP(t, n.Server, 8080)
			serveTCP(t, n.Server, 8081)
			startAgent(t, n.Server, writePolicy(t, offloadPolicy), tc.args...)
			marks, err := nf.NewMarks(tc.mask)
			if err != nil {
				t.Fatal(err)
			}
			for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
				for _, port := range []uint16{8080, 8081} {
					bulkEcho(t, n.Client, netip.AddrPortFrom(dst, port), 8<<20)
				}
			}
			for _, port := range []int{8080, 8081} {
				cms := connmarks(t, n.Server, port)
				if len(cms) < 2 {
					t.Errorf("%d conntrack entries for port %d, want one per family", len(cms), port)
				}
				for _, cm := range cms {
					if cm&^tc.mask != 0 {
						t.Errorf("port %d: connmark %#x has bits outside the mark mask %#x", port, cm, tc.mask)
					}
					// Offloaded in the original direction at input, the one
					// hook and direction the policy decided; nowhere else.
					bits := cm & marks.OffloadBits()
					if offloaded := bits == marks.OffloadBit(nf.HookInput, false); offloaded != (port == 8080) || bits != 0 && port != 8080 {
						t.Errorf("port %d: connmark %#x has offload bits %#x, want offloaded=%v (input, original direction only)", port, cm, bits, port == 8080)
					}
				}
			}
		})
	}
}
