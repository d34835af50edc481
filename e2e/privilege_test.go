package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
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

// nobody is the unprivileged user the agent runs as in these tests.
const nobody = 65534

// capNetAdmin is CAP_NET_ADMIN's bit in /proc/PID/status Cap* masks.
const capNetAdmin = 1 << 12

// privDir is a directory the unprivileged agent can read (policy, binary)
// and write (event log, metrics socket): t.TempDir and the build dir are
// root-only.
func privDir(t *testing.T) string {
	t.Helper()
	dir := tempdir.Short(t, "fwpriv")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyAgent puts an executable copy of the agent in dir.
func copyAgent(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(agentBin)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "fwagent")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// setprivArgs drops to nobody with only the named capabilities (none when
// caps is empty), in every set, so nothing can be regained.
func setprivArgs(caps ...string) []string {
	spec := "-all"
	for _, c := range caps {
		spec += ",+" + c
	}
	return []string{"setpriv", fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), "--clear-groups",
		"--inh-caps=" + spec, "--ambient-caps=" + spec, "--bounding-set=" + spec, "--"}
}

// startAgentWith is startAgent for a command line of the test's choosing
// (wrapper, binary and arguments): the agent helper knows how to watch,
// dump and kill any process that logs msg=ready.
func startAgentWith(t *testing.T, ns *testnet.NS, logFile string, argv ...string) *agent {
	t.Helper()
	a := spawn(t, ns, logFile, ns.Command(context.Background(), argv[0], argv[1:]...))
	a.waitReady(t)
	return a
}

// statusField returns a field of /proc/PID/status.
func statusField(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return ""
}

