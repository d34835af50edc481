package harness

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Options are the harness's flags (ParseFlags).
type Options struct {
	out          string
	duration     time.Duration
	rates        []float64
	configs      []string
	queues       int
	workers      int
	flows        int
	payload      int
	probeRate    float64
	concurrency  int
	fwagentArgs  []string
	install      bool
	updateReadme bool
	senderCPU    int
	firewallCPU  int
	nice         int
	fwagentBin   string
	rtProbe      bool
	perf         bool
}

func ParseFlags(name string, args []string, defaultOut string) (Options, error) {
	var o Options
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&o.out, "out", defaultOut, "directory for results.json, results.md and chart.svg")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "traffic time of each run")
	rates := fs.String("rates", "20000,40000,80000", "fixed offered UDP rates (pps) run in every configuration, besides max, 80% and 50% of its capacity")
	cfgs := fs.String("configs", "all", "comma-separated configurations to run ("+strings.Join(configNames(), ", ")+")")
	fs.IntVar(&o.queues, "queues", 2, "queues of the fan-out configuration")
	fs.IntVar(&o.workers, "workers", 0, "fwagent --workers (0: decide on each queue's reader)")
	fs.IntVar(&o.flows, "flows", 64, "UDP flows")
	fs.IntVar(&o.payload, "payload", 36, "UDP payload bytes (36: 64-byte IPv4 packets)")
	fs.Float64Var(&o.probeRate, "probe-rate", 1000, "latency probes per second, during the 50% run")
	fs.IntVar(&o.concurrency, "concurrency", 8, "concurrent TCP connection attempts")
	extra := fs.String("fwagent-args", "", "extra arguments for `fwagent run`, space-separated (e.g. \"--workers 2\")")
	fs.BoolVar(&o.install, "install", true, "apt-get install libnetfilter-queue-dev, ulogd2 and ulogd2-json when missing (Debian)")
	fs.BoolVar(&o.updateReadme, "update-readme", false, "replace the results section of bench/README.md with this run's (from a checkout only)")
	fs.IntVar(&o.senderCPU, "sender-cpu", 0, "CPU of the traffic generators on the client side")
	fs.IntVar(&o.firewallCPU, "firewall-cpu", 1, "CPU of the handler and the server-side tools")
	// Other work on the machine (a busy CI box, other tests) steals the
	// pinned cores from the measured processes; a raised priority, the
	// same for every configuration, keeps that noise out of the ratios.
	fs.BoolVar(&o.rtProbe, "rt-probe", true, "run the latency prober and echo server SCHED_FIFO (chrt -f 10), so probes do not wait for the sender's or sink's time slice")
	fs.StringVar(&o.fwagentBin, "fwagent-bin", "", "use this fwagent binary instead of building ./cmd/fwagent")
	fs.BoolVar(&o.perf, "perf", false, "sample the sender's core with perf during each max-rate UDP run and report netfilter's share of its busy time (needs perf: Debian linux-perf)")
	fs.IntVar(&o.nice, "nice", -10, "nice level of every process the harness starts (sender, handler, sink)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(*rates, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || r <= 0 {
			return o, fmt.Errorf("bench: -rates: bad rate %q", s)
		}
		o.rates = append(o.rates, r)
	}
	known := map[string]bool{}
	for _, n := range configNames() {
		known[n] = true
	}
	for _, s := range strings.Split(*cfgs, ",") {
		s = strings.TrimSpace(s)
		if s == "all" {
			o.configs = configNames()
			break
		}
		if !known[s] {
			return o, fmt.Errorf("bench: -configs: unknown configuration %q (have %s)", s, strings.Join(configNames(), ", "))
		}
		o.configs = append(o.configs, s)
	}
	o.fwagentArgs = strings.Fields(*extra)
	if o.duration < time.Second {
		return o, fmt.Errorf("bench: -duration must be at least 1s")
	}
	if o.nice < -20 || o.nice > 19 {
		return o, fmt.Errorf("bench: -nice must be within -20..19")
	}
	if o.queues < 1 {
		return o, fmt.Errorf("bench: -queues must be at least 1")
	}
	return o, nil
}

