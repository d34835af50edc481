package rules

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

// ownerPolicy puts uid and gid rules on output, and one on both hooks.
const ownerPolicy = `version: 1
default: {input: accept, forward: drop, output: accept}
rules:
  - {name: root8080, hook: output, match: {proto: udp, dport: 8080, uid: 0}, action: accept}
  - {name: users, hook: output, match: {proto: udp, dport: [8080, 8081], uid: [65534, 1000-1999]}, action: drop}
  - {name: notroot, hook: output, match: {proto: udp, dport: 8082, uid: "!0", gid: "!0"}, action: drop}
  - {name: rst, hook: output, match: {proto: tcp, sport: 8084, uid: "!12345"}, action: drop}
  - {name: listener, hook: output, match: {proto: tcp, sport: 8085, uid: 0}, action: accept}
  - {name: both, match: {proto: udp, dport: 8086, uid: 0}, action: accept}
  - {name: any8080, hook: output, match: {proto: udp, dport: 8080}, action: drop}
`

// TestKernelOwnerCompiled runs the compiled uid and gid rules on the
// output hook of a namespace with senders under other uids, and checks
// each packet ends at the chain rule the userspace engine predicts: the
// kernel decides a socket's packets by its owner, a packet the kernel
// makes itself (a RST to a closed port) matches no owner rule, negated or
// not, and a listener's SYN-ACK, which the queue sees without an owner,
// is queued.
func TestKernelOwnerCompiled(t *testing.T) {
	requireKernel(t, "nft", "nsenter", "setpriv", "bash", "ip")
	ns := newTestNS(t)
	ns.mustRun(t, "", "ip", "link", "set", "lo", "up")
	// Packets to 10.77.0.2 leave by dum0 and die at its peer. No IPv6:
	// its solicitations would move the counters the test reads.
	ns.mustRun(t, "", "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	ns.mustRun(t, "", "ip", "link", "add", "dum0", "type", "veth", "peer", "name", "dum1")
	ns.mustRun(t, "", "ip", "addr", "add", "10.77.0.1/24", "dev", "dum0")
	ns.mustRun(t, "", "ip", "link", "set", "dum0", "up")
	ns.mustRun(t, "", "ip", "link", "set", "dum1", "up")
	ns.mustRun(t, "", "ip", "neigh", "add", "10.77.0.2", "lladdr", "02:00:00:00:00:02", "dev", "dum0")

	cfg := testConfig(t)
	cfg.Hooks = []nf.Hook{nf.HookOutput}
	cfg.AcceptLoopback = false // the RST and the SYN-ACK go over lo
	plan := compileText(t, cfg, ownerPolicy)
	cfg.Plan = plan
	tbl, err := Install(ns.conn(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	prog := plan.Program()
	for i := 0; i < prog.NumRules(); i++ {
		name, why := prog.RuleName(int32(i)), plan.Why(i)
		if (why == "") == (name == "both") {
			t.Errorf("rule %s: why %q", name, why)
		}
	}

	// A root listener inside the namespace, for the SYN-ACK.
	lnErr := make(chan error, 1)
	var ln net.Listener
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Setns(ns.fd(), unix.CLONE_NEWNET); err != nil {
			lnErr <- err
			return
		}
		var err error
		ln, err = net.Listen("tcp4", "127.0.0.1:8085")
		lnErr <- err
	}()
	if err := <-lnErr; err != nil {
		t.Fatalf("listen in the namespace: %v", err)
	}
	defer ln.Close()

	snapshot := func() map[string]uint64 {
		t.Helper()
		out := map[string]uint64{}
		for _, ch := range tbl.policyChainsOf(nf.HookOutput) {
			names, vals, err := counters(ns.conn(t), ownTable(), ch)
			if err != nil {
				t.Fatal(err)
			}
			for i, n := range names {
				if strings.HasPrefix(n, commentQueue) {
					out[n] += vals[i]
				}
			}
		}
		hits, err := tbl.RuleHits()
		if err != nil {
			t.Fatal(err)
		}
		for r, v := range hits {
			if r == commentDefault {
				out[r] = v
			} else {
				out[commentRule+r] = v
			}
		}
		return out
	}
	run := func(uid int, script string) {
		t.Helper()
		args := []string{"--net=/proc/self/fd/3"}
		if uid >= 0 {
			args = append(args, "setpriv", "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(uid), "--clear-groups")
		}
		cmd := exec.Command("nsenter", append(args, "bash", "-c", script)...)
		cmd.ExtraFiles = []*os.File{ns.file}
		out, _ := cmd.CombinedOutput() // refused connects fail: the packets are what counts
		t.Logf("uid %d: %s: %s", uid, script, out)
	}
	moved := func(before, after map[string]uint64) map[string]uint64 {
		d := map[string]uint64{}
		for k, v := range after {
			if v != before[k] {
				d[k] = v - before[k]
			}
		}
		return d
	}
	// want is the chain rule the userspace engine says the packet ends at.
	want := func(spec packet.Spec, hasOwner bool, uid uint32) string {
		t.Helper()
		b, err := packet.Build(spec)
		if err != nil {
			t.Fatal(err)
		}
		var pkt packet.Packet
		if err := packet.NewDecoder().Decode(b, &pkt); err != nil {
			t.Fatal(err)
		}
		in := &policies.Input{Pkt: &pkt, Hook: nf.HookOutput, OutIf: "dum0", HasUID: hasOwner, UID: uid, HasGID: hasOwner, GID: uid}
		w, err := expected(plan, in)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	src, dst := netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")
	lo := netip.MustParseAddr("127.0.0.1")
	udp := func(port uint16) packet.Spec {
		return packet.Spec{Src: src, Dst: dst, Proto: packet.ProtoUDP, SrcPort: 40000, DstPort: port}
	}
	for _, c := range []struct {
		uid  int
		port uint16
	}{{-1, 8080}, {65534, 8080}, {1500, 8081}, {-1, 8081}, {65534, 8082}, {-1, 8082}, {65534, 8086}, {-1, 8086}} {
		before := snapshot()
		run(c.uid, fmt.Sprintf("echo x > /dev/udp/%s/%d", dst, c.port))
		got := moved(before, snapshot())
		uid := uint32(max(c.uid, 0))
		w := want(udp(c.port), true, uid)
		if len(got) != 1 || got[w] != 1 {
			t.Errorf("udp to %d as uid %d: counters moved %v, want %s", c.port, uid, got, w)
		}
	}

	// A connect to a closed port: the SYN is root's (no rule: sport is the
	// client's), the RST back is the kernel's own, with no owner.
	before := snapshot()
	run(-1, "exec 3<>/dev/tcp/127.0.0.1/8084")
	got := moved(before, snapshot())
	rst := want(packet.Spec{Src: lo, Dst: lo, Proto: packet.ProtoTCP, SrcPort: 8084, DstPort: 40000, TCPFlags: packet.TCPRst | packet.TCPAck}, false, 0)
	if rst != commentDefault || got[commentDefault] != 2 || len(got) != 1 {
		t.Errorf("connect to a closed port: counters moved %v, want 2 at %s (the RST %s)", got, commentDefault, rst)
	}

	// A connect to the listener: its SYN-ACK comes from a request socket,
	// which the queue sees without an owner: queued, not accepted by the
	// root rule. (The queue rule's bypass accepts it: nothing listens.)
	before = snapshot()
	run(-1, "exec 3<>/dev/tcp/127.0.0.1/8085")
	got = moved(before, snapshot())
	synack := want(packet.Spec{Src: lo, Dst: lo, Proto: packet.ProtoTCP, SrcPort: 8085, DstPort: 40000, TCPFlags: packet.TCPSyn | packet.TCPAck}, false, 0)
	if synack != commentQueue+"listener" || got[synack] != 1 {
		t.Errorf("connect to the listener: counters moved %v, want the SYN-ACK at %s", got, synack)
	}
	if got[commentRule+"listener"] != 0 {
		t.Errorf("the kernel decided a SYN-ACK by its listener's owner: %v", got)
	}
}
