package replay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/testing/eventually"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// TestTcpdumpSnapLengthKernel: traffic between two namespaces captured by
// tcpdump twice at once, whole and with -s 96, decides every packet the same
// way through an L3/L4 policy. Both captures see the same packets in the
// same order (one interface, one filter), so they compare frame by frame.
func TestTcpdumpSnapLengthKernel(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireCommands(t, "tcpdump")
	n := testnet.New(t, testnet.WithPrefix("fwr"))
	srv, cli := n.Server, n.Client
	ifc := srv.Ifaces()[0].Name
	// Every UDP datagram below gets its ICMP error: no rate limit.
	for _, k := range []string{"net/ipv4/icmp_ratelimit", "net/ipv6/icmp/ratelimit"} {
		if err := srv.WriteSysctl(k, "0"); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// Neighbour discovery and MLD come and go on their own timers; the
	// traffic below is what is compared.
	const filter = "tcp or udp or icmp or (icmp6 and ip6[40] < 128)"
	start := func(path, snap string) *exec.Cmd {
		// A large buffer (-B, KiB) so that a tcpdump starved of CPU on a busy
		// machine lags behind instead of losing packets.
		cmd := srv.Command(ctx, "tcpdump", "-i", ifc, "-n", "-U", "--immediate-mode", "-B", "16384", "-s", snap, "-w", path, filter)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				go io.Copy(io.Discard, stderr)
				return cmd
			}
		}
		t.Fatalf("tcpdump -s %s did not start", snap)
		return nil
	}
	wholePath, cutPath := filepath.Join(dir, "whole.pcap"), filepath.Join(dir, "cut.pcap")
	whole := start(wholePath, "262144")
	cut := start(cutPath, "96")

	// TCP to a listener (both families) with data both ways, UDP of many
	// sizes to a closed port (ICMP port unreachable comes back, quoting it).
	var lns []net.Listener
	for _, a := range []netip.Addr{srv.Addr4(), srv.Addr6()} {
		if err := srv.Do(func() error {
			ln, err := net.Listen("tcp", netip.AddrPortFrom(a, 8080).String())
			lns = append(lns, ln)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ln := range lns {
		testnet.Serve(ln, func(c net.Conn) {
			buf := make([]byte, 4096)
			if _, err := c.Read(buf); err == nil {
				c.Write(bytes.Repeat([]byte{'r'}, 3000))
			}
		})
		defer ln.Close()
	}
	for i := range 6 {
		for _, a := range []netip.Addr{srv.Addr4(), srv.Addr6()} {
			if err := cli.Do(func() error {
				c, err := net.DialTimeout("tcp", netip.AddrPortFrom(a, 8080).String(), 5*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write(bytes.Repeat([]byte{'q'}, 100+i*250)); err != nil {
					return err
				}
				_, err = io.ReadAll(c)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if err := cli.Do(func() error {
				c, err := net.Dial("udp", netip.AddrPortFrom(a, 5353).String())
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.Write(bytes.Repeat([]byte{'u'}, 40+i*270))
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Stop once both captures hold the same packets and stay so: tcpdump
	// drops what it has not read yet when it is stopped.
	last, stable := -1, 0
	eventually.True(60*time.Second, 100*time.Millisecond, func() bool {
		a, b := records(wholePath), records(cutPath)
		if a == b && a == last && a > 0 {
			stable++
		} else {
			stable = 0
		}
		last = a
		return stable >= 5
	})
	for _, cmd := range []*exec.Cmd{whole, cut} {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
	}

	const policy = `version: 1
default: drop
rules:
  - name: established
    match: {state: [established, related]}
    action: accept
  - name: web
    match: {proto: tcp, dport: 8080, tcp_flags: S/SA}
    action: accept
  - name: big-udp
    match: {proto: udp, length: 1000-65535}
    action: drop
  - name: udp
    match: {proto: udp, dport: 5353}
    action: accept
`
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	o := Options{Hook: nf.HookInput}
	w, _ := run(t, programFrom(t, policy), read(wholePath), o)
	c, sum := run(t, programFrom(t, policy), read(cutPath), o)
	if len(w) != len(c) || len(w) < 100 {
		t.Fatalf("%d packets whole, %d cut", len(w), len(c))
	}
	// An ICMPv6 error quotes the packet it reports from byte 48 on: 82
	// bytes of IPv6 (-s 96 on Ethernet) cut the quoted destination
	// address, so the error cannot be matched to its flow and is decided
	// as a new packet (docs/policy.md says so). Every other packet, ICMP
	// errors for IPv4 included, is decided exactly as whole.
	data := frames(t, wholePath)
	rules := map[string]int{}
	quotedCut := 0
	for i := range w {
		cc := c[i]
		cc.Cut = false
		d := data[i].data
		if d[0]>>4 == 6 && d[6] == 58 && d[40] < 128 && len(d) > 96-14 {
			quotedCut++
			if w[i].Rule != "established" || cc.Rule != "default" {
				t.Errorf("ICMPv6 error %d: whole %+v, cut %+v; want related (established), then new (default)", w[i].N, w[i], cc)
			}
			continue
		}
		if w[i] != cc {
			t.Errorf("packet %d: whole %+v, cut %+v", w[i].N, w[i], c[i])
		}
		rules[w[i].Rule]++
	}
	if quotedCut != 6 {
		t.Errorf("%d ICMPv6 errors, want 6", quotedCut)
	}
	if sum.Cut < len(w)/4 || rules["established"] == 0 || rules["web"] == 0 || rules["big-udp"] == 0 || rules["udp"] == 0 {
		t.Errorf("too weak: %d of %d cut, rules %v", sum.Cut, len(w), rules)
	}
	t.Logf("%d packets, %d cut by tcpdump -s 96; rules %v", len(w), sum.Cut, rules)
}

// records counts the whole records of a pcap file being written.
func records(path string) int {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 24 {
		return 0
	}
	n := 0
	for at := 24; at+16 <= len(b); n++ {
		l := int(binary.LittleEndian.Uint32(b[at+8:]))
		if at+16+l > len(b) {
			break
		}
		at += 16 + l
	}
	return n
}