// Env is where the harness runs from.
type Env struct {
	// Exe re-run with GenArgs and a tool name is the traffic generator
	// (RunGen): `e2e gen` or `fwagent bench gen`.
	Exe     string
	GenArgs []string
	// Root is the repository checkout, "" when there is none: then the Go
	// handlers that need building are skipped (fwagent itself comes from
	// Options' -fwagent-bin, which `fwagent bench` sets to its own binary),
	// relative output paths are taken from the working directory, and the
	// README cannot be updated.
	Root string
	// Command is how the user ran the harness, for results.json.
	Command string
	// Stdout gets the results table, Stderr a progress line per
	// configuration and the SKIPPED lines.
	Stdout, Stderr io.Writer
}

// Run measures every configuration of opt, one after another, and writes
// the results.
func Run(ctx context.Context, log *slog.Logger, env Env, opt Options) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("bench: needs root to build namespaces (euid %d)", os.Geteuid())
	}
	for _, tool := range []string{"ip", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("bench: %s not found: %w", tool, err)
		}
	}
	if opt.perf {
		if _, err := exec.LookPath("perf"); err != nil {
			return fmt.Errorf("bench: -perf: perf not found (Debian: apt-get install linux-perf): %w", err)
		}
	}
	if opt.updateReadme && env.Root == "" {
		return fmt.Errorf("bench: -update-readme needs a checkout (go run ./bench/e2e)")
	}
	if env.Stdout == nil {
		env.Stdout = os.Stdout
	}
	if env.Stderr == nil {
		env.Stderr = os.Stderr
	}
	tmp, err := os.MkdirTemp("", "fwbench-")
	if err != nil {
		return fmt.Errorf("bench: temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	h := &harness{opt: opt, log: log, root: env.Root, exe: env.Exe, genArgs: env.GenArgs, stdout: env.Stdout,
		tmp: tmp, bins: map[string]string{}, skip: map[string]string{}}
	h.build(ctx)
	if err := h.openNet(); err != nil {
		return err
	}
	defer h.closeNet()

	res := Results{Machine: machine(ctx), Method: Method{
		DurationSec: opt.duration.Seconds(), Flows: opt.flows, Payload: opt.payload, ProbeRate: opt.probeRate,
		Queues: opt.queues, Workers: opt.workers, SenderCPU: opt.senderCPU, FirewallCPU: opt.firewallCPU, Nice: opt.nice, RTProbe: opt.rtProbe, Perf: opt.perf,
	}}
	res.Commands = append(res.Commands, env.Command)
	for i, name := range opt.configs {
		if ctx.Err() != nil {
			break
		}
		c := configByName(name, opt)
		log.Info("configuration", "name", c.name, "desc", c.desc)
		start := time.Now()
		r := h.runConfig(ctx, c)
		if r.Skipped != "" {
			fmt.Fprintf(env.Stderr, "SKIPPED %s: %s\n", c.name, r.Skipped)
		}
		fmt.Fprintf(env.Stderr, "[%d/%d] %s: %s (%s)\n", i+1, len(opt.configs), c.name, progress(&r), time.Since(start).Round(time.Second))
		for _, e := range r.Errors {
			log.Error("run failed", "config", c.name, "err", e)
		}
		res.Configs = append(res.Configs, r)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	res.Bars = evaluateBars(&res)
	return h.write(&res)
}

// ModuleRoot is the repository root of the working directory's module, where
// `go run ./bench/e2e` builds the handlers.
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("bench: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("bench: run from inside the fwagent module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}

// progress is a configuration's headline numbers, for its progress line.
func progress(r *ConfigResult) string {
	if r.Skipped != "" {
		return "skipped"
	}
	var parts []string
	if p := r.point("max"); p != nil {
		parts = append(parts, fmt.Sprintf("UDP max %.0f of %.0f pps", p.DeliveredPPS, p.OfferedPPS))
	}
	if r.Connect != nil {
		parts = append(parts, fmt.Sprintf("%.0f conn/s", r.Connect.PerSec))
	}
	if r.Bulk != nil {
		parts = append(parts, fmt.Sprintf("bulk %.2f Gbit/s", r.Bulk.Gbps))
	}
	if r.DropLog != nil {
		parts = append(parts, fmt.Sprintf("drop log %d of %d events written", r.DropLog.Written, r.DropLog.Offered))
	}
	if len(r.Errors) > 0 {
		parts = append(parts, fmt.Sprintf("%d errors", len(r.Errors)))
	}
	if len(parts) == 0 {
		return "no results"
	}
	return strings.Join(parts, ", ")
}
