package harness

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/testnet"
	"github.com/fwagent/fwagent/internal/testing/testpolicy"
	"github.com/fwagent/fwagent/policies"
)

func compile(t *testing.T, src string) *policies.Program {
	t.Helper()
	return testpolicy.Compile(t, "bench.yaml", src)
}

// TestPolicies checks that every generated policy loads, has the rule count
// the configuration claims, and decides the bench traffic with the rule the
// measurement is about.
func TestPolicies(t *testing.T) {
	client := netip.MustParseAddr("10.237.5.1")
	server := netip.MustParseAddr("10.237.5.2")
	tests := []struct {
		name    string
		src     string
		rules   int
		proto   uint8
		dport   uint16
		action  policies.Action
		rule    string
		offload bool
	}{
		{"accept udp", acceptPolicy(false), 2, 17, portSink, policies.ActionAccept, "bench-udp", false},
		{"accept tcp", acceptPolicy(false), 2, 6, portTCP, policies.ActionAccept, "bench-tcp", false},
		{"offload tcp bulk", acceptPolicy(true), 2, 6, portBulk, policies.ActionAccept, "bench-tcp", true},
		{"1000 rules udp", bigPolicy(1000, false), 1000, 17, portSink, policies.ActionAccept, "bench-udp", false},
		{"1000 rules tcp", bigPolicy(1000, false), 1000, 6, portTCP, policies.ActionAccept, "bench-tcp", false},
		{"drop log", dropLogPolicy(), 1, 17, portEcho, policies.ActionDrop, "bench-drop", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog := compile(t, tt.src)
			if n := prog.NumRules(); n != tt.rules {
				t.Fatalf("%d rules, want %d", n, tt.rules)
			}
			pkt := &packet.Packet{Family: packet.IPv4, Src: client, Dst: server, Proto: tt.proto, Length: 64, HasL4: true, SrcPort: 40000, DstPort: tt.dport}
			if tt.proto == 6 {
				pkt.TCPFlags = 0x02 // SYN
			}
			d := prog.Decide(&policies.Input{Pkt: pkt, Hook: nf.HookInput, State: nf.StateNew})
			if d.Action != tt.action || prog.RuleName(d.Rule) != tt.rule || d.Offload != tt.offload {
				t.Fatalf("decided %+v (rule %q), want %v by %s offload %v", d, prog.RuleName(d.Rule), tt.action, tt.rule, tt.offload)
			}
		})
	}
}

func TestBigPolicyNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, line := range strings.Split(bigPolicy(1000, false), "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "- name: ")
		if !ok {
			continue
		}
		if seen[name] {
			t.Fatalf("duplicate rule name %q", name)
		}
		seen[name] = true
	}
	if len(seen) != 1000 {
		t.Fatalf("%d names, want 1000", len(seen))
	}
}

// TestBigPolicyNftLoads loads the kernel-nft-1000 table with nft in a
// namespace of its own: the baseline is only a baseline if the kernel
// takes all 1,000 rules as written.
func TestBigPolicyNftLoads(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireCommands(t, "nft")
	n := testnet.New(t)
	ctx := context.Background()
	load := n.Server.Command(ctx, "nft", "-f", "-")
	load.Stdin = strings.NewReader(bigPolicyNft(1000))
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v\n%s", err, out)
	}
	out, err := n.Server.Command(ctx, "nft", "-a", "list", "chain", "inet", "fwbench_nft", "in").Output()
	if err != nil {
		t.Fatalf("nft list: %v", err)
	}
	if got := strings.Count(string(out), "# handle ") - 1; got != 1000 {
		t.Fatalf("%d rules in the chain, want 1000", got)
	}
}
