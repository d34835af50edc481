package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwagent/fwagent/rules"
)

func newRulesCmd() *cobra.Command {
	var (
		policy string
		table  tableFlags
		pickup time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rules --policy POLICY [flags]",
		Short: "Print, in nft syntax, the table the agent would install",
		Long: `Print the nftables table "inet fwagent" that 'fwagent run' would install with
the same flags, in nft syntax, without touching the kernel. The output loads
with 'nft -f' (the queue rule is shown with the native queue expression; on
kernels without it the agent installs the equivalent xt NFQUEUE target).
With --pickup-window above 0 (as run's default) it includes the start-up
pickup rule, which the agent deletes when the window ends.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if policy == "" {
				return usagef("rules: --policy is required")
			}
			prog, err := loadProgram(policy)
			if err != nil {
				return err
			}
			rc, err := table.config()
			if err != nil {
				return err
			}
			kernel, err := table.kernel()
			if err != nil {
				return err
			}
			if kernel {
				if rc.Plan, err = rules.Compile(prog, rc); err != nil {
					return err
				}
			} else if rc, err = rules.WithQueueAll(prog, rc); err != nil {
				return err
			}
			rc.Generation = 1
			rc.Pickup = pickup > 0
			fmt.Fprint(cmd.OutOrStdout(), rules.Render(rc))
			return nil
		},
	}
	cmd.Flags().StringVar(&policy, "policy", "", "policy file (required)")
	table.register(cmd.Flags())
	cmd.Flags().DurationVar(&pickup, "pickup-window", defaultPickupWindow, "as for run: above 0, show the start-up pickup rule")
	return cmd
}
