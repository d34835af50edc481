package nfqmsg

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
)

// copyRequest is one SetCopyRange call on its way to the reader goroutine.
type copyRequest struct {
	n    uint32
	done chan error
}

// ErrNotRunning is SetCopyRange's answer when the reader is not in Run.
var ErrNotRunning = errors.New("nfqmsg: reader is not running")

// SetCopyRange changes how many bytes of each packet the kernel copies to
// this queue (NFQNL_CFG_CMD copy mode, re-sent on the bound queue) and waits
// until the kernel has acknowledged it, or ctx ends. It may be called from
// any goroutine while Run runs; the reader goroutine applies it between two
// reads. Receive buffers grow to fit when BufSize was left to its default.
//
// Packets the kernel copied before the change and the reader reads after it
// are answered NF_REPEAT (and flagged Requeue) when they were cut shorter
// than the new range, so a policy that needs more bytes never decides on
// fewer: they go through the chain again and come back copied to the new
// range.
func (r *Reader) SetCopyRange(ctx context.Context, n uint32) error {
	req := copyRequest{n: kernelCopyRange(n), done: make(chan error, 1)}
	select {
	case r.reconf <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Wake a reader parked in the netpoller; Run tells this deadline from
	// a cancellation by its context. A blocking reader wakes on its own
	// within its receive timeout.
	_ = r.q.Con.SetReadDeadline(time.Now())
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CopyRange is the copy range the kernel last acknowledged. Only the
// reader goroutine may call it while Run runs.
func (r *Reader) CopyRange() uint32 { return r.copyRange }

// GSOActive reports whether the kernel took NFQA_CFG_F_GSO for this queue.
func (r *Reader) GSOActive() bool { return r.gso.Load() }

// applyPending applies a waiting SetCopyRange request, if any. It runs on
// the reader goroutine between reads, when no packet is waiting for a
// verdict and the receive buffers are free.
func (r *Reader) applyPending() {
	select {
	case req := <-r.reconf:
		req.done <- r.applyCopyRange(req.n)
	default:
	}
}

func (r *Reader) applyCopyRange(n uint32) error {
	if n == r.copyRange {
		return nil
	}
	if r.autoBuf && bufSizeFor(n) > r.cfg.BufSize {
		// Grown before the kernel copies more, so no message of the new
		// range is cut by our own buffer. Never shrunk: the kernel may
		// still hold larger messages for us.
		r.cfg.BufSize = bufSizeFor(n)
		r.allocBufs()
	}
	params := binary.BigEndian.AppendUint32(nil, n)
	params = append(params, nfqueue.NfQnlCopyPacket)
	var early []Packet
	err := r.request(r.cfg.Queue, []attr{{cfgAttrParams, params}}, &early)
	if err == nil {
		r.copyRange = n
		r.cfg.MaxPacketLen = n
	}
	// Packets read while waiting for the acknowledgement went through no
	// BatchFunc: round again, like those queued during the bind.
	if rerr := r.repeatEarly(early); rerr != nil {
		err = errors.Join(err, rerr)
	} else {
		r.cnt.Requeued.Add(uint64(len(early)))
	}
	if err != nil {
		return fmt.Errorf("nfqmsg: queue %d: set copy range %d: %w", r.cfg.Queue, n, err)
	}
	r.log.Info("queue copy range changed", "queue", r.cfg.Queue, "bytes", n)
	return nil
}

// markRequeue flags the packets copied under a smaller range than the
// kernel now applies and pre-answers them NF_REPEAT.
// It also counts GSO aggregates and partial checksums, once per read.
func (r *Reader) markRequeue(pkts []Packet, vs []Verdict) {
	var gso, csum, requeued uint64
	for i := range pkts {
		p := &pkts[i]
		if p.SkbInfo&SkbGSO != 0 {
			gso++
		}
		if p.SkbInfo&SkbCsumNotReady != 0 {
			csum++
		}
		if p.Payload != nil && p.CapLen > uint32(len(p.Payload)) && uint32(len(p.Payload)) < r.copyRange {
			p.Requeue = true
			vs[i] = Verdict{Code: Repeat}
			requeued++
		}
	}
	if gso > 0 {
		r.cnt.GSO.Add(gso)
	}
	if csum > 0 {
		r.cnt.CsumPartial.Add(csum)
	}
	if requeued > 0 {
		r.cnt.Requeued.Add(requeued)
	}
}
