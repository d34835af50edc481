package rules

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Guard checks the table every interval until ctx is done and rebuilds it
// when something outside the agent deleted or changed it (see Verify). It
// blocks; run it in its own goroutine. A failed check or repair is logged
// and retried at the next tick, since giving up would leave the host
// unfiltered. It returns ctx.Err(), or ErrTableReplaced when another agent's
// table has taken the place of this one.
func (t *Table) Guard(ctx context.Context, interval time.Duration, log *slog.Logger) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		err := t.Verify()
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrTableChanged) {
			log.Warn("nft table check failed", "err", err)
			continue
		}
		t.mu.Lock()
		own, oerr := t.owner()
		t.mu.Unlock()
		if oerr == nil && own == tableReplaced {
			// Another agent installed its own table over ours (see owner):
			// it filters now, and rebuilding ours would fight it.
			log.Warn("nft table replaced by another agent; no longer guarding it")
			return ErrTableReplaced
		}
		log.Warn("nft table changed outside the agent, reinstalling", "reason", err)
		if err := t.Reinstall(); err != nil {
			log.Error("nft table reinstall failed", "err", err)
			continue
		}
		log.Info("nft table reinstalled", "generation", t.Generation())
	}
}
