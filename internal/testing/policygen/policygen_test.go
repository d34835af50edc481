package policygen

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
)

func TestGenerateCompilesAndLastRuleDecides(t *testing.T) {
	for _, n := range []int{3, 10, 1000} {
		for _, stateful := range []bool{false, true} {
			t.Run(fmt.Sprintf("rules=%d/stateful=%v", n, stateful), func(t *testing.T) {
				pol, err := policyload.Load("gen.yaml", []byte(Generate(Options{Rules: n, Stateful: stateful})), nil)
				if err != nil {
					t.Fatal(err)
				}
				prog, err := policies.Compile(pol)
				if err != nil {
					t.Fatal(err)
				}
				if prog.NumRules() != n {
					t.Fatalf("NumRules = %d, want %d", prog.NumRules(), n)
				}
				in := &policies.Input{Hook: nf.HookInput, State: nf.StateNew, Pkt: &packet.Packet{
					Family: packet.IPv4, Src: netip.MustParseAddr("100.64.7.9"), Dst: netip.MustParseAddr("100.100.3.4"),
					Proto: packet.ProtoTCP, HasL4: true, SrcPort: 50123, DstPort: 9050, TCPFlags: packet.TCPSyn, Length: 60,
				}}
				if d := prog.Decide(in); prog.RuleName(d.Rule) != "last" || d.Action != policies.ActionAccept {
					t.Fatalf("decided %s by %q, want accept by last", d.Action, prog.RuleName(d.Rule))
				}
			})
		}
	}
}
