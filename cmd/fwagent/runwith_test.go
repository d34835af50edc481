package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// runWith is run with the command's output captured: it mirrors main.go's
// run (same exit codes, same "fwagent:" error line), writing to stdout and
// stderr instead of the process's.
func runWith(args []string, stdout, stderr io.Writer) int {
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
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailed
}

// fwagent runs the CLI in-process and returns exit code, stdout, stderr.
func fwagent(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runWith(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

const examplesDir = "../../policies/examples"

func example(name string) string { return filepath.Join(examplesDir, name) }

func exampleCapture(name string) string { return filepath.Join(examplesDir, "testdata", name) }

// writeFile writes content to name in a fresh temp dir, with permissions
// the policy loader accepts.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunWithMatchesRun(t *testing.T) {
	// run and runWith must agree on exit codes; run writes to the
	// process's stderr, so only codes are compared.
	for _, args := range [][]string{
		{"check"},
		{"check", "--no-such-flag", "x"},
		{"check", "/nonexistent/policy.yaml"},
	} {
		if got, want := runWith(args, io.Discard, io.Discard), run(args); got != want {
			t.Errorf("%v: runWith exit %d, run exit %d", args, got, want)
		}
	}
}
