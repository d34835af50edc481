package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/replay"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/rules"
)

type evalFlags struct {
	replayFlags
	policy  string
	summary bool
	json    bool
}

// replayFlags are how eval and diff replay a capture: --hook, --local,
// --iif, --oif and --no-reassembly.
type replayFlags struct {
	hook    string
	local   []string
	iif     string
	oif     string
	noReasm bool
}

func newEvalCmd() *cobra.Command {
	var f evalFlags
	cmd := &cobra.Command{
		Use:   "eval --policy POLICY CAPTURE",
		Short: "Run a capture through the decoder, flow tracker and policy",
		Long: `Run every IP packet of a pcap or pcapng capture (Ethernet, raw IP or Linux
cooked) through the same decode, flow-tracking and decision pipeline the agent
runs live, as if it arrived on --hook. Prints one line per packet (number,
verdict, rule, 5-tuple), or with --summary packets and bytes per rule and
verdict, then the frames read, skipped (by reason), cut and reassembled;
--json prints JSON lines instead. The verdict is what the kernel would do (in
audit mode: accept, with the rule's action under "action").

The capture is read as the live agent sees packets: a frame cut by the snap
length (tcpdump -s 96) is decided from its headers when they are whole (an L7
field reads only what was captured, so an L7 rule that needs the missing bytes
falls through); IPv4 and IPv6 fragments are reassembled first, as the kernel
does before the agent sees them (--no-reassembly decides each fragment alone);
frames without IP and bad records are skipped and counted, a bad record with a
warning on stderr.

Captures carry no socket owner: rules matching uid, gid or cgroup never
match under eval (each is named in a warning on stderr), and the packets
they would decide fall through to later rules.

--hook auto picks each packet's hook from its direction: where the capture
records it (pcapng epb_flags, a Linux cooked capture's packet type; tcpdump -i
any writes the latter) received → input, sent → output, received for another
host → forward; else, with --local, to a local address → input, from one →
output, neither → forward; else input.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.policy, "policy", "", "policy file (required)")
	fl.StringVar(&f.hook, "hook", "input", "hook the packets are evaluated on: input, forward, output, or auto (by direction)")
	fl.StringSliceVar(&f.local, "local", nil, "with --hook auto: the capturing host's addresses or prefixes, for captures that record no direction")
	fl.StringVar(&f.iif, "iif", "", "input interface name the packets arrived on")
	fl.StringVar(&f.oif, "oif", "", "output interface name")
	fl.BoolVar(&f.summary, "summary", false, "print packets and bytes per rule and verdict instead of one line per packet")
	fl.BoolVar(&f.json, "json", false, "JSON lines output")
	fl.BoolVar(&f.noReasm, "no-reassembly", false, "decide IP fragments one by one instead of reassembling them")
	return cmd
}

// evalLine is one packet's result in --json output.
type evalLine struct {
	N       int    `json:"n"`
	Verdict string `json:"verdict"`
	Action  string `json:"action"`
	Rule    string `json:"rule"`
	Hook    string `json:"hook"`
	State   string `json:"state,omitempty"`
	Family  string `json:"family,omitempty"`
	Proto   string `json:"proto,omitempty"`
	Src     string `json:"src,omitempty"`
	Dst     string `json:"dst,omitempty"`
	Sport   uint16 `json:"sport,omitempty"`
	Dport   uint16 `json:"dport,omitempty"`
	Length  int    `json:"length"`
	Log     bool   `json:"log,omitempty"`
	// Prefix is the log prefix (the rule's log: {prefix}, else its name)
	// of a logged packet.
	Prefix  string `json:"prefix,omitempty"`
	Audit   bool   `json:"audit,omitempty"`
	Offload bool   `json:"offload,omitempty"`
	// Pending: the rule's L7 field waits for more of the stream, and the
	// packet is accepted meanwhile.
	Pending bool `json:"pending,omitempty"`
	// Mark is the packet mark a rule's mark: key sets (with accept).
	Mark  uint32 `json:"mark,omitempty"`
	Error string `json:"error,omitempty"`
	// Cut: decided from the headers of a frame the snap length cut.
	Cut bool `json:"cut,omitempty"`
	// Fragments is how many fragments were reassembled into the datagram
	// this frame belongs to, and Datagram the frame number that completed
	// it (each fragment gets a line with the datagram's verdict); Fragment
	// marks a fragment decided alone (its datagram never completed).
	Fragments int  `json:"fragments,omitempty"`
	Datagram  int  `json:"datagram,omitempty"`
	Fragment  bool `json:"fragment,omitempty"`
	// Path is where --kernel-rules auto decides the packet: "kernel" or
	// "queue" (absent for packets that do not decode).
	Path string `json:"path,omitempty"`
}

type summaryKey struct{ rule, verdict string }

type summaryRow struct {
	Rule    string `json:"rule"`
	Verdict string `json:"verdict"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// frameSummary is the last line of --summary --json: what was read.
type frameSummary struct {
	Frames        int            `json:"frames"`
	Decided       int            `json:"decided"`
	Skipped       map[string]int `json:"skipped"`
	Cut           int            `json:"cut"`
	Reassembled   int            `json:"reassembled"`
	Fragments     int            `json:"fragments"`
	Unreassembled int            `json:"unreassembled"`
}

// options turns the flags shared by eval and diff into replay
// options.
func (f *replayFlags) options(warn func(int, string)) (replay.Options, error) {
	hook, local := f.hook, f.local
	o := replay.Options{InIf: f.iif, OutIf: f.oif, NoReassembly: f.noReasm, Warn: warn, Hook: nf.HookInput}
	if hook == "auto" {
		o.Auto = true
	} else {
		h, ok := nf.ParseHook(hook)
		if !ok {
			return o, usagef("--hook %q: want input, forward, output or auto", hook)
		}
		o.Hook = h
	}
	if len(local) > 0 && !o.Auto {
		return o, usagef("--local goes with --hook auto")
	}
	for _, s := range local {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return o, usagef("--local %q: want an address or prefix", s)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		o.Local = append(o.Local, p.Masked())
	}
	return o, nil
}

func (f *evalFlags) run(stdout, stderr io.Writer, capPath string) error {
	if f.policy == "" {
		return usagef("eval: --policy is required")
	}
	o, err := f.options(func(n int, msg string) {
		fmt.Fprintf(stderr, "fwagent eval: %s: frame %d skipped: %s\n", capPath, n, msg)
	})
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	prog, err := loadProgram(f.policy)
	if err != nil {
		return err
	}
	// Rules on the socket owner are right live but silent here.
	for _, w := range prog.EvalWarnings() {
		fmt.Fprintln(stderr, w)
	}
	file, err := os.Open(capPath)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	defer file.Close()
	plan, err := rules.Compile(prog, rules.DefaultConfig())
	if err != nil {
		return err
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)

	summary := map[summaryKey]*summaryRow{}
	sum, err := replay.Run(prog, file, o, func(p *replay.Packet) error {
		line := describe(p, prog)
		if p.Result.DecodeErr == nil {
			line.Path = plan.Path(&policies.Input{Pkt: p.Pkt, Hook: p.Hook, InIf: f.iif, OutIf: f.oif, State: p.Result.State})
		}
		if f.summary {
			k := summaryKey{line.Rule, line.Verdict}
			if line.Pending {
				k.verdict = "pending"
			}
			row := summary[k]
			if row == nil {
				row = &summaryRow{Rule: k.rule, Verdict: k.verdict}
				summary[k] = row
			}
			row.Packets++
			row.Bytes += uint64(p.Size)
			return nil
		}
		// A reassembled datagram's verdict is every one of its fragments'
		// (the kernel holds them and lets the datagram through or not): one
		// line per fragment frame, so every frame has its verdict.
		frames := p.FragmentFrames
		if len(frames) == 0 {
			frames = []int{p.N}
		}
		for i, n := range frames {
			line.N = n
			suffix := ""
			if len(p.FragmentFrames) > 0 {
				line.Datagram = p.N
				suffix = fmt.Sprintf(" (fragment %d of %d, reassembled at frame %d)", i+1, len(frames), p.N)
			}
			if f.json {
				if err := enc.Encode(line); err != nil {
					return err
				}
				continue
			}
			if p.Unreassembled {
				suffix = " (fragment decided alone: its datagram never completed)"
			}
			if _, err := fmt.Fprintf(out, "%d %s %s %s%s\n", line.N, line.Verdict, strconv.Quote(line.Rule), tuple(line), suffix); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("eval: %s: %w", capPath, err)
	}
	if f.summary {
		rows := make([]summaryRow, 0, len(summary))
		for _, r := range summary {
			rows = append(rows, *r)
		}
		sort.Slice(rows, func(i, j int) bool {
			if rows[i].Rule != rows[j].Rule {
				return rows[i].Rule < rows[j].Rule
			}
			return rows[i].Verdict < rows[j].Verdict
		})
		for _, r := range rows {
			if f.json {
				if err := enc.Encode(r); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(out, "%-24s %-8s %10d packets %12d bytes\n", strconv.Quote(r.Rule), r.Verdict, r.Packets, r.Bytes)
		}
		if f.json {
			return enc.Encode(frameSummary{Frames: sum.Frames, Decided: sum.Decided, Skipped: sum.Skipped, Cut: sum.Cut,
				Reassembled: sum.Reassembled, Fragments: sum.Fragments, Unreassembled: sum.Unreassembled})
		}
		writeFrameSummary(out, sum)
	}
	return nil
}

// writeFrameSummary prints what a replay read besides the decisions: every
// frame is accounted for, skipped ones by reason.
func writeFrameSummary(out io.Writer, sum replay.Summary) {
	fmt.Fprintf(out, "frames %d: %d packets decided, %d frames skipped\n", sum.Frames, sum.Decided, sum.SkippedTotal())
	reasons := make([]string, 0, len(sum.Skipped))
	for k := range sum.Skipped {
		reasons = append(reasons, k)
	}
	sort.Strings(reasons)
	for _, k := range reasons {
		fmt.Fprintf(out, "  skipped %d: %s\n", sum.Skipped[k], k)
	}
	if sum.Cut > 0 {
		fmt.Fprintf(out, "  cut by the snap length, decided from their headers: %d\n", sum.Cut)
	}
	if sum.Reassembled > 0 {
		fmt.Fprintf(out, "  reassembled: %d datagrams from %d fragments\n", sum.Reassembled, sum.Fragments)
	}
	if sum.Unreassembled > 0 {
		fmt.Fprintf(out, "  fragments decided alone (datagram incomplete or invalid): %d\n", sum.Unreassembled)
	}
}

func describe(p *replay.Packet, prog *policies.Program) evalLine {
	r := p.Result
	l := evalLine{
		N:         p.N,
		Verdict:   r.Decision.Effective().String(),
		Action:    r.Decision.Action.String(),
		Rule:      policies.DefaultRuleName,
		Hook:      p.Hook.String(),
		Length:    p.Size,
		Log:       r.Decision.Log,
		Audit:     r.Decision.Audit,
		Offload:   r.Decision.Offload,
		Cut:       p.Cut,
		Fragments: p.Fragments,
		Fragment:  p.Unreassembled,
		Pending:   r.Decision.Pending,
	}
	if r.Decision.SetMark {
		l.Mark = r.Decision.Mark
	}
	if r.Decision.Rule != policies.NoRule {
		l.Rule = prog.RuleName(r.Decision.Rule)
	}
	if r.Decision.Log {
		l.Prefix = prog.LogPrefix(r.Decision.Rule)
	}
	if r.DecodeErr != nil {
		l.Rule = policies.OnErrorRuleName
		l.Error = r.DecodeErr.Error()
		return l
	}
	pk := p.Pkt
	l.State = r.State.String()
	l.Family = pk.Family.String()
	l.Proto = string(packet.AppendProtoName(nil, pk.Proto))
	l.Src, l.Dst = pk.Src.String(), pk.Dst.String()
	l.Sport, l.Dport = pk.SrcPort, pk.DstPort
	l.Length = pk.Length
	return l
}

func tuple(l evalLine) string {
	if l.Error != "" {
		return "error: " + l.Error
	}
	if l.Sport != 0 || l.Dport != 0 {
		return fmt.Sprintf("%s %s:%d -> %s:%d", l.Proto, l.Src, l.Sport, l.Dst, l.Dport)
	}
	return fmt.Sprintf("%s %s -> %s", l.Proto, l.Src, l.Dst)
}
