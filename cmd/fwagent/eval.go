package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/fwagent/fwagent/internal/capture"
	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/pipeline"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/rules"
)

type evalFlags struct {
	policy  string
	hook    string
	iif     string
	oif     string
	summary bool
	json    bool
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
verdict; --json prints JSON lines instead. The verdict is what the kernel
would do (in audit mode: accept, with the rule's action under "action").`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd.OutOrStdout(), args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.policy, "policy", "", "policy file (required)")
	fl.StringVar(&f.hook, "hook", "input", "hook the packets are evaluated on: input, forward or output")
	fl.StringVar(&f.iif, "iif", "", "input interface name the packets arrived on")
	fl.StringVar(&f.oif, "oif", "", "output interface name")
	fl.BoolVar(&f.summary, "summary", false, "print packets and bytes per rule and verdict instead of one line per packet")
	fl.BoolVar(&f.json, "json", false, "JSON lines output")
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
	// Mark is the packet mark a rule's mark: key sets (with accept).
	Mark  uint32 `json:"mark,omitempty"`
	Error string `json:"error,omitempty"`
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

func (f *evalFlags) run(stdout io.Writer, capPath string) error {
	if f.policy == "" {
		return usagef("eval: --policy is required")
	}
	hook, ok := nf.ParseHook(f.hook)
	if !ok {
		return usagef("eval: --hook %q: want input, forward or output", f.hook)
	}
	prog, err := loadProgram(f.policy)
	if err != nil {
		return err
	}
	file, err := os.Open(capPath)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	defer file.Close()
	rd, err := capture.Open(bufio.NewReaderSize(file, 1<<16))
	if err != nil {
		return fmt.Errorf("eval: %s: %w", capPath, err)
	}
	marks, err := nf.NewMarks(nf.DefaultMarkMask)
	if err != nil {
		return err
	}
	plan, err := rules.Compile(prog, rules.DefaultConfig())
	if err != nil {
		return err
	}
	shared := pipeline.NewShared(&pipeline.Policy{Program: prog, Gen: 1}, marks, conntrack.New(conntrack.Config{}))
	w := shared.NewWorker()
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)

	summary := map[summaryKey]*summaryRow{}
	var (
		t0, last int64
		started  bool
	)
	for {
		fr, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("eval: %s: %w", capPath, err)
		}
		// Limits and flow timeouts run on the capture's clock, counted from
		// its first packet. A packet without a timestamp (pcapng simple
		// packet block) arrives with the one before it. Whether t0 is set is
		// its own flag: a capture may start at the Unix epoch (the drop-log
		// pcap sink writes unknown times as 0).
		ts := last
		if !fr.Timestamp.IsZero() {
			ts = fr.Timestamp.UnixNano()
		}
		if !started {
			t0, started = ts, true
		}
		last = ts
		r := w.Process(fr.Data, pipeline.Meta{Hook: hook, InIf: f.iif, OutIf: f.oif, Now: ts - t0 + 1})
		// Numbered like Wireshark: frames the reader skipped (ARP, ...) count.
		line := describe(fr.Index+1, r, w.Packet(), prog, hook, len(fr.Data))
		if r.DecodeErr == nil {
			line.Path = plan.Path(&policies.Input{Pkt: w.Packet(), Hook: hook, InIf: f.iif, OutIf: f.oif, State: r.State})
		}
		if f.summary {
			k := summaryKey{line.Rule, line.Verdict}
			row := summary[k]
			if row == nil {
				row = &summaryRow{Rule: k.rule, Verdict: k.verdict}
				summary[k] = row
			}
			row.Packets++
			row.Bytes += uint64(len(fr.Data))
			continue
		}
		if f.json {
			if err := enc.Encode(line); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(out, "%d %s %s %s\n", line.N, line.Verdict, strconv.Quote(line.Rule), tuple(line))
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
	}
	return nil
}

func describe(n int, r pipeline.Result, p *packet.Packet, prog *policies.Program, hook nf.Hook, size int) evalLine {
	l := evalLine{
		N:       n,
		Verdict: r.Decision.Effective().String(),
		Action:  r.Decision.Action.String(),
		Rule:    "default",
		Hook:    hook.String(),
		Length:  size,
		Log:     r.Decision.Log,
		Audit:   r.Decision.Audit,
		Offload: r.Decision.Offload,
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
		l.Rule = "on_error"
		l.Error = r.DecodeErr.Error()
		return l
	}
	l.State = r.State.String()
	l.Family = p.Family.String()
	l.Proto = string(packet.AppendProtoName(nil, p.Proto))
	l.Src, l.Dst = p.Src.String(), p.Dst.String()
	l.Sport, l.Dport = p.SrcPort, p.DstPort
	l.Length = p.Length
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
