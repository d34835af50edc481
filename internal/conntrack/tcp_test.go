package conntrack

import (
	"slices"
	"testing"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
)

const (
	fS = packet.TCPSyn
	fA = packet.TCPAck
	fF = packet.TCPFin
	fR = packet.TCPRst
	fP = packet.TCPPsh
	fU = packet.TCPUrg
)

// seg is one TCP segment of a scripted exchange and what Track must answer.
type seg struct {
	server   bool // sent by the server (the client sends the first SYN)
	flags    uint8
	seq, ack uint32
	payload  int
	hint     bool
	want     nf.State
	wantTCP  TCPState
	reply    bool
}

var (
	// client ISN 1000, server ISN 5000
	handshake = []seg{
		{flags: fS, seq: 1000, want: nf.StateNew, wantTCP: TCPSynSent},
		{server: true, flags: fS | fA, seq: 5000, ack: 1001, want: nf.StateEstablished, wantTCP: TCPSynRecv, reply: true},
		{flags: fA, seq: 1001, ack: 5001, want: nf.StateEstablished, wantTCP: TCPEstablished},
	}
	established = nf.StateEstablished
)

func TestTCPSequences(t *testing.T) {
	tests := []struct {
		name string
		segs []seg
	}{
		{"handshake, data, client closes", slices.Concat(handshake, []seg{
			{flags: fP | fA, seq: 1001, ack: 5001, payload: 100, want: established, wantTCP: TCPEstablished},
			{server: true, flags: fA, seq: 5001, ack: 1101, want: established, wantTCP: TCPEstablished, reply: true},
			{flags: fF | fA, seq: 1101, ack: 5001, want: established, wantTCP: TCPFinWait},
			{server: true, flags: fA, seq: 5001, ack: 1102, want: established, wantTCP: TCPCloseWait, reply: true},
			{server: true, flags: fP | fA, seq: 5001, ack: 1102, payload: 10, want: established, wantTCP: TCPCloseWait, reply: true},
			{server: true, flags: fF | fA, seq: 5011, ack: 1102, want: established, wantTCP: TCPLastAck, reply: true},
			{flags: fA, seq: 1102, ack: 5012, want: established, wantTCP: TCPTimeWait},
		})},
		{"server closes first", slices.Concat(handshake, []seg{
			{server: true, flags: fF | fA, seq: 5001, ack: 1001, want: established, wantTCP: TCPFinWait, reply: true},
			{flags: fA, seq: 1001, ack: 5002, want: established, wantTCP: TCPCloseWait},
			{flags: fF | fA, seq: 1001, ack: 5002, want: established, wantTCP: TCPLastAck},
			{server: true, flags: fA, seq: 5002, ack: 1002, want: established, wantTCP: TCPTimeWait, reply: true},
		})},
		{"simultaneous close", slices.Concat(handshake, []seg{
			{flags: fF | fA, seq: 1001, ack: 5001, want: established, wantTCP: TCPFinWait},
			// sent before the client's FIN arrived: acknowledges nothing new
			{server: true, flags: fF | fA, seq: 5001, ack: 1001, want: established, wantTCP: TCPLastAck, reply: true},
			{flags: fA, seq: 1002, ack: 5002, want: established, wantTCP: TCPLastAck},
			{server: true, flags: fA, seq: 5002, ack: 1002, want: established, wantTCP: TCPTimeWait, reply: true},
		})},
		{"FIN overtakes data", slices.Concat(handshake, []seg{
			{flags: fF | fA, seq: 1101, ack: 5001, want: established, wantTCP: TCPFinWait},
			// acknowledges data before the FIN only: the FIN is not acked
			{server: true, flags: fA, seq: 5001, ack: 1001, want: established, wantTCP: TCPFinWait, reply: true},
			// the late data segment is still allowed
			{flags: fP | fA, seq: 1001, ack: 5001, payload: 100, want: established, wantTCP: TCPFinWait},
			{server: true, flags: fA, seq: 5001, ack: 1102, want: established, wantTCP: TCPCloseWait, reply: true},
			{server: true, flags: fF | fA, seq: 5001, ack: 1102, want: established, wantTCP: TCPLastAck, reply: true},
			{flags: fA, seq: 1102, ack: 5002, want: established, wantTCP: TCPTimeWait},
			// retransmissions after time-wait are accepted
			{server: true, flags: fF | fA, seq: 5001, ack: 1102, want: established, wantTCP: TCPTimeWait, reply: true},
			{flags: fA, seq: 1102, ack: 5002, want: established, wantTCP: TCPTimeWait},
		})},
		{"connection refused", []seg{
			{flags: fS, seq: 1000, want: nf.StateNew, wantTCP: TCPSynSent},
			{flags: fS, seq: 1000, want: nf.StateNew, wantTCP: TCPSynSent}, // retransmission
			{server: true, flags: fR | fA, ack: 1001, want: established, wantTCP: TCPClose, reply: true},
			{flags: fA, seq: 1001, want: established, wantTCP: TCPClose},
			// a new connection on the same tuple starts over
			{flags: fS, seq: 9000, want: nf.StateNew, wantTCP: TCPSynSent},
			{server: true, flags: fS | fA, seq: 7000, ack: 9001, want: established, wantTCP: TCPSynRecv, reply: true},
		}},
		{"reset mid-stream", slices.Concat(handshake, []seg{
			{flags: fR, seq: 1001, want: established, wantTCP: TCPClose},
			{server: true, flags: fA, seq: 5001, ack: 1001, want: established, wantTCP: TCPClose, reply: true},
		})},
		{"server reopens after time-wait", slices.Concat(handshake, []seg{
			{flags: fF | fA, seq: 1001, ack: 5001, want: established, wantTCP: TCPFinWait},
			{server: true, flags: fF | fA, seq: 5001, ack: 1002, want: established, wantTCP: TCPLastAck, reply: true},
			{flags: fA, seq: 1002, ack: 5002, want: established, wantTCP: TCPTimeWait},
			// the server now originates: its SYN is new and not a reply
			{server: true, flags: fS, seq: 8000, want: nf.StateNew, wantTCP: TCPSynSent},
			{flags: fS | fA, seq: 3000, ack: 8001, want: established, wantTCP: TCPSynRecv, reply: true},
		})},
		{"simultaneous open", []seg{
			{flags: fS, seq: 1000, want: nf.StateNew, wantTCP: TCPSynSent},
			{server: true, flags: fS, seq: 5000, want: established, wantTCP: TCPSynSent2, reply: true},
			{flags: fS | fA, seq: 1000, ack: 5001, want: established, wantTCP: TCPSynRecv},
			{server: true, flags: fS | fA, seq: 5000, ack: 1001, want: established, wantTCP: TCPSynRecv, reply: true},
			{flags: fA, seq: 1001, ack: 5001, want: established, wantTCP: TCPEstablished},
		}},
		{"invalid segments inside a flow", []seg{
			{flags: fS, seq: 1000, want: nf.StateNew, wantTCP: TCPSynSent},
			{flags: fA, seq: 1001, want: nf.StateInvalid, wantTCP: TCPSynSent},
			{flags: fS | fA, seq: 1000, want: nf.StateInvalid, wantTCP: TCPSynSent},
			{flags: fF | fA, seq: 1001, want: nf.StateInvalid, wantTCP: TCPSynSent},
			{server: true, flags: fA, seq: 5001, ack: 1001, want: nf.StateInvalid, wantTCP: TCPSynSent, reply: true},
			{server: true, flags: fS | fA, seq: 5000, ack: 1001, want: established, wantTCP: TCPSynRecv, reply: true},
			{flags: fS | fF, seq: 1001, want: nf.StateInvalid, wantTCP: TCPSynRecv},
			{flags: fA, seq: 1001, ack: 5001, want: established, wantTCP: TCPEstablished},
			{server: true, flags: fS, seq: 5000, want: nf.StateInvalid, wantTCP: TCPEstablished, reply: true},
			{flags: fS | fA, seq: 1000, want: nf.StateInvalid, wantTCP: TCPEstablished},
			{flags: 0, seq: 1001, want: nf.StateInvalid, wantTCP: TCPEstablished},
			{flags: fF | fP | fU, seq: 1001, want: nf.StateInvalid, wantTCP: TCPEstablished},
			{flags: fF, seq: 1001, want: nf.StateInvalid, wantTCP: TCPEstablished},
			// a retransmitted SYN from the client is ignored, as in the kernel
			{flags: fS, seq: 1000, want: established, wantTCP: TCPEstablished},
			// and so is a retransmitted SYN-ACK from the server
			{server: true, flags: fS | fA, seq: 5000, ack: 1001, want: established, wantTCP: TCPEstablished, reply: true},
		}},
		{"pickup: established hint on a mid-stream packet", []seg{
			{server: true, flags: fA, seq: 5001, ack: 1001, payload: 20, hint: true, want: established, wantTCP: TCPEstablished},
			{flags: fA, seq: 1001, ack: 5021, want: established, wantTCP: TCPEstablished, reply: true},
			{server: true, flags: fF | fA, seq: 5021, ack: 1001, want: established, wantTCP: TCPFinWait},
		}},
		{"pickup: hint resynchronises a flow the kernel knows better", []seg{
			{flags: fS, seq: 1000, want: nf.StateNew, wantTCP: TCPSynSent},
			{flags: fA, seq: 1001, ack: 5001, hint: true, want: established, wantTCP: TCPEstablished},
		}},
		{"pickup: FIN with hint starts closing", []seg{
			{flags: fF | fA, seq: 1001, ack: 5001, hint: true, want: established, wantTCP: TCPFinWait},
			{server: true, flags: fA, seq: 5001, ack: 1002, want: established, wantTCP: TCPCloseWait, reply: true},
		}},
	}
	for _, v6 := range []bool{false, true} {
		client, server := "10.0.0.9", "10.0.0.2" // client sorts after server: exercises the swap
		if v6 {
			client, server = "2001:db8::9", "2001:db8::2"
		}
		for _, tc := range tests {
			name := tc.name
			if v6 {
				name += "/ipv6"
			}
			t.Run(name, func(t *testing.T) {
				tb, _ := newTestTable(t, Config{MaxFlows: 64, Shards: 4})
				var id FlowID
				for i, sg := range tc.segs {
					p := tcpPkt(client, server, 40000, 80, sg.flags, sg.seq, sg.ack, sg.payload)
					if sg.server {
						p = tcpPkt(server, client, 80, 40000, sg.flags, sg.seq, sg.ack, sg.payload)
					}
					r := tb.Track(p, p.Length, sg.hint)
					if r.State != sg.want || r.Reply != sg.reply {
						t.Fatalf("segment %d (%+v): got state %v reply %v, want %v reply %v", i, sg, r.State, r.Reply, sg.want, sg.reply)
					}
					if r.State != nf.StateInvalid {
						if !r.Flow.Valid() {
							t.Fatalf("segment %d: no flow handle", i)
						}
						id = r.Flow
					}
					fi, ok := tb.Lookup(id)
					if !ok {
						t.Fatalf("segment %d: flow handle stale", i)
					}
					if fi.TCP != sg.wantTCP {
						t.Fatalf("segment %d (%+v): TCP state %v, want %v", i, sg, fi.TCP, sg.wantTCP)
					}
				}
				if n := tb.Len(); n != 1 {
					t.Fatalf("%d flows, want 1", n)
				}
				checkInvariants(t, tb)
			})
		}
	}
}

