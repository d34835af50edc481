package gen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// ServeTCP accepts connections on ln and closes each at once, until ctx
// ends; then it closes ln.
func ServeTCP(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors or a reset before accept: keep serving.
			var ne net.Error
			if errors.As(err, &ne) {
				time.Sleep(time.Millisecond)
				continue
			}
			return fmt.Errorf("gen: tcp serve: %w", err)
		}
		c.Close()
	}
}

// ConnectConfig is one TCP connection-setup run.
type ConnectConfig struct {
	Dst netip.AddrPort
	// Concurrency is the number of connections being set up at once.
	Concurrency int
	Duration    time.Duration
	// Timeout bounds one connection attempt.
	Timeout time.Duration
}

// ConnectResult is the measured connection setup rate.
type ConnectResult struct {
	Connects uint64        `json:"connects"`
	Errors   uint64        `json:"errors"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	PerSec   float64       `json:"per_sec"`
	// FirstError is the first failed attempt's error, to tell a firewall
	// drop (timeout) from a local limit.
	FirstError string `json:"first_error,omitempty"`
}

// ConnectRate opens and closes TCP connections to cfg.Dst as fast as
// cfg.Concurrency dialers can, for cfg.Duration. Connections are closed with
// a reset (linger 0) so that no TIME_WAIT state exhausts the client's ports
// and the rate measures setup, not port reuse.
func ConnectRate(ctx context.Context, cfg ConnectConfig) (ConnectResult, error) {
	var res ConnectResult
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	var ok, failed atomic.Uint64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	// The run's end is a time, not a context deadline: a dial cut by a
	// context deadline fails with a timeout that would count as an error.
	deadline := start.Add(cfg.Duration)
	d := net.Dialer{Timeout: cfg.Timeout}
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				c, err := d.DialContext(ctx, "tcp", cfg.Dst.String())
				if err != nil {
					if ctx.Err() == nil {
						if failed.Add(1) == 1 {
							firstErr.Store(&err)
						}
					}
					continue
				}
				if tc, isTCP := c.(*net.TCPConn); isTCP {
					_ = tc.SetLinger(0)
				}
				c.Close()
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Connects, res.Errors = ok.Load(), failed.Load()
	if res.Elapsed > 0 {
		res.PerSec = float64(res.Connects) / res.Elapsed.Seconds()
	}
	if e := firstErr.Load(); e != nil {
		res.FirstError = (*e).Error()
	}
	return res, nil
}
