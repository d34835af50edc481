package main

import (
	"bufio"
	"cmp"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/spf13/pflag"

	"github.com/fwagent/fwagent/internal/agent"
	"github.com/fwagent/fwagent/internal/droplog"
	"github.com/fwagent/fwagent/internal/packet"
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

// logsFlags are the flags of `fwagent logs`.
type logsFlags struct {
	file         string
	rule         string
	event        string
	since        string
	until        string
	src, dst     []string
	sport, dport []string
	proto        []string
	follow       bool
	json         bool
}

func newLogsCmd() *cobra.Command {
	var f logsFlags
	cmd := &cobra.Command{
		Use:   "logs [--file PATH] [--rule R] [--event E] [--since DUR|TIME] [--src A] [--dport P] ... [--follow]",
		Short: "Read the JSON drop log: filter it, print it readably, follow it",
		Long: `Read the drop log that 'fwagent run' writes (--log-file, or its stdout), keep
the events that match every filter given, and print one readable line per
event, or the JSON lines themselves with --json. --since and --until take a
duration back from now (30m, 1h, 2d, 1w) or a time (RFC 3339, e.g.
2026-11-27T12:00:00Z; a local 2026-11-27T12:00:00 or 2026-11-27). --src and
--dst take addresses or CIDRs, --sport and --dport ports or ranges (1024-2048),
--proto names or numbers; each may be repeated or comma-separated, and an
event passes when it matches one of the values of every filter given.
--follow keeps reading as the file grows and
across rotation, like tail -F. Without --file it reads standard input. Lines
that are not events are skipped and counted on stderr.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), time.Now())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.file, "file", "", "log file to read (default: standard input)")
	fl.StringVar(&f.rule, "rule", "", "only events decided by this rule")
	fl.StringVar(&f.event, "event", "", "only this event: drop, reject, accept, would_drop, would_reject")
	fl.StringVar(&f.since, "since", "", "only events since this long ago (1h, 2d) or this time (2026-11-27T12:00:00Z, 2026-11-27)")
	fl.StringVar(&f.until, "until", "", "only events before this long ago or this time (as --since)")
	fl.StringSliceVar(&f.src, "src", nil, "only events from these addresses or CIDRs")
	fl.StringSliceVar(&f.dst, "dst", nil, "only events to these addresses or CIDRs")
	fl.StringSliceVar(&f.sport, "sport", nil, "only events from these ports or ranges (a-b)")
	fl.StringSliceVar(&f.dport, "dport", nil, "only events to these ports or ranges (a-b)")
	fl.StringSliceVar(&f.proto, "proto", nil, "only events of these protocols (tcp, udp, icmp, icmpv6, ... or a number)")
	fl.BoolVarP(&f.follow, "follow", "f", false, "keep reading as the file grows, across rotation")
	fl.BoolVar(&f.json, "json", false, "print the matching JSON lines unchanged")
	return cmd
}

func (f *logsFlags) run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, now time.Time) error {
	filter, err := f.filter(now)
	if err != nil {
		return err
	}
	switch f.event {
	case "", "drop", "reject", "accept", "would_drop", "would_reject", "unknown":
	default:
		return usagef("logs: --event %q: want drop, reject, accept, would_drop or would_reject", f.event)
	}
	if f.follow && f.file == "" {
		return usagef("logs: --follow needs --file")
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	var line []byte
	print := func(raw []byte, e *droplog.Event) error {
		if f.json {
			line = append(append(line[:0], raw...), '\n')
		} else {
			line = appendReadable(line[:0], e)
		}
		if _, err := w.Write(line); err != nil {
			return fmt.Errorf("logs: write: %w", err)
		}
		if f.follow {
			return w.Flush()
		}
		return nil
	}
	if f.follow {
		if ctx == nil {
			ctx = context.Background()
		}
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		return droplog.Follow(ctx, f.file, 250*time.Millisecond, filter, print)
	}
	in := stdin
	if f.file != "" {
		file, err := os.Open(f.file)
		if err != nil {
			return fmt.Errorf("logs: %w", err)
		}
		defer file.Close()
		in = file
		if strings.HasSuffix(f.file, ".gz") {
			zr, err := gzip.NewReader(file)
			if err != nil {
				return fmt.Errorf("logs: %s: %w", f.file, err)
			}
			in = zr
		}
	}
	skipped, err := droplog.Scan(in, filter, print)
	if skipped > 0 {
		fmt.Fprintf(stderr, "fwagent logs: skipped %d lines that are not events\n", skipped)
	}
	return err
}

// filter turns the flags into a droplog.Filter.
func (f *logsFlags) filter(now time.Time) (droplog.Filter, error) {
	filter := droplog.Filter{Rule: f.rule, Event: f.event}
	var err error
	if f.since != "" {
		if filter.Since, err = droplog.ParseTime(f.since, now); err != nil {
			return filter, usagef("logs: --since: %v", err)
		}
	}
	if f.until != "" {
		if filter.Until, err = droplog.ParseTime(f.until, now); err != nil {
			return filter, usagef("logs: --until: %v", err)
		}
	}
	var errs [5]error
	filter.Src, errs[0] = parseEach("src", f.src, droplog.ParsePrefix)
	filter.Dst, errs[1] = parseEach("dst", f.dst, droplog.ParsePrefix)
	filter.Sport, errs[2] = parseEach("sport", f.sport, droplog.ParsePortRange)
	filter.Dport, errs[3] = parseEach("dport", f.dport, droplog.ParsePortRange)
	filter.Protos, errs[4] = parseEach("proto", f.proto, droplog.ParseProto)
	// The first flag in that order that does not parse is the one named.
	if err := cmp.Or(errs[:]...); err != nil {
		return filter, err
	}
	return filter, nil
}

// parseEach parses each value of the flag --name with parse, in order.
func parseEach[T any](name string, values []string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, s := range values {
		v, err := parse(s)
		if err != nil {
			return nil, usagef("logs: --%s: %v", name, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// appendReadable is the one-line human form of an event:
//
//	2026-11-27T13:02:41.123Z drop    default  tcp 192.0.2.7:51514 -> 10.0.0.5:23 in=eth0 flags=S
func appendReadable(b []byte, e *droplog.Event) []byte {
	b = e.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = fmt.Appendf(b, " %-12s %-16s ", e.Event, e.Rule)
	b = packet.AppendProtoName(b, e.Proto)
	b = append(b, ' ')
	b = appendEndpoint(b, e.Src, e.SrcPort)
	b = append(b, " -> "...)
	b = appendEndpoint(b, e.Dst, e.DstPort)
	if e.In != "" {
		b = fmt.Appendf(b, " in=%q", e.In)
	}
	if e.Out != "" {
		b = fmt.Appendf(b, " out=%q", e.Out)
	}
	if e.L4 {
		switch e.Proto {
		case packet.ProtoTCP:
			b = append(b, " flags="...)
			b = append(b, tcpFlags(e.TCPFlags)...)
		case packet.ProtoICMP, packet.ProtoICMPv6:
			b = fmt.Appendf(b, " type=%d code=%d", e.ICMPType, e.ICMPCode)
		}
	}
	b = fmt.Appendf(b, " len=%d hook=%s", e.Length, e.Hook)
	return append(b, '\n')
}

func tcpFlags(f uint8) string {
	const letters = "FSRPAUEW"
	bits := []uint8{packet.TCPFin, packet.TCPSyn, packet.TCPRst, packet.TCPPsh, packet.TCPAck, packet.TCPUrg, packet.TCPEce, packet.TCPCwr}
	var s []byte
	for i, bit := range bits {
		if f&bit != 0 {
			s = append(s, letters[i])
		}
	}
	if len(s) == 0 {
		return "-"
	}
	return string(s)
}

func appendEndpoint(b []byte, a netip.Addr, port uint16) []byte {
	if !a.IsValid() {
		return append(b, '?')
	}
	if port == 0 {
		return a.AppendTo(b)
	}
	return netip.AddrPortFrom(a, port).AppendTo(b)
}