// TestLeastPrivilege runs the agent as nobody with CAP_NET_ADMIN and nothing
// else: it installs its table, decides, logs drops and serves metrics; with
// no capability at all it refuses to start with an error that says so.
func TestLeastPrivilege(t *testing.T) {
	n := agentNet(t)
	testnet.RequireCommands(t, "setpriv")
	serveTCP(t, n.Server, 8080)
	serveTCP(t, n.Server, 8081)
	dir := privDir(t)
	bin := copyAgent(t, dir)
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(webPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(run, nobody, nobody); err != nil {
		t.Fatal(err)
	}

	t.Run("CAP_NET_ADMIN only", func(t *testing.T) {
		logFile := filepath.Join(run, "events.jsonl")
		// The lock goes where nobody may write (systemd's RuntimeDirectory
		// does that for the fwagent user).
		argv := append(setprivArgs("net_admin"), bin, "run", "--policy", policy, "--log-file", logFile, "--lock-dir", run, "--control-socket", filepath.Join(run, "c.sock"))
		var sock string
		if metricsFlag() {
			sock = filepath.Join(run, "m.sock")
			argv = append(argv, "--metrics-addr", sock)
		}
		a := startAgentWith(t, n.Server, logFile, argv...)
		pid := a.cmd.Process.Pid
		if uid := strings.Fields(statusField(t, pid, "Uid")); len(uid) != 4 || uid[1] != fmt.Sprint(nobody) {
			t.Errorf("agent uids %v, want effective %d", uid, nobody)
		}
		for _, set := range []string{"CapEff", "CapPrm", "CapBnd"} {
			var v uint64
			if _, err := fmt.Sscanf(statusField(t, pid, set), "%x", &v); err != nil || v != capNetAdmin {
				t.Errorf("agent %s = %s, want only CAP_NET_ADMIN (%#x)", set, statusField(t, pid, set), capNetAdmin)
			}
		}
		if tables := nft(t, n.Server, "list", "tables"); !fwagentTable.MatchString(tables) {
			t.Fatalf("no fwagent table:\n%s", tables)
		}
		tcpEcho(t, n.Client, netip.AddrPortFrom(n.Server.Addr4(), 8080))
		tcpEcho(t, n.Client, netip.AddrPortFrom(n.Server.Addr6(), 8080))
		if connects(n.Client, netip.AddrPortFrom(n.Server.Addr4(), 8081), 0) {
			t.Errorf("8081 reachable, want it dropped")
		}
		if evs := a.waitEvents(t, 1, func(e event) bool { return e.str("dport") == "8081" }); len(evs) == 0 {
			t.Errorf("no drop event for 8081 from the unprivileged agent")
		}
		// The policy runs in the kernel (--kernel-rules auto): its hits are
		// the kernel's counters, which the unprivileged agent must read too.
		if s := scrape(t, sock); s != nil && s.sum("fwagent_rule_hits_total")+s.sum("fwagent_default_hits_total") == 0 {
			t.Errorf("metrics count no rule hits")
		}
		if code := a.stop(t, syscall.SIGTERM); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
		if tables := nft(t, n.Server, "list", "tables"); fwagentTable.MatchString(tables) {
			t.Errorf("the unprivileged agent left its table behind:\n%s", tables)
		}
	})

	t.Run("no capabilities", func(t *testing.T) {
		argv := append(setprivArgs(), bin, "run", "--policy", policy, "--log-file", filepath.Join(run, "none.jsonl"), "--lock-dir", run, "--metrics-addr", "off")
		if !metricsFlag() {
			argv = argv[:len(argv)-2]
		}
		out, code := runCmdIn(t, n.Server, readyTimeout, argv...)
		if code <= 0 {
			t.Fatalf("agent without capabilities: exit code %d, want a non-zero exit\n%s", code, out)
		}
		for _, want := range []string{"operation not permitted", "CAP_NET_ADMIN"} {
			if !strings.Contains(out, want) {
				t.Errorf("error does not say %q:\n%s", want, out)
			}
		}
		if tables := nft(t, n.Server, "list", "tables"); fwagentTable.MatchString(tables) {
			t.Errorf("a table exists after a failed start:\n%s", tables)
		}
	})
}

// TestPolicyPermissions: the agent refuses a policy or set file others may
// write, naming the file and the fix, unless told
// --allow-insecure-policy-perms; a reload meets the same check and keeps the
// previous policy.
func TestPolicyPermissions(t *testing.T) {
	n := agentNet(t, 8080)
	dir := t.TempDir()
	set := filepath.Join(dir, "web.txt")
	policy := filepath.Join(dir, "policy.yaml")
	write := func(p, text string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	const policyText = "version: 1\ndefault: {input: drop, log: false}\nsets:\n  web: {file: web.txt}\nrules:\n  - {name: web, match: {proto: tcp, dport: $web}, action: accept}\n"
	write(set, "8080\n", 0o644)
	write(policy, policyText, 0o644)

	for _, tc := range []struct {
		name string
		file string
		mode os.FileMode
	}{
		{"world-writable policy", policy, 0o666},
		{"group-writable set file", set, 0o664},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.Chmod(tc.file, tc.mode); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(tc.file, 0o644)
			out, code := runIn(t, n.Server, readyTimeout, "run", "--policy", policy, "--log-file", filepath.Join(dir, "ev.jsonl"))
			if code == 0 {
				t.Fatalf("agent ran with %s; output:\n%s", tc.name, out)
			}
			if want := "chmod go-w " + tc.file; !strings.Contains(out, want) {
				t.Errorf("refusal does not say %q:\n%s", want, out)
			}
			if tables := nft(t, n.Server, "list", "tables"); fwagentTable.MatchString(tables) {
				t.Errorf("a table exists after the refusal:\n%s", tables)
			}
			a := startAgent(t, n.Server, policy, "--allow-insecure-policy-perms")
			tcpEcho(t, n.Client, netip.AddrPortFrom(n.Server.Addr4(), 8080))
			a.stop(t, syscall.SIGTERM)
		})
	}

	t.Run("reload", func(t *testing.T) {
		a := startAgent(t, n.Server, policy)
		tcpEcho(t, n.Client, netip.AddrPortFrom(n.Server.Addr4(), 8080))
		// The set file now opens 8081 too, but others could have written
		// it. Mode first, then content: a reload (SIGHUP, or the agent's
		// file watcher) between the two must not see the new content with
		// the old, safe mode.
		if err := os.Chmod(set, 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(set, []byte("8080\n8081\n"), 0o666); err != nil {
			t.Fatal(err)
		}
		if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if !eventually.True(answerWait, 50*time.Millisecond, func() bool { return strings.Contains(a.stderrAfterReady(), "chmod go-w "+set) }) {
			t.Fatalf("no refusal naming %s after SIGHUP:\n%s", set, a.stderrAfterReady())
		}
		serveTCP(t, n.Server, 8081)
		if connects(n.Client, netip.AddrPortFrom(n.Server.Addr4(), 8081), 0) {
			t.Errorf("8081 reachable: the refused set file was applied")
		}
		tcpEcho(t, n.Client, netip.AddrPortFrom(n.Server.Addr4(), 8080))
	})
}

// TestMetricsLoopbackByDefault: without --metrics-addr the endpoint listens
// on loopback only, so the firewall's state is not served to the network.
func TestMetricsLoopbackByDefault(t *testing.T) {
	requireKernelTools(t)
	testnet.RequireCommands(t, "ss")
	if !metricsFlag() {
		t.Skip("the agent has no metrics endpoint yet")
	}
	t.Parallel()
	n := testnet.New(t)
	startAgent(t, n.Server, writePolicy(t, dropAllPolicy))
	out, err := n.Server.Command(context.Background(), "ss", "-Hltn").CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	var listening []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) >= 4 {
			listening = append(listening, f[3])
		}
	}
	if len(listening) == 0 {
		t.Fatalf("the agent listens on no TCP port; ss:\n%s", out)
	}
	for _, addr := range listening {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || !ap.Addr().IsLoopback() {
			t.Errorf("the agent listens on %s, want loopback only", addr)
		}
	}
	// And it answers there.
	body, err := httpGet(n.Server, listening[0], "/metrics")
	if err != nil || !strings.Contains(body, "fwagent_") {
		t.Errorf("GET /metrics on %s: err %v, body %.200q", listening[0], err, body)
	}
}

