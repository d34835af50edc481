package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/eventually"
	"github.com/fwagent/fwagent/internal/testing/tempdir"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// gatePolicy opens 8080 and, in its variants, 8081; the `tests:` section
// is the operator's promise about 8080.
func gatePolicy(open8081 bool, promise string) string {
	rule := ""
	if open8081 {
		rule = `  - name: open-8081
    match: {proto: tcp, dport: 8081}
    action: accept
`
	}
	return `version: 1
default:
  input: drop
` + statefulWebRules + rule + `tests:
  - packet: {proto: tcp, dport: 8080}
    expect: ` + promise + `
`
}

// reachable is connects from the client to the server's port.
func reachable(n *testnet.Net, port int) bool {
	return connects(n.Client, netip.AddrPortFrom(n.Server.Addr4(), uint16(port)), 0)
}

// shortSock is a unix socket path short enough for sun_path (108 bytes),
// which t.TempDir paths with long test names are not.
func shortSock(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(tempdir.Short(t, "fws"), name)
}

// TestOneAgentPerNamespace: a second `fwagent run` in the namespace exits
// non-zero at once, naming the running agent's pid, and the first keeps
// enforcing (a denied port stays denied), stays healthy and reports that
// it guards its table.
func TestOneAgentPerNamespace(t *testing.T) {
	n := agentNet(t, 8080, 8081)
	policy := writePolicy(t, gatePolicy(false, "accept"))
	sock := shortSock(t, "metrics.sock")
	first := startAgent(t, n.Server, policy, "--metrics-addr", "unix:"+sock)

	start := time.Now()
	// Other queue, log group and metrics: nothing but the lock stops it.
	out, code := runIn(t, n.Server, 5*time.Second, "run", "--policy", policy, "--queue-base", "4", "--log-group", "104",
		"--metrics-addr", "off", "--control-socket", "off", "--log-file", filepath.Join(t.TempDir(), "second.jsonl"))
	t.Logf("second agent (exit %d after %v):\n%s", code, time.Since(start).Round(time.Millisecond), out)
	if code == 0 {
		t.Fatal("second agent exited 0")
	}
	if want := fmt.Sprintf("another fwagent (pid %d) already runs in this network namespace", first.cmd.Process.Pid); !strings.Contains(out, want) {
		t.Errorf("second agent's message lacks %q", want)
	}
	if !first.alive() {
		t.Fatalf("the first agent died: %v", first.waitErr)
	}
	if !reachable(n, 8080) {
		t.Error("8080 unreachable after the second agent, want the first agent's policy")
	}
	if reachable(n, 8081) {
		t.Error("8081 reachable after the second agent, want it still denied")
	}
	s := newScraper(sock)
	if code, body := s.get(t, "/healthz"); code != 200 {
		t.Errorf("first agent unhealthy after the second: %d %s", code, body)
	}
	if m := s.scrape(t); m.get("fwagent_table_guarded") != 1 || m.get("fwagent_healthy") != 1 || m.get("fwagent_build_info") != 1 {
		t.Errorf("table_guarded %v healthy %v build_info %v, want 1 1 1", m.get("fwagent_table_guarded"), m.get("fwagent_healthy"), m.get("fwagent_build_info"))
	}
	if st, code := runAgent(t, "status", "--addr", "unix:"+sock, "--interval", "0"); code != 0 || !strings.Contains(st, "table:      guarded") {
		t.Errorf("fwagent status (exit %d) does not say the table is guarded:\n%s", code, st)
	}
}

