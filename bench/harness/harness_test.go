package harness

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// TestMain lets the test binary stand in for the harness binary: the
// harness re-executes itself as `gen TOOL` inside the namespaces.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "gen" {
		if err := RunGen(os.Args[2:]); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHarness runs the harness for real, briefly: kernel only and the two
// reference loops, in namespaces it builds and tears down.
func TestHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("builds namespaces and runs traffic for ~20 s")
	}
	testnet.RequireRoot(t)
	testnet.RequireCommands(t, "taskset", "go")
	out := t.TempDir()
	opt, err := ParseFlags("e2e", []string{"-configs", "kernel,naive,cloop", "-duration", "1s", "-rates", "5000", "-out", out, "-install=false"}, "bench/out")
	if err != nil {
		t.Fatal(err)
	}
	root, err := ModuleRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	env := Env{Exe: exe, GenArgs: []string{"gen"}, Root: root, Command: "test", Stdout: testWriter{t}, Stderr: testWriter{t}}
	if err := Run(context.Background(), log, env, opt); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Configs) != 3 {
		t.Fatalf("%d configurations, want 3", len(res.Configs))
	}
	for _, c := range res.Configs {
		if c.Skipped != "" {
			if os.Getenv("CI") == "true" {
				t.Errorf("%s skipped in CI: %s", c.Name, c.Skipped)
			}
			continue
		}
		if len(c.Errors) > 0 {
			t.Errorf("%s: %v", c.Name, c.Errors)
			continue
		}
		mx, fixed := c.point("max"), c.point("fixed")
		if mx == nil || fixed == nil || c.Connect == nil {
			t.Errorf("%s: missing runs: %+v", c.Name, c)
			continue
		}
		if mx.Received == 0 || mx.Flows != 64 {
			t.Errorf("%s max: received %d over %d flows", c.Name, mx.Received, mx.Flows)
		}
		// Every lost packet is explained by a counter the harness reads
		// (the backlog counter is host-wide, so it may explain more).
		explained := mx.Queue.QueueDropped + mx.Queue.UserDropped + mx.Queue.Waiting + mx.SinkDrops + mx.BacklogDrops
		if lost := mx.Sent - mx.Received; lost > explained {
			t.Errorf("%s max: lost %d, counters explain %d: %+v + %d sink + %d backlog", c.Name, lost, explained, mx.Queue, mx.SinkDrops, mx.BacklogDrops)
		}
		if c.Name == "kernel" {
			if fixed.Received != fixed.Sent {
				t.Errorf("kernel at 5000 pps lost %d of %d", fixed.Sent-fixed.Received, fixed.Sent)
			}
			if c.Bulk == nil || c.Bulk.Gbps <= 0 {
				t.Errorf("kernel bulk: %+v", c.Bulk)
			}
		} else if mx.HandlerCPUSec <= 0 {
			t.Errorf("%s: handler used no CPU while deciding %d packets", c.Name, mx.Received)
		}
	}
	for _, f := range []string{"results.md", "chart.svg"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}
