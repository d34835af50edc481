package policydiff

import (
	"fmt"
	"io"
	"net/netip"
	"slices"

	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/replay"
	"github.com/fwagent/fwagent/policies"
)

// Outcome is one packet's decision under one policy.
type Outcome struct {
	Verdict string `json:"verdict"`
	Rule    string `json:"rule"`
}

// PacketChange is a packet whose verdict or deciding rule differs.
type PacketChange struct {
	N     int     `json:"n"`
	Hook  string  `json:"hook"`
	Tuple string  `json:"tuple"`
	Old   Outcome `json:"old"`
	New   Outcome `json:"new"`
	// VerdictChanged is false when only the deciding rule changed.
	VerdictChanged bool `json:"verdict_changed"`
}

// FlowChange sums the changed packets of one flow (both directions).
type FlowChange struct {
	Flow    string `json:"flow"`
	Packets int    `json:"packets"`
	// Verdicts counts the packets whose verdict changed.
	Verdicts int `json:"verdicts"`
	// First is the first changed packet's number.
	First int `json:"first"`
	// Old and New are that packet's outcomes.
	Old, New Outcome `json:"-"`
}

// CaptureDiff is what a change of policy does to a capture's packets.
type CaptureDiff struct {
	Packets int `json:"packets"`
	// VerdictChanged and RuleChanged count packets whose verdict changed,
	// and those whose verdict stayed but another rule decided.
	VerdictChanged int            `json:"verdict_changed"`
	RuleChanged    int            `json:"rule_changed"`
	Changed        []PacketChange `json:"changed"`
	Flows          []FlowChange   `json:"flows"`
	Summary        replay.Summary `json:"-"`
}

// CompareCapture runs the capture open returns through both programs, each
// with its own flow table and limits as if it were the one running, and
// lists the packets whose verdict or deciding rule differs. open is called
// once per program.
func CompareCapture(old, new *policies.Program, open func() (io.ReadCloser, error), o replay.Options) (*CaptureDiff, error) {
	type got struct {
		out   Outcome
		hook  string
		tuple string
		flow  flowKey
		n     int
	}
	runOne := func(prog *policies.Program, warn func(int, string)) ([]got, replay.Summary, error) {
		r, err := open()
		if err != nil {
			return nil, replay.Summary{}, err
		}
		defer r.Close()
		oo := o
		oo.Warn = warn
		var res []got
		sum, err := replay.Run(prog, r, oo, func(p *replay.Packet) error {
			g := got{n: p.N, hook: p.Hook.String(), out: Outcome{Verdict: p.Result.Decision.Effective().String(), Rule: policies.DefaultRuleName}}
			if p.Result.Decision.Rule != policies.NoRule {
				g.out.Rule = prog.RuleName(p.Result.Decision.Rule)
			}
			if p.Result.DecodeErr != nil {
				g.out.Rule = policies.OnErrorRuleName
				g.tuple = "error: " + p.Result.DecodeErr.Error()
			} else {
				g.tuple, g.flow = describe(p.Pkt)
			}
			res = append(res, g)
			return nil
		})
		return res, sum, err
	}
	a, sum, err := runOne(old, o.Warn)
	if err != nil {
		return nil, err
	}
	b, _, err := runOne(new, nil) // the same warnings again would only repeat
	if err != nil {
		return nil, err
	}
	if len(a) != len(b) {
		return nil, fmt.Errorf("policydiff: the capture gave %d packets, then %d", len(a), len(b))
	}
	d := &CaptureDiff{Packets: len(a), Summary: sum}
	flows := map[flowKey]*FlowChange{}
	var order []flowKey
	for i := range a {
		x, y := a[i], b[i]
		if x.out == y.out {
			continue
		}
		c := PacketChange{N: x.n, Hook: x.hook, Tuple: x.tuple, Old: x.out, New: y.out, VerdictChanged: x.out.Verdict != y.out.Verdict}
		if c.VerdictChanged {
			d.VerdictChanged++
		} else {
			d.RuleChanged++
		}
		d.Changed = append(d.Changed, c)
		f := flows[x.flow]
		if f == nil {
			f = &FlowChange{Flow: flowText(x.flow, x.tuple), First: x.n, Old: x.out, New: y.out}
			flows[x.flow] = f
			order = append(order, x.flow)
		}
		f.Packets++
		if c.VerdictChanged {
			f.Verdicts++
		}
	}
	for _, k := range order {
		d.Flows = append(d.Flows, *flows[k])
	}
	slices.SortStableFunc(d.Flows, func(a, b FlowChange) int { return b.Packets - a.Packets })
	return d, nil
}

func describe(p *packet.Packet) (string, flowKey) {
	proto := string(packet.AppendProtoName(nil, p.Proto))
	src, dst := netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort)
	k := makeFlowKey(p.Proto, src, dst)
	if p.SrcPort != 0 || p.DstPort != 0 {
		return fmt.Sprintf("%s %s -> %s", proto, src, dst), k
	}
	return fmt.Sprintf("%s %s -> %s", proto, p.Src, p.Dst), k
}

func flowText(k flowKey, tuple string) string {
	if !k.a.IsValid() {
		return tuple
	}
	proto := string(packet.AppendProtoName(nil, k.proto))
	if k.a.Port() != 0 || k.b.Port() != 0 {
		return fmt.Sprintf("%s %s <-> %s", proto, k.a, k.b)
	}
	return fmt.Sprintf("%s %s <-> %s", proto, k.a.Addr(), k.b.Addr())
}
