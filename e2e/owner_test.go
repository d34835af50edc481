package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// connectWait bounds one connection attempt of connectAs: a dropped SYN
// shows as the timeout, an accepted connection echoes well within it.
const connectWait = "2"

// connectAs runs, in ns, a bash that connects to dst over TCP, writes a line
// and reads the echo back, and reports whether that worked. uid >= 0 runs it
// as that user and group (setpriv); cg != "" starts it inside that cgroup
// directory, so its socket belongs to the cgroup. nsenter enters only the
// network namespace: the process keeps the host's mounts and cgroups.
func connectAs(t *testing.T, ns *testnet.NS, dst netip.AddrPort, uid int, cgDir string) (bool, string) {
	t.Helper()
	script := fmt.Sprintf(`exec 3<>/dev/tcp/%s/%d || exit 3; echo owner-test >&3; read -t 2 line <&3; [ "$line" = owner-test ]`, dst.Addr(), dst.Port())
	args := []string{"--net=" + ns.Path()}
	if uid >= 0 {
		args = append(args, "setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups")
	}
	args = append(args, "timeout", connectWait, "bash", "-c", script)
	cmd := exec.Command("nsenter", args...)
	if cgDir != "" {
		defer testnet.IntoCgroup(t, cmd, cgDir)()
	}
	out, err := cmd.CombinedOutput()
	return err == nil, fmt.Sprintf("%v %s", err, out)
}

// startAgentHostMounts is startAgent entering the namespace with nsenter
// instead of `ip netns exec`, whose fresh /sys would hide the host's
// cgroup2 mount from the agent.
func startAgentHostMounts(t *testing.T, ns *testnet.NS, policy string, args ...string) *agent {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), "events.jsonl")
	full := append([]string{"--net=" + ns.Path(), agentBin, "run", "--policy", policy, "--log-file", logFile}, args...)
	a := spawn(t, ns, logFile, exec.CommandContext(context.Background(), "nsenter", full...))
	a.policy = policy
	a.waitReady(t)
	return a
}

const uidPolicy = `version: 1
default: {input: accept, output: accept}
rules:
  - name: root-8080
    hook: output
    match: {proto: tcp, dport: 8080, uid: root}
    action: accept
  - name: others-8080
    hook: output
    match: {proto: tcp, dport: 8080}
    action: drop
    log: true
`

// TestOwnerUID: with TCP 8080 allowed only to uid 0 on output, root
// connects and nobody (65534) does not, and the drop event names the uid.
func TestOwnerUID(t *testing.T) {
	n := agentNet(t)
	testnet.RequireCommands(t, "nsenter", "setpriv", "timeout", "bash")
	serveTCP(t, n.Server, 8080)
	a := startAgent(t, n.Client, writePolicy(t, uidPolicy), "--hooks", "output")

	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		ap := netip.AddrPortFrom(dst, 8080)
		if ok, out := connectAs(t, n.Client, ap, -1, ""); !ok {
			t.Errorf("root to %s: failed (%s), want it allowed", ap, out)
		}
		if ok, _ := connectAs(t, n.Client, ap, 65534, ""); ok {
			t.Errorf("uid 65534 to %s: connected, want it dropped", ap)
		}
		evs := a.waitEvents(t, 1, func(e event) bool { return e.str("dst") == dst.String() && e.str("dport") == "8080" })
		if len(evs) == 0 {
			t.Fatalf("no drop event for uid 65534's SYN to %s; events: %v", ap, a.events(t))
		}
		for _, e := range evs {
			checkEvent(t, e, map[string]string{"rule": "others-8080", "verdict": "drop", "hook": "output", "uid": "65534", "gid": "65534"})
		}
	}
	if c := a.waitEvents(t, 1, func(e event) bool { return e.str("uid") == "0" }); len(c) > 0 {
		t.Errorf("root's traffic was logged as dropped: %v", c)
	}
}

