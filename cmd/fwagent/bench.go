package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fwagent/fwagent/bench/harness"
)

func newBenchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "bench [-configs LIST] [-duration D] [harness flags]",
		Short: "Measure verdict throughput on this host (the bench/README.md harness)",
		Long: `Run the end-to-end benchmark harness from this binary: it builds its own pair
of network namespaces (nothing touches the host's namespace or firewall),
starts each firewall configuration in turn (kernel only, the C
libnetfilter_queue loop, this fwagent in several shapes, ulogd2 for the drop
log), drives traffic pinned to one core while the firewall path runs on
another, prints a progress line per configuration and the results table,
and writes results.json, results.md and chart.svg to -out. Needs root and
two cores. Baselines the host cannot run are skipped with a line saying
why: the C loop needs gcc and libnetfilter_queue's header, the drop-log
baseline ulogd2, and the go-nfqueue loop a checkout (go run ./bench/e2e).
The flags are the harness's own, Go style: see ` + "`fwagent bench -h`" + `.`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && args[0] == "gen" {
				// The harness re-runs this binary inside a namespace as
				// its traffic generator.
				return harness.RunGen(args[1:])
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("bench: own executable: %w", err)
			}
			// This binary is the fwagent measured, unless -fwagent-bin
			// (parsed later, so it wins) names another.
			opt, err := harness.ParseFlags("fwagent bench", append([]string{"-fwagent-bin", exe}, args...), "fwagent-bench")
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			if err != nil {
				return usageError{err}
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			// Interrupted, the harness still tears its namespaces down.
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return harness.Run(ctx, log, harness.Env{
				Exe: exe, GenArgs: []string{"bench", "gen"},
				Command: "fwagent bench " + strings.Join(args, " "),
				Stdout:  cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(),
			}, opt)
		},
	}
}