// TestLogLinesCannotBeForged sends packets whose payload carries newlines,
// quotes and a complete fake event, and checks that every line of the event
// log is one well-formed event of a packet that was really dropped.
func TestLogLinesCannotBeForged(t *testing.T) {
	n := agentNet(t)
	a := startAgent(t, n.Server, writePolicy(t, webPolicy))
	forged := `"}` + "\n" + `{"time":"2026-01-01T00:00:00Z","rule":"web","verdict":"accept","event":"accept"}` + "\n\x1b[2J\\"
	for _, port := range []uint16{53, 9000} {
		_, _ = udpExchange(n.Client, netip.AddrPortFrom(n.Server.Addr4(), port), []byte(forged), 50*time.Millisecond)
		_, _ = udpExchange(n.Client, netip.AddrPortFrom(n.Server.Addr6(), port), []byte(rawDNSQuery("a.example")[:12]), 50*time.Millisecond)
	}
	a.waitEvents(t, 4, func(e event) bool { return e.str("proto") == "udp" || e.str("proto") == "17" })
	b, err := os.ReadFile(a.logFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) < 4 {
		t.Fatalf("%d event lines, want at least 4:\n%s", len(lines), b)
	}
	for _, line := range lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Errorf("event line is not one JSON object (%v): %q", err, line)
			continue
		}
		if e["verdict"] != "drop" || e["rule"] != "default" {
			t.Errorf("event that no packet caused: %q", line)
		}
	}
}

// httpGet fetches path from addr inside ns over HTTP/1.0; the socket is
// made inside the namespace and used from here.
func httpGet(ns *testnet.NS, addr, path string) (string, error) {
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, answerWait)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(answerWait))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}
