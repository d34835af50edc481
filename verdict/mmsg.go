package verdict

import (
	"context"
	"errors"
	"fmt"
	"sync"

	nfqueue "github.com/florianl/go-nfqueue/v2"

	"github.com/fwagent/fwagent/internal/pipeline"
	"github.com/fwagent/fwagent/verdict/nfqmsg"
	"golang.org/x/sys/unix"
)

// BatchStats is the batched readers' own counters, all queues together.
func (e *Engine) BatchStats() nfqmsg.CounterSnapshot { return e.batch.Snapshot() }

// batchTask is one worker's share of one read: the packets at idx. It is
// passed by value so the hand-off allocates nothing.
type batchTask struct {
	pkts []nfqmsg.Packet
	vs   []nfqmsg.Verdict
	idx  []int32
	now  int64
	done *sync.WaitGroup
}

// startBatch is Start: one nfqmsg.Reader per queue, deciding
// each read inline on the reader's goroutine or, with workers, spread over
// them by flow hash and gathered before the read's verdicts go out.
func (e *Engine) startBatch(ctx context.Context) (wait func(), err error) {
	var wg sync.WaitGroup
	var workers []chan batchTask
	for range e.cfg.Workers {
		ch := make(chan batchTask, 64)
		workers = append(workers, ch)
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.runWorker(ch)
		}()
	}
	stopWorkers := func() {
		for _, ch := range workers {
			close(ch)
		}
	}
	var readers []*nfqmsg.Reader
	for i := uint16(0); i < e.cfg.Queues; i++ {
		num := e.cfg.QueueBase + i
		r, err := nfqmsg.Open(nfqmsg.Config{
			Queue:        num,
			Family:       unix.AF_UNSPEC,
			MaxPacketLen: e.cfg.MaxPacketLen,
			MaxQueueLen:  e.cfg.MaxQueueLen,
			FailOpen:     e.cfg.FailOpen,
			// The socket owner feeds uid and gid rules; the kernel sends
			// it only for packets with a local socket.
			Flags:      nfqueue.NfQaCfgFlagUIDGid,
			ReadBuffer: e.cfg.ReadBuffer,
			GSO:        e.cfg.GSO,
			Batch:      e.cfg.Batch,
			Blocking:   e.cfg.BlockingRead,
			Counters:   &e.batch,
			Logger:     e.log,
		})
		if err != nil {
			// Readers not yet running still hold a bound socket: a
			// cancelled Run unbinds and closes it.
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			for _, r := range readers {
				r.Run(cctx, func([]nfqmsg.Packet, []nfqmsg.Verdict) {})
			}
			stopWorkers()
			wg.Wait()
			return nil, fmt.Errorf("verdict: %w", err)
		}
		readers = append(readers, r)
	}
	e.readers = readers
	e.copyRange.Store(e.cfg.MaxPacketLen)
	gso := len(readers) > 0 && readers[0].GSOActive()
	var rwg sync.WaitGroup
	for i, r := range readers {
		decide := e.batchFunc(workers)
		rwg.Add(1)
		e.alive.Add(1)
		go func() {
			defer rwg.Done()
			defer e.alive.Add(-1)
			if err := r.Run(ctx, decide); err != nil {
				e.readErrors.Add(1)
				e.log.Error("queue reader stopped", "queue", e.cfg.QueueBase+uint16(i), "err", err)
			}
		}()
		e.log.Info("queue bound", "queue", e.cfg.QueueBase+uint16(i),
			"fail_open", e.cfg.FailOpen, "workers", len(workers), "blocking", e.cfg.BlockingRead,
			"copy_range", e.cfg.MaxPacketLen, "gso", gso)
	}
	done := make(chan struct{})
	go func() {
		rwg.Wait()
		stopWorkers()
		wg.Wait()
		close(done)
	}()
	return func() { <-done }, nil
}

// runWorker decides the shares of reads sent to it until ch closes.
func (e *Engine) runWorker(ch <-chan batchTask) {
	d := e.newDecider()
	for t := range ch {
		d.decide(t.pkts, t.vs, t.idx, t.now)
		t.done.Done()
	}
}