// TestTestsGate: run refuses a policy whose tests fail, naming the failing
// test's FILE:LINE; a reload to such a policy keeps the old one in force
// and is counted; check refuses what run refuses for file permissions.
func TestTestsGate(t *testing.T) {
	n := agentNet(t, 8080, 8081)

	bad := writePolicy(t, gatePolicy(true, "drop"))
	out, code := runIn(t, n.Server, 20*time.Second, "run", "--policy", bad, "--metrics-addr", "off", "--control-socket", "off")
	if code != 1 || !strings.Contains(out, bad+":15:5: test failed") || !strings.Contains(out, "test failed") {
		t.Errorf("run on a failing test: exit %d, want 1 with %s:15:5: test failed:\n%s", code, bad, out)
	}
	if tables := nft(t, n.Server, "list", "tables"); fwagentTable.MatchString(tables) {
		t.Errorf("a refused policy left a table:\n%s", tables)
	}

	policy := writePolicy(t, gatePolicy(false, "accept"))
	sock := shortSock(t, "metrics.sock")
	a := startAgent(t, n.Server, policy, "--metrics-addr", "unix:"+sock)
	if reachable(n, 8081) {
		t.Fatal("8081 reachable under the first policy")
	}
	replaceFile(t, policy, gatePolicy(true, "drop")) // opens 8081, but its test fails
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s := newScraper(sock)
	s.waitMetric(t, "a test refusal", func(m metricSet) bool { return m.get("fwagent_policy_test_refusals_total") >= 1 })
	if reachable(n, 8081) {
		t.Error("8081 reachable after a reload whose tests fail, want the old policy in force")
	}
	if !reachable(n, 8080) {
		t.Error("8080 unreachable after a refused reload")
	}
	if !strings.Contains(a.stderr.String(), "keeping the policy in force") {
		t.Errorf("the refused reload was not logged as such:\n%s", a.stderrAfterReady())
	}

	// check refuses a file others may write, as run does, unless told.
	loose := writePolicy(t, gatePolicy(false, "accept"))
	if err := os.Chmod(loose, 0o666); err != nil {
		t.Fatal(err)
	}
	if out, code := runAgent(t, "check", loose); code != 1 || !strings.Contains(out, "refusing") {
		t.Errorf("check of a world-writable policy: exit %d, want 1:\n%s", code, out)
	}
	if out, code := runAgent(t, "check", "--allow-insecure-policy-perms", loose); code != 0 {
		t.Errorf("check --allow-insecure-policy-perms: exit %d, want 0:\n%s", code, out)
	}
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	chk, _ := runAgent(t, "check", missing)
	run, _ := runIn(t, n.Server, 20*time.Second, "run", "--policy", missing, "--metrics-addr", "off", "--control-socket", "off")
	if strings.TrimSpace(chk) != strings.TrimSpace(run) {
		t.Errorf("a missing policy reads differently:\ncheck: %s\nrun:   %s", chk, run)
	}
}

// TestConfirmReloads: with --confirm-reloads 4s a change that blocks a
// port takes effect at once and reverts by itself; a confirmed one stays.
func TestConfirmReloads(t *testing.T) {
	n := agentNet(t, 8080, 8081)
	policy := writePolicy(t, gatePolicy(true, "accept"))
	ctl := shortSock(t, "control.sock")
	sock := shortSock(t, "metrics.sock")
	a := startAgent(t, n.Server, policy, "--confirm-reloads", "4s", "--control-socket", ctl, "--metrics-addr", "unix:"+sock, "--watch-policy=false")
	s := newScraper(sock)
	if !reachable(n, 8081) {
		t.Fatal("8081 unreachable under the first policy")
	}

	// An unconfirmed change that blocks 8081 reverts by itself.
	replaceFile(t, policy, gatePolicy(false, "accept"))
	changed := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.waitMetric(t, "the change on probation", func(m metricSet) bool { return m.get("fwagent_policy_unconfirmed") == 1 })
	if reachable(n, 8081) {
		t.Fatal("8081 reachable right after the change that blocks it")
	}
	if !eventually.True(time.Until(changed.Add(15*time.Second)), 200*time.Millisecond, func() bool { return reachable(n, 8081) }) {
		t.Fatal("the unconfirmed change never reverted")
	}
	t.Logf("reverted %v after the change (confirm window 4s)", time.Since(changed).Round(100*time.Millisecond))
	if m := s.scrape(t); m.get("fwagent_policy_reverts_total") != 1 || m.get("fwagent_policy_unconfirmed") != 0 {
		t.Errorf("reverts %v unconfirmed %v, want 1 and 0", m.get("fwagent_policy_reverts_total"), m.get("fwagent_policy_unconfirmed"))
	}
	if !strings.Contains(a.stderr.String(), "reverted to the last confirmed policy") {
		t.Error("the revert was not logged")
	}

	// The same change, confirmed, stays.
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.waitMetric(t, "the second change on probation", func(m metricSet) bool { return m.get("fwagent_policy_unconfirmed") == 1 })
	out, code := runAgent(t, "confirm", "--control-socket", ctl)
	if code != 0 || !strings.Contains(out, "confirmed generation") {
		t.Fatalf("fwagent confirm: exit %d:\n%s", code, out)
	}
	time.Sleep(6 * time.Second) // past the 4s window
	if reachable(n, 8081) {
		t.Error("8081 reachable after the confirmed change that blocks it")
	}
	if m := s.scrape(t); m.get("fwagent_policy_reverts_total") != 1 {
		t.Errorf("reverts %v after a confirmed change, want still 1", m.get("fwagent_policy_reverts_total"))
	}
	if out, code := runAgent(t, "confirm", "--control-socket", ctl); code != 0 || !strings.Contains(out, "nothing to confirm") {
		t.Errorf("second confirm: exit %d:\n%s", code, out)
	}
}

