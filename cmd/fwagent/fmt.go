package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/fwagent/fwagent/policies/format"
)

type fmtFlags struct {
	write, check, list bool
}

func newFmtCmd() *cobra.Command {
	var f fmtFlags
	cmd := &cobra.Command{
		Use:   "fmt [-w | --check | -l] POLICY...",
		Short: "Lay policy files out in the canonical form",
		Long: `Print each policy in the canonical layout (key order, two-space indentation,
flow style for matches and lists that fit in 100 columns, one blank line
before sets, rules and tests), keeping every comment. Formatting twice
changes nothing.

-w rewrites the files in place; --check prints nothing for a file already
canonical, and the name of each file that is not, like gofmt -l, and -l is
its alias. Exit status: 0 done (--check: every file canonical), 1 a file
would change (--check) or could not be read or formatted, 2 usage error.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("%s: want one or more policy files (see --help)", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.write && (f.check || f.list) {
				return usagef("fmt: -w and --check do not go together")
			}
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			failed := false
			for _, path := range args {
				src, err := os.ReadFile(path)
				if err != nil {
					fmt.Fprintln(errOut, "fwagent fmt:", err)
					failed = true
					continue
				}
				got, err := format.Format(path, src)
				if err != nil {
					fmt.Fprintln(errOut, err)
					failed = true
					continue
				}
				switch {
				case f.check || f.list:
					if !bytes.Equal(src, got) {
						fmt.Fprintln(out, path)
						failed = true
					}
				case f.write:
					if bytes.Equal(src, got) {
						continue
					}
					if err := writeKeepingMode(path, got); err != nil {
						fmt.Fprintln(errOut, "fwagent fmt:", err)
						failed = true
					}
				default:
					if _, err := out.Write(got); err != nil {
						return err
					}
				}
			}
			if failed {
				return exitError{exitFailed}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.write, "write", "w", false, "rewrite the files in place")
	fl.BoolVar(&f.check, "check", false, "list files that are not canonical, exit 1 if any")
	fl.BoolVarP(&f.list, "list", "l", false, "same as --check")
	return cmd
}

// writeKeepingMode replaces path with data through a temporary file in the
// same directory, so a crash leaves the old file or the new one, never half.
func writeKeepingMode(path string, data []byte) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fwagent-fmt-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
