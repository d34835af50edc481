package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "gen" {
		if err := runGen(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	opt, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, opt); err != nil {
		log.Error("e2e", "err", err)
		os.Exit(1)
	}
}

// options are the harness's flags.
type options struct {
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
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	fs.StringVar(&o.out, "out", "bench/out", "directory for results.json, results.md and chart.svg")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "traffic time of each run")
	rates := fs.String("rates", "20000,40000,80000", "fixed offered UDP rates (pps) run in every configuration, besides max, 80% and 50% of its capacity")
	cfgs := fs.String("configs", "all", "comma-separated configurations to run ("+strings.Join(configNames(), ", ")+")")
	fs.IntVar(&o.queues, "queues", 2, "queues of the fan-out configuration")
	fs.IntVar(&o.workers, "workers", 0, "fwagent --workers (0: decide on each queue's reader)")
	fs.IntVar(&o.flows, "flows", 64, "UDP flows")
	fs.IntVar(&o.payload, "payload", 36, "UDP payload bytes (36: 64-byte IPv4 packets)")
	fs.Float64Var(&o.probeRate, "probe-rate", 1000, "latency probes per second, during the 50% run")
	fs.IntVar(&o.concurrency, "concurrency", 8, "concurrent TCP connection attempts")
	extra := fs.String("fwagent-args", "", "extra arguments for `fwagent run`, space-separated (e.g. \"--reader batch\")")
	fs.BoolVar(&o.install, "install", true, "apt-get install libnetfilter-queue-dev, ulogd2 and ulogd2-json when missing (Debian)")
	fs.BoolVar(&o.updateReadme, "update-readme", false, "replace the results section of bench/README.md with this run's")
	fs.IntVar(&o.senderCPU, "sender-cpu", 0, "CPU of the traffic generators on the client side")
	fs.IntVar(&o.firewallCPU, "firewall-cpu", 1, "CPU of the handler and the server-side tools")
	// Other work on the machine (a busy CI box, other tests) steals the
	// pinned cores from the measured processes; a raised priority, the
	// same for every configuration, keeps that noise out of the ratios.
	fs.BoolVar(&o.rtProbe, "rt-probe", true, "run the latency prober and echo server SCHED_FIFO (chrt -f 10), so probes do not wait for the sender's or sink's time slice")
	fs.StringVar(&o.fwagentBin, "fwagent-bin", "", "use this fwagent binary instead of building ./cmd/fwagent")
	fs.IntVar(&o.nice, "nice", -10, "nice level of every process the harness starts (sender, handler, sink)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("e2e: unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(*rates, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || r <= 0 {
			return o, fmt.Errorf("e2e: -rates: bad rate %q", s)
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
			return o, fmt.Errorf("e2e: -configs: unknown configuration %q (have %s)", s, strings.Join(configNames(), ", "))
		}
		o.configs = append(o.configs, s)
	}
	o.fwagentArgs = strings.Fields(*extra)
	if o.duration < time.Second {
		return o, fmt.Errorf("e2e: -duration must be at least 1s")
	}
	if o.nice < -20 || o.nice > 19 {
		return o, fmt.Errorf("e2e: -nice must be within -20..19")
	}
	if o.queues < 1 {
		return o, fmt.Errorf("e2e: -queues must be at least 1")
	}
	return o, nil
}

func run(ctx context.Context, log *slog.Logger, opt options) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("e2e: needs root to build namespaces (euid %d)", os.Geteuid())
	}
	for _, tool := range []string{"ip", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("e2e: %s not found: %w", tool, err)
		}
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("e2e: own executable: %w", err)
	}
	tmp, err := os.MkdirTemp("", "fwbench-")
	if err != nil {
		return fmt.Errorf("e2e: temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	h := &harness{opt: opt, log: log, root: root, exe: exe, tmp: tmp, bins: map[string]string{}, skip: map[string]string{}}
	h.build(ctx)
	if err := h.openNet(); err != nil {
		return err
	}
	defer h.closeNet()

	res := Results{Machine: machine(ctx), Method: Method{
		DurationSec: opt.duration.Seconds(), Flows: opt.flows, Payload: opt.payload, ProbeRate: opt.probeRate,
		Queues: opt.queues, Workers: opt.workers, SenderCPU: opt.senderCPU, FirewallCPU: opt.firewallCPU, Nice: opt.nice, RTProbe: opt.rtProbe,
	}}
	res.Commands = append(res.Commands, "go run ./bench/e2e "+strings.Join(os.Args[1:], " "))
	for _, name := range opt.configs {
		if ctx.Err() != nil {
			break
		}
		c := configByName(name, opt)
		log.Info("configuration", "name", c.name, "desc", c.desc)
		r := h.runConfig(ctx, c)
		if r.Skipped != "" {
			fmt.Fprintf(os.Stderr, "SKIPPED %s: %s\n", c.name, r.Skipped)
		}
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

// moduleRoot is the repository root, where the harness builds the handlers.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("e2e: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("e2e: run from inside the fwagent module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}
