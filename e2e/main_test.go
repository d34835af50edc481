package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// agentBin is the agent under test; buildErr says why there is none. Set once
// by TestMain before any test runs, read-only afterwards.
var (
	agentBin string
	buildErr error
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if spec := os.Getenv(holdEnv); spec != "" {
		return holdMain(spec) // the test binary as a helper process
	}
	if bin := os.Getenv("FWAGENT_BIN"); bin != "" {
		agentBin = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "fwagent-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "fwagent")
	// Tests run in the package directory; the module root is its parent.
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/fwagent")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		buildErr = fmt.Errorf("go build ./cmd/fwagent: %w\n%s", err, out)
	} else {
		agentBin = bin
	}
	return m.Run()
}

// requireAgent skips a test when the agent could not be built, and fails it
// when CI=true: a CI run must never pass without having tested the agent.
func requireAgent(t *testing.T) {
	t.Helper()
	if agentBin != "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("e2e: no agent to test: %v", buildErr)
	}
	t.Skipf("e2e: no agent to test: %v", buildErr)
}
