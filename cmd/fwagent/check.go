package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fwagent/fwagent/policies"
)

func newCheckCmd() *cobra.Command {
	var strict bool
	cmd := &cobra.Command{
		Use:   "check POLICY",
		Short: "Validate a policy and run its tests: section",
		Long: `Validate a policy file (and the set files it names), print warnings such as
shadowed rules, and run the policy's tests: section.

Every independent error of the file is printed (up to 20), each as
FILE:LINE:COL: message. With --strict a warning fails the check too.

Exit status: 0 valid and every test passed, 1 invalid, a test failed or
(--strict) a warning, 2 usage error.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			prog, err := loadProgram(args[0])
			if err != nil {
				fmt.Fprintln(errOut, err)
				return exitError{exitFailed}
			}
			for _, w := range prog.Warnings() {
				fmt.Fprintln(errOut, w) // already FILE:LINE:COL: warning: ...
			}
			// Rules on the socket owner are right live but silent in eval.
			for _, w := range prog.EvalWarnings() {
				fmt.Fprintln(errOut, w)
			}
			if strict && len(prog.Warnings()) > 0 {
				fmt.Fprintf(errOut, "%s: %d warnings, which --strict makes errors\n", args[0], len(prog.Warnings()))
				return exitError{exitFailed}
			}
			failed := 0
			results := prog.RunTests()
			for _, r := range results {
				if !r.OK {
					failed++
					fmt.Fprintf(errOut, "%s:%d:%d: test failed: %s\n", r.File, r.Line, r.Col, r.Msg)
				}
			}
			if failed > 0 {
				fmt.Fprintf(errOut, "%s: %d of %d tests failed\n", args[0], failed, len(results))
				return exitError{exitFailed}
			}
			fmt.Fprintf(out, "%s: ok (%d rules, %d tests passed)\n", args[0], prog.NumRules(), len(results))
			return nil
		},
	}
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on warnings (shadowed rules, unused sets) as on errors")
	return cmd
}

// loadProgram loads, validates and compiles a policy file.
func loadProgram(path string) (*policies.Program, error) {
	pol, err := policies.LoadFile(path)
	if err != nil {
		return nil, err
	}
	return policies.Compile(pol)
}