// TestBindInUse: a queue or NFLOG group another process holds is reported
// as in use, not as a missing capability.
func TestBindInUse(t *testing.T) {
	requireKernelTools(t)
	t.Parallel()
	for _, tc := range []struct{ spec, args, want string }{
		{"queue:0", "", "queue 0 is bound by another process"},
		{"log:100", "", "NFLOG group 100 is bound by another process"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			t.Parallel()
			n := testnet.New(t)
			hold(t, n.Server, tc.spec)
			out, code := runIn(t, n.Server, 20*time.Second, "run", "--policy", writePolicy(t, gatePolicy(false, "accept")),
				"--metrics-addr", "off", "--control-socket", "off", "--log-file", filepath.Join(t.TempDir(), "ev.jsonl"))
			if code != 1 || !strings.Contains(out, tc.want) || strings.Contains(out, "CAP_NET_ADMIN") {
				t.Errorf("exit %d, want 1 with %q and no capability hint:\n%s", code, tc.want, out)
			}
		})
	}
}

// TestLogFormatJSON: with --log-format json everything the agent writes,
// drop events on stdout and its own log on stderr, interleaved as kubectl
// logs shows them, parses line by line as JSON; so does a failed start.
func TestLogFormatJSON(t *testing.T) {
	n := agentNet(t, 8081)
	policy := writePolicy(t, strings.Replace(gatePolicy(false, "accept"), "  input: drop\n", "  input: drop\n  log: true\n", 1))
	// Events go to stdout (no --log-file): the log file is one that is never written.
	a := spawn(t, n.Server, filepath.Join(t.TempDir(), "none"), n.Server.Command(t.Context(), agentBin, "run", "--policy", policy, "--log-format", "json", "--metrics-addr", "off", "--control-socket", "off"))
	a.waitReady(t)
	if reachable(n, 8081) {
		t.Error("8081 reachable, want the logged default drop")
	}
	// Bounded wait for the drop event; jsonLines below says if it is missing.
	eventually.True(5*time.Second, 50*time.Millisecond, func() bool { return strings.Contains(a.stderr.String(), `"verdict":"drop"`) })
	a.stop(t, syscall.SIGTERM)
	events, logs := jsonLines(t, a.stderr.String())
	if events == 0 || logs == 0 {
		t.Errorf("%d events and %d log records, want both:\n%s", events, logs, a.stderr.String())
	}

	out, code := runIn(t, n.Server, 20*time.Second, "run", "--policy", filepath.Join(t.TempDir(), "missing.yaml"), "--log-format", "json", "--metrics-addr", "off", "--control-socket", "off")
	if code != 1 {
		t.Errorf("failed start exit %d, want 1", code)
	}
	if _, logs := jsonLines(t, out); logs == 0 {
		t.Errorf("the failed start logged nothing")
	}
}

// jsonLines fails the test on any line that is not one JSON object and
// counts drop events (they have "verdict") and log records ("level").
func jsonLines(t *testing.T, text string) (events, logs int) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		var obj map[string]any
		if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
			t.Errorf("not a JSON object: %q: %v", sc.Text(), err)
			continue
		}
		switch {
		case obj["verdict"] != nil:
			events++
		case obj["level"] != nil:
			logs++
		}
	}
	return events, logs
}
