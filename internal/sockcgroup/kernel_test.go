package sockcgroup

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// inCgroup starts bash -c script inside ns's network namespace (nsenter,
// which leaves the mounts alone) as a process of cgroup cg.
func inCgroup(t *testing.T, ns *testnet.NS, cg testnet.Cgroup, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), "nsenter", "--net="+ns.Path(), "bash", "-c", script)
	defer testnet.IntoCgroup(t, cmd, cg.Dir())()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

func TestKernelFinder(t *testing.T) {
	testnet.RequireCommands(t, "nsenter", "bash")
	n := testnet.New(t)
	cg := testnet.NewCgroup(t, "app.slice", "web.service")
	var f *Finder
	var ln net.Listener
	var uc net.PacketConn
	err := n.Client.Do(func() error {
		var err error
		if f, err = Open(cg.Mount, nil); err != nil {
			return err
		}
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		uc, err = net.ListenPacket("udp", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	defer ln.Close()
	defer uc.Close()
	lport := ln.Addr().(*net.TCPAddr).Port
	uport := uc.LocalAddr().(*net.UDPAddr).Port

	inCgroup(t, n.Client, cg, fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; exec 4<>/dev/udp/127.0.0.1/%d; echo x >&4; read -t 20 <&3", lport, uport))
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer := netip.MustParseAddrPort(conn.RemoteAddr().String())
	srv := netip.MustParseAddrPort(conn.LocalAddr().String())
	buf := make([]byte, 16)
	uc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, from, err := uc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	upeer := netip.MustParseAddrPort(from.String())
	usrv := netip.MustParseAddrPort(uc.LocalAddr().String())

	wantID, err := ID(cg.Mount, cg.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		s    Socket
		want string
	}{
		{"child's TCP socket", Socket{Proto: packet.ProtoTCP, Local: peer, Remote: srv}, cg.Path},
		{"accepted socket (the test's cgroup)", Socket{Proto: packet.ProtoTCP, Local: srv, Remote: peer}, ""},
		{"child's UDP socket", Socket{Proto: packet.ProtoUDP, Local: upeer, Remote: usrv}, cg.Path},
	} {
		id, err := f.SocketCgroup(tc.s)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		p, err := f.Path(id)
		if err != nil {
			t.Errorf("%s: path of %d: %v", tc.name, id, err)
			continue
		}
		if tc.want == cg.Path && id != wantID {
			t.Errorf("%s: id %d, want the cgroup directory's inode %d", tc.name, id, wantID)
		}
		if tc.want != "" && p != tc.want {
			t.Errorf("%s: path %q, want %q", tc.name, p, tc.want)
		}
	}
	// Through the policy interface: the child's outgoing packet and the
	// answer coming in to it both belong to the child's socket.
	out := &packet.Packet{Family: packet.IPv4, Proto: packet.ProtoTCP, HasL4: true, Src: peer.Addr(), SrcPort: peer.Port(), Dst: srv.Addr(), DstPort: srv.Port()}
	if p, ok := f.Cgroup(out, nf.HookOutput); !ok || p != cg.Path {
		t.Errorf("output packet: %q %v, want %q", p, ok, cg.Path)
	}
	in := &packet.Packet{Family: packet.IPv4, Proto: packet.ProtoTCP, HasL4: true, Src: srv.Addr(), SrcPort: srv.Port(), Dst: peer.Addr(), DstPort: peer.Port()}
	if p, ok := f.Cgroup(in, nf.HookInput); !ok || p != cg.Path {
		t.Errorf("input packet: %q %v, want %q", p, ok, cg.Path)
	}
	// A listener answers for a SYN to it (nft's socket expression does the
	// same lookup).
	syn := &packet.Packet{Family: packet.IPv4, Proto: packet.ProtoTCP, HasL4: true, Src: netip.MustParseAddr("127.0.0.1"), SrcPort: 1, Dst: srv.Addr(), DstPort: srv.Port()}
	if _, ok := f.Cgroup(syn, nf.HookInput); !ok {
		t.Error("SYN to the listener: no cgroup")
	}
	nobody := &packet.Packet{Family: packet.IPv4, Proto: packet.ProtoTCP, HasL4: true, Src: srv.Addr(), SrcPort: 1, Dst: peer.Addr(), DstPort: 2}
	if p, ok := f.Cgroup(nobody, nf.HookOutput); ok {
		t.Errorf("no socket: got %q", p)
	}
	if p, ok := f.Cgroup(out, nf.HookForward); ok {
		t.Errorf("forwarded packet: got %q", p)
	}
}

func TestResolve(t *testing.T) {
	cg := testnet.NewCgroup(t, "app.slice", "web.service")
	top := strings.SplitN(cg.Path, "/", 2)[0]
	if err := os.Mkdir(filepath.Join(cg.Mount, top, "app.slice", "db.scope"), 0o755); err != nil {
		t.Fatal(err)
	}
	want, err := ID(cg.Mount, cg.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pattern string
		n       int
	}{
		{cg.Path, 1},
		{top + "/app.slice/*.service", 1},
		{top + "/app.slice/*", 2},
		{top + "/*/web.service", 1},
		{top + "/app.slice/nope.service", 0},
	} {
		ids, err := Resolve(cg.Mount, tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != tc.n || tc.n == 1 && ids[0] != want {
			t.Errorf("Resolve(%q) = %v, want %d id(s) (web.service is %d)", tc.pattern, ids, tc.n, want)
		}
	}
}

// BenchmarkFinderCgroup is the cost a cgroup rule adds to an uncached
// packet: one sock_diag lookup of an established TCP socket and a cached
// path.
func BenchmarkFinderCgroup(b *testing.B) {
	n := testnet.New(b)
	mount, err := HostMount()
	if err != nil {
		b.Skip(err)
	}
	var f *Finder
	var ln net.Listener
	var c net.Conn
	err = n.Client.Do(func() error {
		var err error
		if f, err = Open(mount, nil); err != nil {
			return err
		}
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		c, err = net.Dial("tcp", ln.Addr().String())
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	defer ln.Close()
	defer c.Close()
	local, remote := netip.MustParseAddrPort(c.LocalAddr().String()), netip.MustParseAddrPort(c.RemoteAddr().String())
	pkt := &packet.Packet{Family: packet.IPv4, Proto: packet.ProtoTCP, HasL4: true, Src: local.Addr(), SrcPort: local.Port(), Dst: remote.Addr(), DstPort: remote.Port()}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := f.Cgroup(pkt, nf.HookOutput); !ok {
			b.Fatal("not found")
		}
	}
}