func TestTCPInvalidFirstPackets(t *testing.T) {
	tests := []struct {
		name  string
		flags uint8
		hint  bool
		want  nf.State
		flows int
	}{
		{"ACK", fA, false, nf.StateInvalid, 0},
		{"data", fP | fA, false, nf.StateInvalid, 0},
		{"FIN-ACK", fF | fA, false, nf.StateInvalid, 0},
		{"SYN-ACK", fS | fA, false, nf.StateInvalid, 0},
		{"RST", fR, false, nf.StateInvalid, 0},
		{"RST-ACK", fR | fA, false, nf.StateInvalid, 0},
		{"NULL scan", 0, false, nf.StateInvalid, 0},
		{"Xmas scan", fF | fP | fU, false, nf.StateInvalid, 0},
		{"SYN-FIN", fS | fF, false, nf.StateInvalid, 0},
		{"SYN-RST", fS | fR, false, nf.StateInvalid, 0},
		{"FIN alone", fF, false, nf.StateInvalid, 0},
		{"bad flags even with hint", fS | fF, true, nf.StateInvalid, 0},
		{"RST with hint passes, untracked", fR, true, nf.StateEstablished, 0},
		{"SYN-ACK with hint is picked up", fS | fA, true, nf.StateEstablished, 1},
		{"ECN SYN is a SYN", fS | packet.TCPEce | packet.TCPCwr, false, nf.StateNew, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb, _ := newTestTable(t, Config{MaxFlows: 16})
			p := tcpPkt("192.0.2.1", "192.0.2.2", 1234, 80, tc.flags, 1, 1, 0)
			r := tb.Track(p, p.Length, tc.hint)
			if r.State != tc.want {
				t.Fatalf("state %v, want %v", r.State, tc.want)
			}
			if n := tb.Len(); n != tc.flows {
				t.Fatalf("%d flows, want %d", n, tc.flows)
			}
			if got, want := tb.Stats().Invalid, uint64(0); tc.want == nf.StateInvalid {
				if got != 1 {
					t.Fatalf("Stats.Invalid = %d, want 1", got)
				}
			} else if got != want {
				t.Fatalf("Stats.Invalid = %d, want 0", got)
			}
		})
	}
}

func TestTCPInvalidLeavesFlowUntouched(t *testing.T) {
	tb, clk := newTestTable(t, Config{MaxFlows: 16})
	syn := tcpPkt("192.0.2.1", "192.0.2.2", 1234, 80, fS, 1, 0, 0)
	r := tb.Track(syn, 60, false)
	before, _ := tb.Lookup(r.Flow)
	clk.Advance(1e9)
	bad := tcpPkt("192.0.2.1", "192.0.2.2", 1234, 80, fA, 2, 0, 0)
	if got := tb.Track(bad, 1500, false); got.State != nf.StateInvalid {
		t.Fatalf("ACK in syn_sent: %v, want invalid", got.State)
	}
	after, _ := tb.Lookup(r.Flow)
	if after.Packets != before.Packets || after.Bytes != before.Bytes || after.Deadline != before.Deadline {
		t.Fatalf("invalid packet changed the flow: before %+v after %+v", before, after)
	}
}
