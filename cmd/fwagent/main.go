// Command fwagent is a host firewall agent: nftables steers packets into
// NFQUEUE, fwagent decides each one with a YAML policy and logs drops.
//
// This file only wires the CLI; the logic lives in the packages.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes shared by every command.
const (
	exitOK     = 0
	exitFailed = 1 // invalid policy, failing tests, runtime failure
	exitUsage  = 2 // bad flags or arguments
)

// usageError marks errors that are the caller's, for exit code 2.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the CLI with args and returns the exit code; tests call it with
// their own writers.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintln(stderr, "fwagent:", err)
	var ue usageError
	// cobra reports an unknown subcommand as a plain error.
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command ") {
		return exitUsage
	}
	return exitFailed
}

// exitError carries an exit code whose explanation was already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "fwagent",
		Short:         "Host firewall agent: nftables + NFQUEUE verdicts from a YAML policy",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Flag parse errors are usage errors (exit 2).
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newRunCmd(), newCheckCmd(), newEvalCmd(), newRulesCmd(), newStatusCmd(), newLogsCmd(), newFmtCmd(), newDiffCmd(), newSchemaCmd(), newConfirmCmd(), newVersionCmd(), newBenchCmd())
	addCompletions(root)
	return root
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s: want %d argument(s), got %d (see --help)", cmd.CommandPath(), n, len(args))
		}
		return nil
	}
}
