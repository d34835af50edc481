package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/rules"
)

func newCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check POLICY",
		Short: "Validate a policy and run its tests: section",
		Long: `Validate a policy file (and the set files it names), print warnings such as
shadowed rules, and run the policy's tests: section.

It then says how many rules run in the kernel with --kernel-rules auto and,
for every other rule, why it needs userspace ("rule web-sni: tls_sni needs
userspace"): packets its kernel part matches are queued.

Exit status: 0 valid and every test passed, 1 invalid or a test failed,
2 usage error. Errors are printed as FILE:LINE:COL: message.`,
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
			return printKernelPlan(out, prog)
		},
	}
}

// loadProgram loads, validates and compiles a policy file.
func loadProgram(path string) (*policies.Program, error) {
	pol, err := policies.LoadFile(path)
	if err != nil {
		return nil, err
	}
	return policies.Compile(pol)
}

// printKernelPlan says which rules the kernel decides and why the others
// need userspace.
func printKernelPlan(out io.Writer, prog *policies.Program) error {
	plan, err := rules.Compile(prog, rules.DefaultConfig())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "kernel: %d of %d rules run in the kernel (--kernel-rules auto)\n", plan.Kernel(), prog.NumRules())
	for i := 0; i < prog.NumRules(); i++ {
		if why := plan.Why(i); why != "" {
			fmt.Fprintf(out, "rule %s: %s\n", prog.RuleName(int32(i)), why)
		}
	}
	return nil
}
