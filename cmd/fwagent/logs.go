package main

import (
	"fmt"
	"io"
	"math"

	"github.com/spf13/pflag"

	"github.com/fwagent/fwagent/internal/agent"
	"github.com/fwagent/fwagent/internal/droplog"
)

// pcapCopyRange makes the kernel copy whole packets to the log when a pcap
// is written; without one the headers suffice.
const pcapCopyRange = 0xffff

// logFlags are `run`'s drop-log sink flags.
type logFlags struct {
	maxSizeMB  int
	maxBackups int
	maxAgeDays int
	compress   bool
	pcap       string
	rate       float64
	burst      int
}

func (f *logFlags) register(fl *pflag.FlagSet) {
	fl.IntVar(&f.maxSizeMB, "log-max-size", droplog.DefaultMaxSizeMB, "rotate --log-file and --log-pcap at this size in MB")
	fl.IntVar(&f.maxBackups, "log-max-backups", droplog.DefaultMaxBackups, "rotated files kept per log (at least 1)")
	fl.IntVar(&f.maxAgeDays, "log-max-age", 0, "also remove rotated JSON files older than this many days (0: keep)")
	fl.BoolVar(&f.compress, "log-compress", false, "gzip rotated JSON files")
	fl.StringVar(&f.pcap, "log-pcap", "", "also write each logged packet to this pcap file (rotated like --log-file)")
	fl.Float64Var(&f.rate, "log-rate", 0, "cap logged events per second (0: no cap); events over it are counted, not written")
	fl.IntVar(&f.burst, "log-burst", 0, "events allowed at once above --log-rate (0: one second's worth)")
}

// apply opens the log files into cfg and returns what closes them after
// the agent stops.
func (f *logFlags) apply(cfg *agent.Config, logFile string) (func(), error) {
	nop := func() {}
	if f.maxSizeMB < 1 {
		return nop, usagef("run: --log-max-size must be at least 1 (MB)")
	}
	if f.maxBackups < 1 {
		return nop, usagef("run: --log-max-backups must be at least 1: rotation exists to cap the log's size")
	}
	if f.maxAgeDays < 0 {
		return nop, usagef("run: --log-max-age must not be negative")
	}
	if !(f.rate >= 0) || math.IsInf(f.rate, 0) {
		return nop, usagef("run: --log-rate must be a number >= 0")
	}
	if f.burst < 0 {
		return nop, usagef("run: --log-burst must not be negative")
	}
	cfg.LogRate, cfg.LogBurst = f.rate, f.burst
	rot := droplog.RotateConfig{MaxSizeMB: f.maxSizeMB, MaxBackups: f.maxBackups, MaxAgeDays: f.maxAgeDays, Compress: f.compress}

	var closers []io.Closer
	closeAll := func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}
	if logFile != "" {
		w, err := droplog.OpenRotatingFile(logFile, rot)
		if err != nil {
			return nop, fmt.Errorf("run: --log-file: %w", err)
		}
		cfg.Events = w
		closers = append(closers, w)
	}
	if f.pcap != "" {
		ps, err := droplog.OpenPcapFile(f.pcap, rot)
		if err != nil {
			closeAll()
			return nop, fmt.Errorf("run: --log-pcap: %w", err)
		}
		cfg.LogSinks = append(cfg.LogSinks, ps)
		cfg.LogCopyRange = pcapCopyRange
		// The drop-log reader closes it on the way out; closing again is a
		// no-op, and covers an agent that stops before the reader starts.
		closers = append(closers, ps)
	}
	return closeAll, nil
}
