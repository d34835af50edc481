package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fwagent runs the CLI in-process and returns exit code, stdout, stderr.
func fwagent(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
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

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"check"}, exitUsage},
		{[]string{"check", "--no-such-flag", "x"}, exitUsage},
		{[]string{"no-such-command"}, exitUsage},
		{[]string{"check", "/nonexistent/policy.yaml"}, exitFailed},
		{[]string{"version"}, exitOK},
	} {
		if got := run(tc.args, io.Discard, io.Discard); got != tc.want {
			t.Errorf("%v: exit %d, want %d", tc.args, got, tc.want)
		}
	}
}
