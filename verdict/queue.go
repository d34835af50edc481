package verdict

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/pipeline"
	"github.com/fwagent/fwagent/verdict/nfqmsg"
)

// Config configures the queue side.
type Config struct {
	QueueBase uint16
	Queues    uint16
	// Workers is the number of pipeline workers; 0 decides inline on each
	// queue's reader goroutine.
	Workers int
	// FailOpen: the kernel accepts packets it cannot queue.
	FailOpen bool
	// MaxQueueLen is the kernel queue length per queue (default 4096).
	MaxQueueLen uint32
	// ReadBuffer is the socket receive buffer per queue in bytes (default
	// 16 MiB).
	ReadBuffer int
	// MaxPacketLen is how much of each packet is copied to us (default
	// 0xffff: the whole packet). The agent sets it to the policy's
	// policies.Program.CopyRange and changes it on reload (SetCopyRange).
	MaxPacketLen uint32
	// GSO queues GSO/GRO aggregates whole (NFQA_CFG_F_GSO) instead of
	// having the kernel segment them first.
	GSO    bool
	Logger *slog.Logger
	// IfName resolves an interface index; nil leaves names empty.
	IfName func(index uint32) string
	// Now is the monotonic clock (nanoseconds) stamped on packets; it must
	// be the flow table's clock. Default: time since New.
	Now func() int64
	// Batch is the most packets one read takes (default 64).
	Batch int
	// BlockingRead blocks in recvmmsg instead of parking the reader in the
	// netpoller.
	BlockingRead bool
}

// Engine owns the queues and the workers.
type Engine struct {
	cfg    Config
	shared *pipeline.Shared
	log    *slog.Logger

	readErrors atomic.Uint64
	alive      atomic.Int32 // readers currently bound

	batch nfqmsg.Counters // the readers of all queues

	// readers are set once by Start.
	readers []*nfqmsg.Reader
	// copyRange is the range last asked for (SetCopyRange).
	copyRange atomic.Uint32
	// ender ends the local sockets of connections rejected mid-stream.
	ender *socketEnder
}

// New makes an engine on shared pipeline state.
func New(cfg Config, shared *pipeline.Shared) *Engine {
	if cfg.Queues == 0 {
		cfg.Queues = 1
	}
	if cfg.MaxQueueLen == 0 {
		cfg.MaxQueueLen = 4096
	}
	if cfg.MaxPacketLen == 0 {
		cfg.MaxPacketLen = 0xffff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		start := time.Now()
		cfg.Now = func() int64 { return int64(time.Since(start)) }
	}
	return &Engine{cfg: cfg, shared: shared, log: cfg.Logger, ender: newSocketEnder(cfg.Logger)}
}

// Stats are the engine's own counters.
type Stats struct {
	ENOBUFS     uint64
	SendErrors  uint64
	ReadErrors  uint64
	ReadersLive int
	// SocketsEnded counts local sockets of connections rejected mid-stream
	// on input that were ended; SocketEndFailed those that could not be
	// (gone already, or shed when too many waited).
	SocketsEnded    uint64
	SocketEndFailed uint64
}

// Stats is a snapshot of the engine's counters.
func (e *Engine) Stats() Stats {
	b := e.batch.Snapshot()
	return Stats{
		ENOBUFS:     b.ENOBUFS,
		SendErrors:  b.SendErrors,
		ReadErrors:  e.readErrors.Load() + b.ReadErrors,
		ReadersLive: int(e.alive.Load()),

		SocketsEnded:    e.ender.ended.Load(),
		SocketEndFailed: e.ender.failed.Load() + e.ender.shed.Load(),
	}
}

// Start binds every queue and starts the readers and workers. It returns once
// all queues are bound (or the first bind error); the readers run until ctx
// is cancelled. Wait blocks until they have stopped.
func (e *Engine) Start(ctx context.Context) (wait func(), err error) {
	return e.startBatch(ctx)
}

// nfHook maps the netfilter hook number in a queued packet to the policy's
// hook.
func nfHook(h uint8) (nf.Hook, bool) {
	switch h {
	case unix.NF_INET_LOCAL_IN:
		return nf.HookInput, true
	case unix.NF_INET_FORWARD:
		return nf.HookForward, true
	case unix.NF_INET_LOCAL_OUT:
		return nf.HookOutput, true
	}
	return 0, false
}

// flowHash spreads packets over workers so that both directions of a flow
// land on the same one: it combines (address, port) of each end
// commutatively. It reads the fixed headers only, so it is cheap and needs no
// decoding; anything it cannot read hashes by what it could.
func flowHash(b []byte) uint32 {
	var a, c []byte
	var l4 int
	var proto byte
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		a, c = b[12:16], b[16:20]
		proto = b[9]
		// Non-first fragments have no ports; first fragments do, but their
		// followers would then hash elsewhere, so fragments use addresses.
		if b[6]&0x3f == 0 && b[7] == 0 {
			l4 = int(b[0]&0x0f) * 4
		}
	case len(b) >= 40 && b[0]>>4 == 6:
		a, c = b[8:24], b[24:40]
		proto = b[6]
		l4 = 40
	default:
		return 0
	}
	ha, hc := fnv(2166136261, a), fnv(2166136261, c)
	if l4 > 0 && (proto == 6 || proto == 17 || proto == 132) && len(b) >= l4+4 {
		ha = fnv(ha, b[l4:l4+2])
		hc = fnv(hc, b[l4+2:l4+4])
	}
	return ha + hc
}

func fnv(h uint32, b []byte) uint32 {
	for _, x := range b {
		h ^= uint32(x)
		h *= 16777619
	}
	return h
}
