package verdict

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/fwagent/fwagent/internal/pipeline"
	"github.com/fwagent/fwagent/internal/testing/eventually"
	"github.com/fwagent/fwagent/internal/testing/testnet"
	"github.com/fwagent/fwagent/internal/testing/testpolicy"
	"github.com/fwagent/fwagent/rules"
)

const enginePolicy = `version: 1
default:
  input: drop
  output: accept
  forward: drop
rules:
  - name: open
    match: {proto: udp, dport: 40000}
    action: accept
    offload: false  # every packet must reach the queue
  - name: closed-logged
    match: {proto: udp, dport: 40001}
    action: drop
    log: true
  - name: closed
    match: {proto: udp, dport: 40002}
    action: drop
`

// TestEngineReaders runs the whole queue side, with the agent's own table and
// a compiled policy, in a namespace: for each reader and worker setting, UDP
// to the open port arrives, and to the closed ports (one dropped in
// userspace, one repeated with the drop-log mark and dropped by the kernel)
// does not; every packet is decided once.
func TestEngineReaders(t *testing.T) {
	n := testnet.New(t, testnet.WithPrefix("fwe"))
	prog := testpolicy.Compile(t, "engine.yaml", enginePolicy)
	rcfg := rules.DefaultConfig()
	rcfg.Bypass = false // a packet nobody answers must be lost, visibly
	rcfg.Generation = 1
	conn, err := nftables.New(nftables.WithNetNSFd(int(n.Server.Handle())))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := rules.Install(conn, rcfg)
	if err != nil {
		t.Fatalf("install rules: %v", err)
	}
	t.Cleanup(func() { tbl.Remove() })

	var recv [3]atomic.Uint64
	var conns []*net.UDPConn
	for i := range 3 {
		conns = append(conns, n.Server.ListenUDP4(t, 40000+i))
	}
	testnet.ReadEach(t, conns, func(i, _ int) { recv[i].Add(1) })
	send := n.Client.ListenUDP4(t, 0)

	tests := []struct {
		workers  int
		blocking bool
	}{
		{0, false},
		{2, false},
		{0, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("workers=%d/blocking=%v", tt.workers, tt.blocking), func(t *testing.T) {
			for i := range recv {
				recv[i].Store(0)
			}
			shared := pipeline.NewShared(&pipeline.Policy{Program: prog, Gen: 1}, rcfg.Marks, nil)
			e := New(Config{Workers: tt.workers, BlockingRead: tt.blocking, FailOpen: false}, shared)
			ctx, cancel := context.WithCancel(context.Background())
			var wait func()
			if err := n.Server.Do(func() (err error) {
				wait, err = e.Start(ctx)
				return err
			}); err != nil {
				cancel()
				t.Fatalf("Start: %v", err)
			}
			defer func() { cancel(); wait() }()

			state := func() string {
				var snmp []byte
				n.Server.Do(func() (err error) { snmp, err = os.ReadFile("/proc/thread-self/net/snmp"); return err })
				udp := ""
				for _, l := range strings.Split(string(snmp), "\n") {
					if strings.HasPrefix(l, "Udp:") {
						udp += l + "\n"
					}
				}
				return fmt.Sprintf("%s pipeline %+v, batch %+v, engine %+v, received %d %d %d", udp, shared.Stats(), e.BatchStats(), e.Stats(), recv[0].Load(), recv[1].Load(), recv[2].Load())
			}
			const perPort = 500
			payload := []byte("odd")
			for i := range 3 * perPort {
				dst := &net.UDPAddr{IP: n.Server.Addr4().AsSlice(), Port: 40000 + i%3}
				if _, err := send.WriteToUDP(payload[:1+2*(i%2)], dst); err != nil {
					t.Fatal(err)
				}
				// Pace on both ends so neither the queue nor a receiving
				// socket overflows: the test is about answers, not load.
				if i%300 == 299 {
					waitUntil(t, func() bool {
						return shared.Stats().Total() >= uint64(i+1) && recv[0].Load() >= uint64(i+1)/3
					}, state)
				}
			}
			waitUntil(t, func() bool { return shared.Stats().Total() >= 3*perPort && recv[0].Load() >= perPort }, state)
			time.Sleep(50 * time.Millisecond)
			if got := [3]uint64{recv[0].Load(), recv[1].Load(), recv[2].Load()}; got != [3]uint64{perPort, 0, 0} {
				t.Errorf("received per port %v, want [%d 0 0]", got, perPort)
			}
			if st := shared.Stats(); st.Total() != 3*perPort || st.Looped != 0 || st.DecodeErrors != 0 {
				t.Errorf("pipeline decided %d packets (%d looped, %d undecodable), want %d, 0, 0", st.Total(), st.Looped, st.DecodeErrors, 3*perPort)
			}
			if st := e.Stats(); st.ENOBUFS+st.SendErrors+st.ReadErrors != 0 {
				t.Errorf("engine stats %+v", st)
			}
			if b := e.BatchStats(); b.Packets != 3*perPort {
				t.Errorf("batch reader answered %d packets, want %d", b.Packets, 3*perPort)
			}
		})
	}
}

func waitUntil(t *testing.T, cond func() bool, state func() string) {
	t.Helper()
	if !eventually.True(20*time.Second, time.Millisecond, cond) {
		t.Fatalf("timed out; %s", state())
	}
}
