package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/fwagent/fwagent/internal/policyfile"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
	"github.com/fwagent/fwagent/rules"
)

func newCheckCmd() *cobra.Command {
	var strict, insecure bool
	cmd := &cobra.Command{
		Use:   "check POLICY",
		Short: "Validate a policy and run its tests: section",
		Long: `Validate a policy file (and the set files it names), print warnings such as
shadowed rules, and run the policy's tests: section. It refuses what
` + "`fwagent run`" + ` refuses, with the same messages: a policy or set file that group
or others may write, or that belongs to another user, fails unless
--allow-insecure-policy-perms is given here too.

It then says how many rules run in the kernel with --kernel-rules auto and,
for every other rule, why it needs userspace ("rule web-sni: tls_sni needs
userspace"): packets its kernel part matches are queued.

Every independent error of the file is printed (up to 20), each as
FILE:LINE:COL: message. With --strict a warning fails the check too.

Exit status: 0 valid and every test passed, 1 invalid, a test failed or
(--strict) a warning, 2 usage error.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			prog, err := policyfile.Load(args[0], insecure)
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
			n, err := policyfile.Gate(args[0], prog, "")
			if err != nil {
				fmt.Fprintln(errOut, err)
				return exitError{exitFailed}
			}
			fmt.Fprintf(out, "%s: ok (%d rules, %d tests passed)\n", args[0], prog.NumRules(), n)
			return printKernelPlan(out, prog)
		},
	}
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on warnings (shadowed rules, unused sets) as on errors")
	cmd.Flags().BoolVar(&insecure, "allow-insecure-policy-perms", false, "accept a policy or set file that group or others may write, or that another user owns (as run does with this flag)")
	return cmd
}

// loadProgram loads, validates and compiles a policy file, for the commands
// that only read a policy (eval, rules); what goes live is read through
// policyfile.
func loadProgram(path string) (*policies.Program, error) {
	pol, err := policyload.LoadFile(path)
	if err != nil {
		return nil, err
	}
	return policies.Compile(pol)
}

// policyRefused is the policy error within err, if any: it is printed as
// it is, the same as check prints it.
func policyRefused(err error) (*policyfile.Error, bool) {
	var pe *policyfile.Error
	ok := errors.As(err, &pe)
	return pe, ok
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
