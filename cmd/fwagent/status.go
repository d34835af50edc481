package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/spf13/cobra"

	"github.com/fwagent/fwagent/internal/metrics"
	"github.com/fwagent/fwagent/internal/status"
)

type statusFlags struct {
	addr     string
	interval time.Duration
	top      int
	timeout  time.Duration
}

func newStatusCmd() *cobra.Command {
	var f statusFlags
	cmd := &cobra.Command{
		Use:   "status [--addr ADDR]",
		Short: "Summarise a running agent: health, queues, packets/s, top rules, flows, policy",
		Long: `Ask a running agent, on its --metrics-addr, how it is doing: health,
queues, packets per second by verdict (two scrapes --interval apart), the
rules with the most hits, tracked flows, the policy generation and the last
reload's result. Exits 1 if the agent is unhealthy or cannot be reached.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", metrics.DefaultAddr, "the agent's --metrics-addr: host:port, unix:PATH or /PATH")
	fl.DurationVar(&f.interval, "interval", time.Second, "time between the two scrapes that give packets/s (0: totals only)")
	fl.IntVar(&f.top, "top", 5, "rules to list by hits")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Second, "timeout per request")
	return cmd
}

func (f *statusFlags) run(ctx context.Context, out io.Writer) error {
	network, address, ok, err := metrics.ParseAddr(f.addr)
	if err != nil {
		return usagef("status: --addr: %v", err)
	}
	if !ok {
		return usagef("status: --addr %q: the agent serves no metrics there", f.addr)
	}
	if f.interval < 0 || f.top < 0 {
		return usagef("status: --interval and --top must not be negative")
	}
	c := metrics.NewClient(network, address, f.timeout)
	defer c.Close()
	healthCode, healthBody, err := c.Get(ctx, "/healthz")
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	readyCode, _, err := c.Get(ctx, "/readyz")
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	first, err := c.Scrape(ctx)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	var second map[string]*dto.MetricFamily
	var elapsed time.Duration
	if f.interval > 0 {
		start := time.Now()
		select {
		case <-time.After(f.interval):
		case <-ctx.Done():
			return ctx.Err()
		}
		if second, err = c.Scrape(ctx); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		elapsed = time.Since(start)
	}
	r := status.Report{
		Addr:    f.addr,
		Healthy: healthCode == http.StatusOK,
		Ready:   readyCode == http.StatusOK,
		Health:  string(bytes.TrimSpace(healthBody)),
		Before:  first,
		After:   second,
		Elapsed: elapsed,
		Top:     f.top,
		Now:     time.Now(),
	}
	r.Write(out)
	if !r.Healthy {
		return exitError{exitFailed}
	}
	return nil
}
