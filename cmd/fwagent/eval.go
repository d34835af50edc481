package main

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fwagent/fwagent/internal/evalreport"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/replay"
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
	f.replayFlags.register(fl, "")
	fl.BoolVar(&f.summary, "summary", false, "print packets and bytes per rule and verdict instead of one line per packet")
	fl.BoolVar(&f.json, "json", false, "JSON lines output")
	return cmd
}

// register adds --hook, --local, --iif, --oif and --no-reassembly to fl.
// when says when they apply ("with --capture: " in diff), and starts each
// help text but that of --local, which applies only with --hook auto.
func (f *replayFlags) register(fl *pflag.FlagSet, when string) {
	fl.StringVar(&f.hook, "hook", "input", when+"hook the packets are evaluated on: input, forward, output, or auto (by direction)")
	fl.StringSliceVar(&f.local, "local", nil, "with --hook auto: the capturing host's addresses or prefixes, for captures that record no direction")
	fl.StringVar(&f.iif, "iif", "", when+"input interface name the packets arrived on")
	fl.StringVar(&f.oif, "oif", "", when+"output interface name")
	fl.BoolVar(&f.noReasm, "no-reassembly", false, when+"decide IP fragments one by one instead of reassembling them")
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
	w := evalreport.New(out, prog, plan, evalreport.Options{Summary: f.summary, JSON: f.json, InIf: f.iif, OutIf: f.oif})
	sum, err := replay.Run(prog, file, o, w.Packet)
	if err != nil {
		return fmt.Errorf("eval: %s: %w", capPath, err)
	}
	return w.Finish(sum)
}
