package main

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fwagent/fwagent/internal/agent"
	"github.com/fwagent/fwagent/internal/control"
	"github.com/fwagent/fwagent/internal/instance"
	"github.com/fwagent/fwagent/internal/metrics"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/secure"
	"github.com/fwagent/fwagent/rules"
	"github.com/fwagent/fwagent/verdict"
)

// tableFlags are the flags that shape the nft table; `run` and `rules`
// share them so `rules` prints exactly what `run` would install.
// defaultPickupWindow covers what an admin does right after starting the
// agent over SSH (the session is such a connection); longer windows widen
// what a forged mid-stream packet gets through (docs/policy.md).
const defaultPickupWindow = 2 * time.Minute

type tableFlags struct {
	hooks          []string
	priority       int32
	queues         uint16
	queueBase      uint16
	failOpen       bool
	failClosed     bool
	logGroup       uint16
	markMask       string
	acceptLoopback bool
	acceptND       bool
	queueKind      string
	kernelRules    string
}

type runFlags struct {
	table       tableFlags
	policy      string
	workers     int
	batch       int
	blocking    bool
	logFile     string
	logs        logFlags
	queueMaxLen uint32
	copyRange   uint32
	gso         bool
	logLevel    string
	maxFlows    int
	insecure    bool
	metricsAddr string
	watch       bool
	logFormat   string
	replace     bool
	pickup      time.Duration
	confirm     time.Duration
	control     string
	lockDir     string
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --policy FILE",
		Short: "Install the nft table and decide queued packets with a policy",
		Long: `Run the agent: install the nft table "inet fwagent", bind the NFQUEUE
queues, decide every queued packet with the policy, and write one JSON object
per logged packet (drops, rejects, would-be drops in audit mode) to stdout or
--log-file. SIGHUP reloads the policy, and so does a change to the policy or
its set files (--watch-policy); a policy that does not compile is logged with
FILE:LINE:COL and the old one stays in force. SIGINT and SIGTERM remove the
table and exit. Prometheus metrics, /healthz and /readyz are served on
--metrics-addr (` + "`fwagent status`" + ` summarises them). Needs root or
CAP_NET_ADMIN.

A policy whose tests: fail is refused at start (exit 1, the failing test's
FILE:LINE:COL) and at every reload (the old policy stays in force). One agent
runs per network namespace: a second exits 1 naming the first's pid, unless
--replace, which makes the first give way and exit 1. For --pickup-window
after start, mid-stream TCP packets of connections older than the agent
count as established, so they survive its start. With --confirm-reloads D
every policy change reverts after D unless ` + "`fwagent confirm`" + ` arrives.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, closeLog, err := f.config(cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeLog()
			err = secure.ExplainPrivilege(agent.Run(cmd.Context(), cfg))
			if err == nil {
				return nil
			}
			if f.logFormat == "json" {
				// Every line on stderr stays one JSON object, the last one too.
				cfg.Logger.Error("fwagent run failed", "err", err.Error())
				return exitError{exitFailed}
			}
			if pe, ok := policyRefused(err); ok {
				fmt.Fprintln(cmd.ErrOrStderr(), pe) // as check prints it
				return exitError{exitFailed}
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.policy, "policy", "", "policy file (required)")
	f.table.register(fl)
	fl.IntVar(&f.workers, "workers", runtime.GOMAXPROCS(0), "pipeline workers (0: decide on each queue's reader)")
	fl.IntVar(&f.batch, "batch", 64, "most packets one read (recvmmsg) takes")
	fl.BoolVar(&f.blocking, "blocking-read", false, "block in recvmmsg instead of parking in the netpoller")
	fl.StringVar(&f.logFile, "log-file", "", "append JSON drop events to this file instead of stdout")
	f.logs.register(fl)
	fl.Uint32Var(&f.queueMaxLen, "queue-maxlen", 4096, "kernel queue length per queue")
	fl.Uint32Var(&f.copyRange, "copy-range", 0, "bytes of each queued packet the kernel copies to the agent (0: what the policy reads, recomputed on reload; 65535: whole packets)")
	fl.BoolVar(&f.gso, "queue-gso", true, "queue GSO/GRO aggregates whole (up to 64 KiB, one verdict) instead of segmenting them first")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fl.IntVar(&f.maxFlows, "max-flows", 0, "cap on tracked flows (0: 262144); at the cap a new flow evicts an expired one, else one never answered, else the nearest to expiry")
	fl.BoolVar(&f.insecure, "allow-insecure-policy-perms", false, "read a policy or set file that group or others may write, or that another user owns")
	fl.StringVar(&f.metricsAddr, "metrics-addr", metrics.DefaultAddr, `serve /metrics, /healthz, /readyz here: host:port, unix:PATH or /PATH (a unix socket), "off" for none`)
	fl.BoolVar(&f.watch, "watch-policy", true, "reload when the policy or its set files change on disk (debounced 500ms)")
	fl.StringVar(&f.logFormat, "log-format", "text", "format of the agent's own log on stderr: text or json (one object per line)")
	fl.BoolVar(&f.replace, "replace", false, "make an agent already running in this network namespace give way (it exits 1) instead of refusing to start")
	fl.DurationVar(&f.pickup, "pickup-window", defaultPickupWindow, "after start, count mid-stream TCP packets of flows the kernel does not know as established for this long, so connections older than the agent survive (0: off)")
	fl.DurationVar(&f.confirm, "confirm-reloads", 0, "put every policy change on probation: revert to the last confirmed policy unless \"fwagent confirm\" arrives within this time (0: off)")
	fl.StringVar(&f.control, "control-socket", control.DefaultPath, `unix socket for control commands (fwagent confirm), mode 0600; "off" for none`)
	fl.StringVar(&f.lockDir, "lock-dir", instance.DefaultDir, "directory of the one-agent-per-network-namespace lock files")
	return cmd
}

func (f *tableFlags) register(fl *pflag.FlagSet) {
	fl.StringSliceVar(&f.hooks, "hooks", []string{"input"}, "hooks to filter: input, forward, output (comma-separated)")
	fl.Int32Var(&f.priority, "priority", 0, "priority of the agent's base chains (0 = filter)")
	fl.Uint16Var(&f.queues, "queues", 1, "number of NFQUEUE queues to fan out over")
	fl.Uint16Var(&f.queueBase, "queue-base", 0, "first queue number")
	fl.BoolVar(&f.failOpen, "fail-open", true, "let packets through when the agent is down or overloaded")
	fl.BoolVar(&f.failClosed, "fail-closed", false, "drop packets when the agent is down or overloaded (same as --fail-open=false)")
	fl.Uint16Var(&f.logGroup, "log-group", 100, "NFLOG group for logged packets")
	fl.StringVar(&f.markMask, "mark-mask", fmt.Sprintf("%#x", nf.DefaultMarkMask), "packet/conntrack mark bits the agent owns (contiguous)")
	fl.BoolVar(&f.acceptLoopback, "accept-loopback", true, "accept loopback traffic in the kernel, before the policy")
	fl.BoolVar(&f.acceptND, "accept-icmpv6-nd", true, "accept ICMPv6 neighbour/router discovery in the kernel, before the policy")
	fl.StringVar(&f.queueKind, "queue-kind", "auto", "queue rule: auto (probe), native (nft queue) or xt (NFQUEUE target)")
	fl.StringVar(&f.kernelRules, "kernel-rules", "auto", "auto: compile the rules nftables can express into the table and queue only the rest; off: queue every packet")
}

// kernel reads --kernel-rules.
func (f *tableFlags) kernel() (bool, error) {
	switch f.kernelRules {
	case "auto":
		return true, nil
	case "off":
		return false, nil
	}
	return false, usagef("--kernel-rules %q: want auto or off", f.kernelRules)
}

func (f *runFlags) config(stdout, stderr io.Writer) (agent.Config, func(), error) {
	nop := func() {}
	var cfg agent.Config
	if f.policy == "" {
		return cfg, nop, usagef("run: --policy is required")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return cfg, nop, usagef("run: --log-level: %v", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f.logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, opts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(stderr, opts))
	default:
		return cfg, nop, usagef("run: --log-format %q: want text or json", f.logFormat)
	}
	if f.pickup < 0 || f.confirm < 0 {
		return cfg, nop, usagef("run: --pickup-window and --confirm-reloads must not be negative")
	}
	if f.control == "off" {
		f.control = ""
	}
	if f.confirm > 0 && f.control == "" {
		return cfg, nop, usagef("run: --confirm-reloads needs a --control-socket for fwagent confirm")
	}
	cfg.Replace, cfg.PickupWindow, cfg.ConfirmReloads = f.replace, f.pickup, f.confirm
	cfg.ControlSocket, cfg.LockDir, cfg.Version = f.control, f.lockDir, version
	if f.workers < 0 {
		return cfg, nop, usagef("run: --workers must not be negative")
	}
	rc, err := f.table.config()
	if err != nil {
		return cfg, nop, err
	}
	cfg.Rules = rc
	if cfg.KernelRules, err = f.table.kernel(); err != nil {
		return cfg, nop, err
	}
	cfg.PolicyPath = f.policy
	if f.batch < 1 || f.batch > 1024 {
		return cfg, nop, usagef("run: --batch %d: want 1 to 1024", f.batch)
	}
	cfg.Verdict = verdict.Config{Workers: f.workers, MaxQueueLen: f.queueMaxLen, Batch: f.batch, BlockingRead: f.blocking,
		MaxPacketLen: f.copyRange, GSO: f.gso}
	if f.maxFlows < 0 {
		return cfg, nop, usagef("run: --max-flows must not be negative")
	}
	cfg.MaxFlows = f.maxFlows
	cfg.AllowInsecurePolicyPerms = f.insecure
	if _, _, _, err := metrics.ParseAddr(f.metricsAddr); err != nil {
		return cfg, nop, usagef("run: --metrics-addr: %v", err)
	}
	cfg.MetricsAddr = f.metricsAddr
	cfg.WatchPolicy = f.watch

	cfg.Events = stdout
	closeLog, err := f.logs.apply(&cfg, f.logFile)
	if err != nil {
		return cfg, nop, err
	}
	return cfg, closeLog, nil
}

// config validates the table flags into a rules.Config.
func (f *tableFlags) config() (rules.Config, error) {
	rc := rules.DefaultConfig()
	rc.Hooks = rc.Hooks[:0]
	seen := map[nf.Hook]bool{}
	for _, name := range f.hooks {
		for _, n := range strings.Split(name, ",") {
			h, ok := nf.ParseHook(strings.TrimSpace(n))
			if !ok {
				return rc, usagef("--hooks: unknown hook %q (want input, forward or output)", n)
			}
			if !seen[h] {
				seen[h] = true
				rc.Hooks = append(rc.Hooks, h)
			}
		}
	}
	if len(rc.Hooks) == 0 {
		return rc, usagef("--hooks: need at least one hook")
	}
	if f.queues == 0 {
		return rc, usagef("--queues must be at least 1")
	}
	if uint32(f.queueBase)+uint32(f.queues) > 65536 {
		return rc, usagef("--queue-base %d + --queues %d runs past queue 65535", f.queueBase, f.queues)
	}
	mask, err := strconv.ParseUint(f.markMask, 0, 32)
	if err != nil {
		return rc, usagef("--mark-mask %q: %v", f.markMask, err)
	}
	marks, err := nf.NewMarks(uint32(mask))
	if err != nil {
		return rc, usagef("--mark-mask: %v", err)
	}
	switch f.queueKind {
	case "auto":
		rc.QueueKind = rules.QueueAuto
	case "native":
		rc.QueueKind = rules.QueueNative
	case "xt":
		rc.QueueKind = rules.QueueXT
	default:
		return rc, usagef("--queue-kind %q: want auto, native or xt", f.queueKind)
	}
	rc.Priority = f.priority
	rc.QueueBase, rc.Queues = f.queueBase, f.queues
	rc.Bypass = f.failOpen && !f.failClosed
	rc.LogGroup = f.logGroup
	rc.Marks = marks
	rc.AcceptLoopback = f.acceptLoopback
	rc.AcceptICMPv6ND = f.acceptND
	return rc, nil
}
