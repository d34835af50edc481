package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwagent/fwagent/internal/control"
)

func newConfirmCmd() *cobra.Command {
	var path string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "confirm [--control-socket PATH]",
		Short: "Confirm the policy change on probation (run --confirm-reloads)",
		Long: `Tell the agent that the policy now in force is good: with
` + "`run --confirm-reloads D`" + ` every policy change reverts to the last confirmed
policy after D unless this arrives first. Exits 1 if the agent cannot be
reached or refuses.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			msg, err := control.Call(ctx, path, "confirm")
			if err != nil {
				return fmt.Errorf("confirm: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), msg)
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "control-socket", control.DefaultPath, "the agent's --control-socket")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	return cmd
}
