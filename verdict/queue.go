package verdict

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
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
	// policies.Program.CopyRange and changes it on reload (SetCopyRange);
	// ReaderNfqueue always copies whole packets.
	MaxPacketLen uint32
	// GSO queues GSO/GRO aggregates whole (NFQA_CFG_F_GSO) instead of
	// having the kernel segment them first (ReaderBatch).
	GSO    bool
	Logger *slog.Logger
	// IfName resolves an interface index; nil leaves names empty.
	IfName func(index uint32) string
	// Now is the monotonic clock (nanoseconds) stamped on packets; it must
	// be the flow table's clock. Default: time since New.
	Now func() int64

	// --- batched reader (verdict/mmsg.go) ---

	// Reader picks the queue reader: ReaderBatch (recvmmsg, one verdict
	// write per read) or ReaderNfqueue (go-nfqueue's loop); empty means
	// DefaultReader.
	Reader string
	// Batch is the most packets one read takes (ReaderBatch; default 64).
	Batch int
	// BlockingRead blocks in recvmmsg instead of parking the reader in the
	// netpoller (ReaderBatch).
	BlockingRead bool
}

// Engine owns the queues and the workers.
type Engine struct {
	cfg    Config
	shared *pipeline.Shared
	log    *slog.Logger

	enobufs    atomic.Uint64
	sendErrors atomic.Uint64
	readErrors atomic.Uint64
	alive      atomic.Int32 // readers currently bound

	batch nfqmsg.Counters // ReaderBatch readers, all queues

	// readers are the ReaderBatch readers, set once by Start.
	readers []*nfqmsg.Reader
	// copyRange is the range last asked for (SetCopyRange).
	copyRange atomic.Uint32
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
	if cfg.Reader == "" {
		cfg.Reader = DefaultReader
	}
	if cfg.Reader == ReaderNfqueue {
		// go-nfqueue's loop cannot change the range of a bound queue.
		cfg.MaxPacketLen = 0xffff
		if cfg.ReadBuffer == 0 {
			cfg.ReadBuffer = 16 << 20
		}
	}
	if cfg.Now == nil {
		start := time.Now()
		cfg.Now = func() int64 { return int64(time.Since(start)) }
	}
	return &Engine{cfg: cfg, shared: shared, log: cfg.Logger}
}

// Stats are the engine's own counters.
type Stats struct {
	ENOBUFS     uint64
	SendErrors  uint64
	ReadErrors  uint64
	ReadersLive int
}

// Stats is a snapshot of the engine's counters.
func (e *Engine) Stats() Stats {
	b := e.batch.Snapshot() // zero unless Reader is ReaderBatch
	return Stats{
		ENOBUFS:     e.enobufs.Load() + b.ENOBUFS,
		SendErrors:  e.sendErrors.Load() + b.SendErrors,
		ReadErrors:  e.readErrors.Load() + b.ReadErrors,
		ReadersLive: int(e.alive.Load()),
	}
}

// job is one queued packet on its way to a worker. It is passed by value so
// the hand-off allocates nothing.
type job struct {
	q       *nfqueue.Nfqueue
	id      uint32
	payload []byte
	meta    pipeline.Meta
}

// Start binds every queue and starts the readers and workers. It returns once
// all queues are bound (or the first bind error); the readers run until ctx
// is cancelled. Wait blocks until they have stopped.
func (e *Engine) Start(ctx context.Context) (wait func(), err error) {
	switch e.cfg.Reader {
	case ReaderBatch:
		return e.startBatch(ctx)
	case ReaderNfqueue:
	default:
		return nil, fmt.Errorf("verdict: unknown reader %q (want %q or %q)", e.cfg.Reader, ReaderBatch, ReaderNfqueue)
	}
	var wg sync.WaitGroup
	var workers []chan job
	if e.cfg.Workers > 0 {
		workers = make([]chan job, e.cfg.Workers)
		for i := range workers {
			ch := make(chan job, 1024)
			workers[i] = ch
			w := e.shared.NewWorker()
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range ch {
					e.handle(w, j)
				}
			}()
		}
	}
	var queues []*nfqueue.Nfqueue
	closeAll := func() {
		for _, q := range queues {
			q.Close()
		}
		for _, ch := range workers {
			close(ch)
		}
	}
	for i := uint16(0); i < e.cfg.Queues; i++ {
		num := e.cfg.QueueBase + i
		q, err := e.open(ctx, num, workers)
		if err != nil {
			closeAll()
			wg.Wait()
			return nil, err
		}
		queues = append(queues, q)
	}
	done := make(chan struct{})
	go func() {
		<-ctx.Done()
		// Closing the sockets unbinds the queues; packets still in the
		// kernel queue are then handled per fail-open/closed.
		closeAll()
		wg.Wait()
		close(done)
	}()
	return func() { <-done }, nil
}

