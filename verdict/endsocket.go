package verdict

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/pipeline"
	"github.com/fwagent/fwagent/internal/sockdiag"
)

// A reject of a mid-stream TCP segment on the input hook resets the remote
// sender (nft's `reject with tcp reset`), but the local socket it was
// heading to would stay open, waiting for a peer that is gone: a client
// rejected mid-stream could hold a server's connection slots for minutes.
// socketEnder ends such local sockets through sock_diag (internal/sockdiag),
// off the reader's goroutine: the verdict never waits for it.

// endQueue bounds the sockets waiting to be ended; past it they are
// counted and left to the server's own timeouts.
const endQueue = 256

// endHeader is how much of a packet the ender keeps: the IP header with
// options or extension headers and the TCP header.
const endHeader = 256

type socketEnder struct {
	log  *slog.Logger
	once sync.Once
	ch   chan []byte

	ended, failed, shed atomic.Uint64
}

func newSocketEnder(log *slog.Logger) *socketEnder {
	return &socketEnder{log: log, ch: make(chan []byte, endQueue)}
}

// wants reports whether the result is a reject that leaves a local socket
// behind: a TCP reject on the input hook (the pipeline rejects nothing
// else with a reset).
func wantsEnd(r *pipeline.Result, h nf.Hook) bool {
	return h == nf.HookInput && r.Verdict.Kind == pipeline.Repeat &&
		(r.Verdict.Action == nf.MarkReject || r.Verdict.Action == nf.MarkRejectLog)
}

// submit queues the local socket of the rejected packet data to be ended.
// It copies what it needs; data may be reused when it returns.
func (s *socketEnder) submit(data []byte) {
	s.once.Do(func() { go s.run() })
	select {
	case s.ch <- append([]byte(nil), data[:min(len(data), endHeader)]...):
	default:
		s.shed.Add(1)
	}
}

// run ends sockets for the life of the process, in the network namespace
// the agent started in (the one its queues filter).
func (s *socketEnder) run() {
	c, err := sockdiag.Dial()
	if err != nil {
		s.log.Warn("cannot end local sockets of rejected connections", "err", err)
		for range s.ch {
			s.failed.Add(1)
		}
		return
	}
	dec := packet.NewDecoder()
	var p packet.Packet
	warned := false
	for b := range s.ch {
		if dec.DecodeHeaders(b, &p) != nil || p.Proto != packet.ProtoTCP || !p.HasL4 {
			continue
		}
		// A SYN has no connected socket yet; a reset ends its own.
		if p.TCPFlags&(packet.TCPSyn|packet.TCPRst) != 0 {
			continue
		}
		local := netip.AddrPortFrom(p.Dst, p.DstPort)
		remote := netip.AddrPortFrom(p.Src, p.SrcPort)
		if err := c.Destroy(local, remote); err != nil {
			s.failed.Add(1)
			if !warned {
				// Often benign (the socket closed already); said
				// once, then counted.
				s.log.Info("could not end the local socket of a rejected connection", "local", local, "remote", remote, "err", err)
				warned = true
			}
			continue
		}
		s.ended.Add(1)
	}
}
