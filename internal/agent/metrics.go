package agent

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/metrics"
	"github.com/fwagent/fwagent/internal/watch"
)

// serveMetrics serves /metrics, /healthz and /readyz on ln until ctx ends.
// It is called once the engine, the table and the drop log exist.
func (a *Agent) serveMetrics(ctx context.Context, ln net.Listener, flows *conntrack.Table) *metrics.Health {
	queues := max(a.cfg.Rules.Queues, 1)
	nums := make([]uint16, queues)
	for i := range nums {
		nums[i] = a.cfg.Rules.QueueBase + uint16(i)
	}
	src := metrics.Sources{
		Pipeline: a.shared,
		Engine:   a.engine,
		DropLog:  a.drops,
		Flows:    flows,
		Reloads:  a.reloads,
		Queues:   nums,
		FailOpen: a.cfg.Rules.Bypass,
	}
	if a.planned {
		// With --kernel-rules off too: the packets the kernel cannot queue
		// are decided by the plan's rules.
		src.KernelHits = a.table.RuleHits
	}
	c := metrics.NewCollector(src)
	health := metrics.NewHealth(
		metrics.Check{Name: "queues", Fn: func() error { return queuesCheck(a.engine.Stats().ReadersLive, int(queues)) }},
		metrics.Check{Name: "table", Fn: a.table.Verify},
		metrics.Check{Name: "guard", Fn: func() error {
			if !a.guarded.Load() {
				return errors.New("the agent no longer guards its nft table")
			}
			return nil
		}},
		metrics.Check{Name: "droplog", Fn: func() error {
			if !a.logAlive.Load() {
				return errors.New("the drop-log reader has stopped")
			}
			return nil
		}},
	)
	go func() {
		if err := metrics.Serve(ctx, ln, metrics.Handler(metrics.NewRegistry(c, metrics.NewStateCollector(a, health, a.cfg.Version)), health, a.log)); err != nil {
			a.log.Error("metrics server stopped", "err", err)
		}
	}()
	a.log.Info("serving metrics", "addr", ln.Addr().String())
	return health
}

// queuesCheck fails when fewer readers run than queues are configured: the
// kernel then holds (or, fail-open, waves through) that queue's packets.
func queuesCheck(live, want int) error {
	if live < want {
		return fmt.Errorf("%d of %d queue readers running", live, want)
	}
	return nil
}

// watchPolicy reloads the policy whenever its files change, until ctx ends.
func (a *Agent) watchPolicy(ctx context.Context) {
	w, err := watch.New(watch.Config{Policy: a.cfg.PolicyPath, Reload: a.reloadLogged, Debounce: a.cfg.WatchDebounce, Logger: a.log})
	if err != nil {
		// SIGHUP still reloads; a missing watch is no reason to stop
		// filtering.
		a.log.Warn("cannot watch the policy files; reload with SIGHUP", "err", err)
		return
	}
	a.log.Info("watching policy files", "files", fmt.Sprint(w.Files()))
	go func() {
		if err := w.Run(ctx); err != nil {
			a.log.Warn("policy watch stopped; reload with SIGHUP", "err", err)
		}
	}()
}

// reloadLogged is Reload for SIGHUP and the file watch: a policy error is
// logged (it carries FILE:LINE:COL) and the old policy stays in force.
func (a *Agent) reloadLogged() error {
	err := a.Reload()
	if err != nil {
		a.log.Error("reload failed; the previous policy stays in force", "err", err)
	}
	return err
}
