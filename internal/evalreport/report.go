// Package evalreport prints what `fwagent eval` reports about a capture
// replayed through the pipeline: a line per packet (text or JSON), or
// packets and bytes per rule and verdict and what was read.
package evalreport

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/replay"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/rules"
)

// Line is one packet's result in --json output.
type Line struct {
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

// SummaryRow is one line of --summary: packets and bytes a rule decided
// with one verdict.
type SummaryRow struct {
	Rule    string `json:"rule"`
	Verdict string `json:"verdict"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// FrameSummary is the last line of --summary --json: what was read.
type FrameSummary struct {
	Frames        int            `json:"frames"`
	Decided       int            `json:"decided"`
	Skipped       map[string]int `json:"skipped"`
	Cut           int            `json:"cut"`
	Reassembled   int            `json:"reassembled"`
	Fragments     int            `json:"fragments"`
	Unreassembled int            `json:"unreassembled"`
}

// Options are how the report is printed.
type Options struct {
	// Summary prints packets and bytes per rule and verdict, and what was
	// read, instead of one line per packet.
	Summary bool
	JSON    bool
	// InIf and OutIf are the interfaces the packets are replayed on, for
	// the kernel rules' path.
	InIf, OutIf string
}

// Writer prints the report of one replay: Packet for each packet, then
// Finish.
type Writer struct {
	out     io.Writer
	enc     *json.Encoder
	prog    *policies.Program
	plan    *rules.Plan
	o       Options
	summary map[summaryKey]*SummaryRow
}

// New returns a Writer printing to out the replay of prog, whose compiled
// kernel rules plan tells each packet's path.
func New(out io.Writer, prog *policies.Program, plan *rules.Plan, o Options) *Writer {
	return &Writer{out: out, enc: json.NewEncoder(out), prog: prog, plan: plan, o: o, summary: map[summaryKey]*SummaryRow{}}
}

// Packet reports one replayed packet, as replay.Run's callback.
func (w *Writer) Packet(p *replay.Packet) error {
	line := describe(p, w.prog)
	if p.Result.DecodeErr == nil {
		line.Path = w.plan.Path(&policies.Input{Pkt: p.Pkt, Hook: p.Hook, InIf: w.o.InIf, OutIf: w.o.OutIf, State: p.Result.State})
	}
	if w.o.Summary {
		w.count(line, p.Size)
		return nil
	}
	return w.writeFrames(line, p)
}

// count adds a packet of size bytes to its rule and verdict's row.
func (w *Writer) count(line Line, size int) {
	k := summaryKey{line.Rule, line.Verdict}
	if line.Pending {
		k.verdict = "pending"
	}
	row := w.summary[k]
	if row == nil {
		row = &SummaryRow{Rule: k.rule, Verdict: k.verdict}
		w.summary[k] = row
	}
	row.Packets++
	row.Bytes += uint64(size)
}

// writeFrames prints a packet's line for each frame it was read from.
func (w *Writer) writeFrames(line Line, p *replay.Packet) error {
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
		if w.o.JSON {
			if err := w.enc.Encode(line); err != nil {
				return err
			}
			continue
		}
		if p.Unreassembled {
			suffix = " (fragment decided alone: its datagram never completed)"
		}
		if _, err := fmt.Fprintf(w.out, "%d %s %s %s%s\n", line.N, line.Verdict, strconv.Quote(line.Rule), tuple(line), suffix); err != nil {
			return err
		}
	}
	return nil
}

// Finish prints, with Options.Summary, the rows by rule and verdict and
// what the replay read (sum); without, nothing.
func (w *Writer) Finish(sum replay.Summary) error {
	if !w.o.Summary {
		return nil
	}
	rows := make([]SummaryRow, 0, len(w.summary))
	for _, r := range w.summary {
		rows = append(rows, *r)
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Rule != rows[j].Rule {
			return rows[i].Rule < rows[j].Rule
		}
		return rows[i].Verdict < rows[j].Verdict
	})
	for _, r := range rows {
		if w.o.JSON {
			if err := w.enc.Encode(r); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(w.out, "%-24s %-8s %10d packets %12d bytes\n", strconv.Quote(r.Rule), r.Verdict, r.Packets, r.Bytes)
	}
	if w.o.JSON {
		return w.enc.Encode(FrameSummary{Frames: sum.Frames, Decided: sum.Decided, Skipped: sum.Skipped, Cut: sum.Cut,
			Reassembled: sum.Reassembled, Fragments: sum.Fragments, Unreassembled: sum.Unreassembled})
	}
	writeFrameSummary(w.out, sum)
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

func describe(p *replay.Packet, prog *policies.Program) Line {
	r := p.Result
	l := Line{
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

func tuple(l Line) string {
	if l.Error != "" {
		return "error: " + l.Error
	}
	if l.Sport != 0 || l.Dport != 0 {
		return fmt.Sprintf("%s %s:%d -> %s:%d", l.Proto, l.Src, l.Sport, l.Dst, l.Dport)
	}
	return fmt.Sprintf("%s %s -> %s", l.Proto, l.Src, l.Dst)
}
