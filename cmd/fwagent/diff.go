package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policydiff"
	"github.com/fwagent/fwagent/policies/policyload"
)

// diff's exit codes follow diff(1): 0 no change, 1 changes, 2 trouble.
const (
	diffSame    = 0
	diffChanged = 1
	diffTrouble = 2
)

type diffFlags struct {
	replayFlags
	capture string
	max     int
	json    bool
}

func newDiffCmd() *cobra.Command {
	var f diffFlags
	cmd := &cobra.Command{
		Use:   "diff OLD NEW [--capture CAPTURE]",
		Short: "Show what changes between two policies, and which packets it affects",
		Long: `Compare two policy files as a reviewer reads the change: mode, default and
on_error changes, sets added, removed or changed (entries added and removed),
rules added, removed, changed (which fields: hook, match.dport, action, ...)
and moved, by name. Sets are resolved, so a set's change also shows in the
rules that use it.

With --capture, run the capture through both policies (as fwagent eval does,
each with its own flow table and limits) and list the packets whose verdict or
deciding rule changes, with counts, and the flows they belong to (at most
--max packets are listed; the counts cover all).

Exit status, like diff(1): 0 nothing changed, 1 something changed (in the
policies or, with --capture, in a packet's outcome), 2 trouble (a policy that
does not load, an unreadable capture, a usage error).`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			code := f.run(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], args[1])
			if code != diffSame {
				return exitError{code}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.capture, "capture", "", "a pcap or pcapng capture to run through both policies")
	f.replayFlags.register(fl, "with --capture: ")
	fl.IntVar(&f.max, "max", 50, "with --capture: most changed packets to list")
	fl.BoolVar(&f.json, "json", false, "print one JSON object")
	return cmd
}

type diffJSON struct {
	Changes []policydiff.Change     `json:"changes"`
	Capture *policydiff.CaptureDiff `json:"capture,omitempty"`
}

func (f *diffFlags) run(out, errOut io.Writer, oldPath, newPath string) int {
	o, err := f.options(func(n int, msg string) {
		fmt.Fprintf(errOut, "fwagent diff: %s: frame %d skipped: %s\n", f.capture, n, msg)
	})
	if err != nil {
		fmt.Fprintln(errOut, "fwagent diff:", err)
		return diffTrouble
	}
	if f.capture == "" && (f.hook != "input" || f.iif != "" || f.oif != "") {
		fmt.Fprintln(errOut, "fwagent diff: --hook, --iif and --oif go with --capture")
		return diffTrouble
	}
	// Old, then new: a broken old policy is reported first.
	var pols [2]*policies.Policy
	for i, path := range []string{oldPath, newPath} {
		if pols[i], err = policyload.LoadFile(path); err != nil {
			fmt.Fprintln(errOut, err)
			return diffTrouble
		}
	}
	changes := policydiff.Compare(pols[0], pols[1])
	var cd *policydiff.CaptureDiff
	if f.capture != "" {
		var progs [2]*policies.Program
		for i, pol := range pols {
			if progs[i], err = policies.Compile(pol); err != nil {
				fmt.Fprintln(errOut, err)
				return diffTrouble
			}
		}
		open := func() (io.ReadCloser, error) { return os.Open(f.capture) }
		if cd, err = policydiff.CompareCapture(progs[0], progs[1], open, o); err != nil {
			fmt.Fprintf(errOut, "fwagent diff: %s: %v\n", f.capture, err)
			return diffTrouble
		}
	}
	changed := len(changes) > 0 || cd != nil && len(cd.Changed) > 0
	if f.json {
		if changes == nil {
			changes = []policydiff.Change{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(diffJSON{Changes: changes, Capture: cd}); err != nil {
			fmt.Fprintln(errOut, "fwagent diff:", err)
			return diffTrouble
		}
	} else {
		for _, c := range changes {
			fmt.Fprintln(out, c)
		}
		if len(changes) == 0 {
			fmt.Fprintln(out, "policies: no change")
		}
		if cd != nil {
			writeCaptureDiff(out, f.capture, cd, f.max)
		}
	}
	if changed {
		return diffChanged
	}
	return diffSame
}

func writeCaptureDiff(out io.Writer, name string, cd *policydiff.CaptureDiff, most int) {
	fmt.Fprintf(out, "capture %s: %d packets, %d change verdict, %d change rule only, in %d flows\n",
		name, cd.Packets, cd.VerdictChanged, cd.RuleChanged, len(cd.Flows))
	for i, c := range cd.Changed {
		if i == most {
			fmt.Fprintf(out, "  ... %d more packets\n", len(cd.Changed)-most)
			break
		}
		fmt.Fprintf(out, "  %d %s: %s %q -> %s %q  %s\n", c.N, c.Hook, c.Old.Verdict, c.Old.Rule, c.New.Verdict, c.New.Rule, c.Tuple)
	}
	if len(cd.Flows) > 0 {
		fmt.Fprintln(out, "flows:")
		for i, f := range cd.Flows {
			if i == most {
				fmt.Fprintf(out, "  ... %d more flows\n", len(cd.Flows)-most)
				break
			}
			fmt.Fprintf(out, "  %s: %d packets (%d change verdict), first %d: %s %q -> %s %q\n",
				f.Flow, f.Packets, f.Verdicts, f.First, f.Old.Verdict, f.Old.Rule, f.New.Verdict, f.New.Rule)
		}
	}
	if sk := cd.Summary.SkippedTotal(); sk > 0 {
		fmt.Fprintf(out, "(%d frames of the capture skipped, as eval --summary lists)\n", sk)
	}
}
