package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
)

func main() {
	queue := flag.Uint("queue", 0, "NFQUEUE number to bind")
	// The README uses 0xFF; the harness passes the same length as the other
	// handlers so the comparison is about the loop, not the queue.
	maxLen := flag.Uint("maxlen", 0xFF, "kernel queue length")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, uint16(*queue), uint32(*maxLen)); err != nil {
		log.Error("naive", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, queue uint16, maxLen uint32) error {
	config := nfqueue.Config{
		NfQueue:      queue,
		MaxPacketLen: 0xFFFF,
		MaxQueueLen:  maxLen,
		Copymode:     nfqueue.NfQnlCopyPacket,
		WriteTimeout: 15 * time.Millisecond,
	}
	nf, err := nfqueue.Open(&config)
	if err != nil {
		return fmt.Errorf("naive: open queue %d: %w", queue, err)
	}
	defer nf.Close()
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		return fmt.Errorf("naive: set NoENOBUFS: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Atomics only because the counters are read from another goroutine at
	// the end; the hook itself is what the README shows.
	var verdicts, failed atomic.Uint64
	fn := func(a nfqueue.Attribute) int {
		id := *a.PacketID
		if err := nf.SetVerdict(id, nfqueue.NfAccept); err != nil {
			failed.Add(1)
		}
		verdicts.Add(1)
		return 0
	}
	errFn := func(e error) int {
		log.Warn("receive", "err", e)
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, fn, errFn); err != nil {
		return fmt.Errorf("naive: register: %w", err)
	}
	// The harness starts traffic once it reads this line.
	fmt.Println("ready")
	<-ctx.Done()
	log.Info("done", "verdicts", verdicts.Load(), "verdict_errors", failed.Load())
	return nil
}