// batchFunc makes the decide function of one reader. It owns its scratch
// space, so each reader needs its own.
func (e *Engine) batchFunc(workers []chan batchTask) nfqmsg.BatchFunc {
	own := e.newDecider()
	if len(workers) == 0 {
		return func(pkts []nfqmsg.Packet, vs []nfqmsg.Verdict) {
			own.decide(pkts, vs, own.all(len(pkts)), e.cfg.Now())
		}
	}
	idx := make([][]int32, len(workers))
	var done sync.WaitGroup
	return func(pkts []nfqmsg.Packet, vs []nfqmsg.Verdict) {
		now := e.cfg.Now()
		// A hand-off costs two goroutine switches; for a small read the
		// reader is quicker deciding by itself, and at low load that is
		// every read. Within a read, one flow's packets stay in one share,
		// and a read is answered before the next, so flows keep their order.
		if len(pkts) < inlineBelow {
			own.decide(pkts, vs, own.all(len(pkts)), now)
			return
		}
		for k := range idx {
			idx[k] = idx[k][:0]
		}
		for i := range pkts {
			k := flowHash(pkts[i].Payload) % uint32(len(workers))
			idx[k] = append(idx[k], int32(i))
		}
		// The reader decides share 0 itself rather than wait idle.
		for k := 1; k < len(idx); k++ {
			if ix := idx[k]; len(ix) > 0 {
				done.Add(1)
				workers[k] <- batchTask{pkts: pkts, vs: vs, idx: ix, now: now, done: &done}
			}
		}
		own.decide(pkts, vs, idx[0], now)
		// Every verdict of the read must be in before the reader writes
		// them: the batch messages rely on it.
		done.Wait()
	}
}

// inlineBelow is the read size under which the reader decides every packet
// itself instead of sharing the read with the workers.
const inlineBelow = 16

// decider runs packets of reads through one pipeline worker, a group at a
// time (pipeline.Worker.ProcessBatch), so their flow lookups overlap. It
// belongs to one goroutine.
type decider struct {
	e     *Engine
	w     *pipeline.Worker
	data  [][]byte
	meta  []pipeline.Meta
	res   []pipeline.Result
	every []int32 // 0, 1, 2, ...: see all
}

func (e *Engine) newDecider() *decider {
	return &decider{e: e, w: e.shared.NewWorker()}
}

// decide sets vs[i] for the packets pkts[i] at idx, leaving alone those
// the reader already answered for a new copy range (Requeue). Its scratch slices
// grow to the largest read and stay, so a steady stream of reads allocates
// nothing.
func (d *decider) decide(pkts []nfqmsg.Packet, vs []nfqmsg.Verdict, idx []int32, now int64) {
	d.data, d.meta = d.data[:0], d.meta[:0]
	for _, i := range idx {
		if pkts[i].Requeue {
			continue
		}
		d.add(&pkts[i], now)
	}
	if cap(d.res) < len(d.data) {
		d.res = make([]pipeline.Result, len(d.data))
	}
	res := d.res[:len(d.data)]
	d.w.ProcessBatch(d.data, d.meta, res)
	k := 0
	for _, i := range idx {
		if pkts[i].Requeue {
			continue
		}
		vs[i] = toVerdict(&res[k])
		if wantsEnd(&res[k], d.meta[k].Hook) {
			d.e.ender.submit(d.data[k])
		}
		k++
	}
}

// all is the indexes of a whole read of n packets, for decide.
func (d *decider) all(n int) []int32 {
	for i := len(d.every); i < n; i++ {
		d.every = append(d.every, int32(i))
	}
	return d.every[:n]
}

// add queues p for the next ProcessBatch.
func (d *decider) add(p *nfqmsg.Packet, now int64) {
	var m pipeline.Meta
	if h, ok := nfHook(p.Hook); ok {
		m.Hook = h
	}
	m.Mark = p.Mark
	m.HasUID, m.UID, m.HasGID, m.GID = p.HasUID, p.UID, p.HasGID, p.GID
	m.Cut = p.CapLen != 0
	if ifName := d.e.cfg.IfName; ifName != nil {
		if p.InDev != 0 {
			m.InIf = ifName(p.InDev)
		}
		if p.OutDev != 0 {
			m.OutIf = ifName(p.OutDev)
		}
	}
	m.Now = now
	d.data = append(d.data, p.Payload)
	d.meta = append(d.meta, m)
}

// toVerdict turns the pipeline's verdict into the netlink one.
func toVerdict(r *pipeline.Result) nfqmsg.Verdict {
	switch r.Verdict.Kind {
	case pipeline.Drop:
		return nfqmsg.Verdict{Code: nfqmsg.Drop}
	case pipeline.Repeat:
		return nfqmsg.Verdict{Code: nfqmsg.Repeat, SetMark: true, Mark: r.Verdict.Mark}
	}
	return nfqmsg.Verdict{Code: nfqmsg.Accept, SetMark: r.Verdict.SetMark, Mark: r.Verdict.Mark}
}

// SetCopyRange changes how many bytes of each packet the kernel copies to
// every queue (see nfqmsg.Reader.SetCopyRange) and returns once each queue
// has taken it, or ctx ends. The agent raises the range before a policy that
// needs more bytes goes live, and lowers it after one that needs fewer, so
// no packet is decided on fewer bytes than its policy reads.
func (e *Engine) SetCopyRange(ctx context.Context, n uint32) error {
	var errs []error
	for _, r := range e.readers {
		if err := r.SetCopyRange(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("verdict: %w", err)
	}
	e.copyRange.Store(n)
	return nil
}

// CopyRange is the copy range last set on the queues (Config.MaxPacketLen
// or SetCopyRange).
func (e *Engine) CopyRange() uint32 { return e.copyRange.Load() }
