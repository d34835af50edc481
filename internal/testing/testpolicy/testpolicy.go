// Package testpolicy loads and compiles policies for tests, failing the
// test on any error, so that a test's set-up reads as one line.
package testpolicy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
)

// Compile loads text as the policy file name (the name shows in positions
// and messages) and compiles it.
func Compile(tb testing.TB, name, text string) *policies.Program {
	tb.Helper()
	pol, err := policyload.Load(name, []byte(text), nil)
	if err != nil {
		tb.Fatalf("load %s: %v\n%s", name, err, text)
	}
	return compile(tb, pol)
}

// CompileFile loads the policy file at path and compiles it.
func CompileFile(tb testing.TB, path string) *policies.Program {
	tb.Helper()
	pol, err := policyload.LoadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return compile(tb, pol)
}

// WriteFile writes text to the file name in dir with exactly mode, whatever
// the umask (the agent checks policy files' modes), and returns its path.
func WriteFile(tb testing.TB, dir, name, text string, mode os.FileMode) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		tb.Fatal(err)
	}
	return p
}

func compile(tb testing.TB, pol *policies.Policy) *policies.Program {
	tb.Helper()
	prog, err := policies.Compile(pol)
	if err != nil {
		tb.Fatalf("compile %s: %v", pol.File, err)
	}
	return prog
}