func (e *Engine) open(ctx context.Context, num uint16, workers []chan job) (*nfqueue.Nfqueue, error) {
	var flags uint32
	if e.cfg.FailOpen {
		flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	q, err := nfqueue.Open(&nfqueue.Config{
		NfQueue:      num,
		MaxPacketLen: e.cfg.MaxPacketLen,
		MaxQueueLen:  e.cfg.MaxQueueLen,
		Copymode:     nfqueue.NfQnlCopyPacket,
		Flags:        flags,
		AfFamily:     unix.AF_UNSPEC,
		WriteTimeout: 100 * time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("verdict: open queue %d: %w", num, err)
	}
	if err := q.Con.SetReadBuffer(e.cfg.ReadBuffer); err != nil {
		e.log.Warn("cannot size queue receive buffer", "queue", num, "bytes", e.cfg.ReadBuffer, "err", err)
	}
	var inline *pipeline.Worker
	if len(workers) == 0 {
		inline = e.shared.NewWorker()
	}
	hook := func(a nfqueue.Attribute) int {
		j, ok := e.toJob(q, &a)
		if !ok {
			return 0
		}
		if inline != nil {
			e.handle(inline, j)
			return 0
		}
		workers[flowHash(j.payload)%uint32(len(workers))] <- j
		return 0
	}
	errFn := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		if errors.Is(err, syscall.ENOBUFS) {
			// The kernel dropped messages to us (or, fail-open, accepted
			// the packets); keep reading.
			e.enobufs.Add(1)
			return 0
		}
		var oe *netlink.OpError
		if errors.As(err, &oe) && oe.Timeout() {
			return 0
		}
		e.readErrors.Add(1)
		e.log.Error("queue read failed", "queue", num, "err", err)
		return 0
	}
	if err := q.RegisterWithErrorFunc(ctx, hook, errFn); err != nil {
		q.Close()
		return nil, fmt.Errorf("verdict: bind queue %d: %w", num, err)
	}
	e.alive.Add(1)
	context.AfterFunc(ctx, func() { e.alive.Add(-1) })
	e.log.Info("queue bound", "queue", num, "fail_open", e.cfg.FailOpen, "workers", len(workers))
	return q, nil
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

func (e *Engine) toJob(q *nfqueue.Nfqueue, a *nfqueue.Attribute) (job, bool) {
	if a.PacketID == nil {
		// Without an ID there is nothing to answer; the kernel keeps the
		// packet until the queue goes away.
		e.readErrors.Add(1)
		return job{}, false
	}
	j := job{q: q, id: *a.PacketID}
	if a.Payload != nil {
		j.payload = *a.Payload
	}
	if a.Hook != nil {
		if h, ok := nfHook(*a.Hook); ok {
			j.meta.Hook = h
		}
	}
	if a.Mark != nil {
		j.meta.Mark = *a.Mark
	}
	if e.cfg.IfName != nil {
		if a.InDev != nil {
			j.meta.InIf = e.cfg.IfName(*a.InDev)
		}
		if a.OutDev != nil {
			j.meta.OutIf = e.cfg.IfName(*a.OutDev)
		}
	}
	j.meta.Now = e.cfg.Now()
	return j, true
}

func (e *Engine) handle(w *pipeline.Worker, j job) {
	r := w.Process(j.payload, j.meta)
	var err error
	switch r.Verdict.Kind {
	case pipeline.Accept:
		if r.Verdict.SetMark {
			err = j.q.SetVerdictWithOption(j.id, nfqueue.NfAccept, nfqueue.WithMark(r.Verdict.Mark))
		} else {
			err = j.q.SetVerdict(j.id, nfqueue.NfAccept)
		}
	case pipeline.Drop:
		err = j.q.SetVerdict(j.id, nfqueue.NfDrop)
	case pipeline.Repeat:
		err = j.q.SetVerdictWithOption(j.id, nfqueue.NfRepeat, nfqueue.WithMark(r.Verdict.Mark))
	}
	if err != nil {
		e.sendErrors.Add(1)
		e.log.Debug("send verdict failed", "id", j.id, "err", err)
	}
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