// TestOwnerCgroup: a process in a test cgroup is denied TCP 8080 while one
// outside is allowed; a rule naming a cgroup that does not exist yet loads,
// and holds once the cgroup is made.
func TestOwnerCgroup(t *testing.T) {
	requireKernelTools(t)
	testnet.RequireCommands(t, "nsenter", "timeout", "bash")
	t.Parallel()
	cg := testnet.NewCgroup(t, "app.slice", "blocked.service")
	top := strings.SplitN(cg.Path, "/", 2)[0]
	late := top + "/late.slice"
	n := testnet.New(t)
	serveTCP(t, n.Server, 8080)
	serveTCP(t, n.Server, 8081)
	policy := fmt.Sprintf(`version: 1
default: {input: accept, output: accept}
rules:
  - name: blocked-unit
    hook: output
    match: {proto: tcp, dport: 8080, cgroup: %s/app.slice/*.service}
    action: drop
    log: true
  - name: not-yet
    hook: output
    match: {proto: tcp, dport: 8081, cgroup: /%s/}
    action: drop
    log: true
`, top, late)
	a := startAgentHostMounts(t, n.Client, writePolicy(t, policy), "--hooks", "output")

	dst := netip.AddrPortFrom(n.Server.Addr4(), 8080)
	if ok, out := connectAs(t, n.Client, dst, -1, ""); !ok {
		t.Errorf("outside the cgroup: failed (%s), want it allowed", out)
	}
	if ok, _ := connectAs(t, n.Client, dst, -1, cg.Dir()); ok {
		t.Errorf("inside %s: connected, want it dropped", cg.Path)
	}
	evs := a.waitEvents(t, 1, func(e event) bool { return e.str("rule") == "blocked-unit" })
	if len(evs) == 0 {
		t.Fatalf("no event for the dropped SYN; events: %v", a.events(t))
	}
	checkEvent(t, evs[0], map[string]string{"verdict": "drop", "dport": "8080", "cgroup": "/" + cg.Path, "uid": "0"})

	// The cgroup the second rule names appears only now.
	dst = netip.AddrPortFrom(n.Server.Addr4(), 8081)
	lateDir := filepath.Join(cg.Mount, late)
	if ok, out := connectAs(t, n.Client, dst, -1, cg.Dir()); !ok {
		t.Errorf("8081 from %s, outside the not-yet cgroup: failed (%s)", cg.Path, out)
	}
	if err := os.Mkdir(lateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if ok, _ := connectAs(t, n.Client, dst, -1, lateDir); ok {
		t.Errorf("8081 from the cgroup made after the agent started: connected, want it dropped")
	}
	if evs := a.waitEvents(t, 1, func(e event) bool { return e.str("rule") == "not-yet" }); len(evs) == 0 {
		t.Errorf("no event from rule not-yet; events: %v", a.events(t))
	}
}

// TestOwnerUnknownUser: a user name the host does not know is a
// FILE:LINE:COL error, for check and for run alike (run inside a namespace,
// so that even a wrong start could not touch the host's firewall).
func TestOwnerUnknownUser(t *testing.T) {
	n := agentNet(t)
	path := writePolicy(t, `version: 1
rules:
  - name: svc
    hook: output
    match: {proto: tcp, uid: [root, fwagent-no-such-user]}
    action: accept
`)
	want := path + ":5:37: unknown user \"fwagent-no-such-user\""
	for _, args := range [][]string{{"check", path}, {"run", "--policy", path}} {
		out, code := runIn(t, n.Client, readyTimeout, args...)
		if code == 0 {
			t.Errorf("fwagent %s: succeeded, want an error", args[0])
		}
		if !strings.Contains(out, want) {
			t.Errorf("fwagent %s said:\n%s\nwant a line with %q", args[0], out, want)
		}
	}
}

// listenInCgroup opens a TCP listener on port inside ns whose socket
// belongs to cgroup cg: the test process joins cg for the moment it makes
// the socket (a socket keeps the cgroup it was created in) and goes back.
// The whole process moves, so callers must not run in parallel with tests
// that start processes expecting the test's own cgroup.
func listenInCgroup(t *testing.T, ns *testnet.NS, cg testnet.Cgroup, port int) {
	t.Helper()
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var home string
	for _, l := range strings.Split(string(self), "\n") {
		if rest, ok := strings.CutPrefix(l, "0::"); ok {
			home = filepath.Join(cg.Mount, rest)
		}
	}
	if home == "" {
		t.Fatalf("no cgroup v2 line in /proc/self/cgroup:\n%s", self)
	}
	pid := []byte(fmt.Sprint(os.Getpid()))
	if err := os.WriteFile(filepath.Join(cg.Dir(), "cgroup.procs"), pid, 0); err != nil {
		t.Fatalf("join %s: %v", cg.Path, err)
	}
	serveTCP(t, ns, port)
	if err := os.WriteFile(filepath.Join(home, "cgroup.procs"), pid, 0); err != nil {
		t.Fatalf("go back to %s: %v", home, err)
	}
}

// TestOwnerCgroupInput: on input, a cgroup rule lets connections in only to
// the listener of the named cgroup (the server example's rule): the kernel
// delivers a SYN to a listener, and the agent finds that listener the same
// way. Not parallel: it moves the test process between cgroups.
func TestOwnerCgroupInput(t *testing.T) {
	requireKernelTools(t)
	testnet.RequireCommands(t, "nsenter")
	cg := testnet.NewCgroup(t, "system.slice", "web.service")
	n := testnet.New(t)
	listenInCgroup(t, n.Server, cg, 8443)
	serveTCP(t, n.Server, 8444) // the test's own cgroup
	policy := fmt.Sprintf(`version: 1
default: {input: accept, output: accept}
rules:
  - name: web-unit
    hook: input
    match: {proto: tcp, dport: [8443, 8444], cgroup: %s}
    action: accept
  - name: not-web-unit
    hook: input
    match: {proto: tcp, dport: [8443, 8444]}
    action: drop
    log: true
`, cg.Path)
	a := startAgentHostMounts(t, n.Server, writePolicy(t, policy), "--hooks", "input")
	for _, dst := range []netip.Addr{n.Server.Addr4(), n.Server.Addr6()} {
		tcpEcho(t, n.Client, netip.AddrPortFrom(dst, 8443))
		if connects(n.Client, netip.AddrPortFrom(dst, 8444), 0) {
			t.Errorf("%s:8444, a listener outside the unit: connected, want it dropped", dst)
		}
		evs := a.waitEvents(t, 1, func(e event) bool { return e.str("dst") == dst.String() && e.str("dport") == "8444" })
		if len(evs) == 0 {
			t.Errorf("no drop event for %s:8444; events: %v", dst, a.events(t))
			continue
		}
		checkEvent(t, evs[0], map[string]string{"rule": "not-web-unit", "hook": "input", "uid": "", "cgroup": "/"})
	}
	if evs := a.events(t); len(evs) != 2 {
		t.Errorf("%d events, want the two dropped SYNs to 8444: %v", len(evs), evs)
	}
}
