// Package agent runs the firewall: it loads the policy, installs the nft
// table, binds the queues, reads the drop log and reloads on request, and it
// undoes all of that on the way out.
//
// Start-up order matters and is chosen so no packet is lost or stuck: the
// drop-log reader and the queue readers are bound before the table that
// feeds them exists, and on shutdown the table is removed before the readers
// go away (with fail-open the queue rule's bypass flag covers the gap either
// way).
package agent

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/nftables"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/droplog"
	"github.com/fwagent/fwagent/internal/ifname"
	"github.com/fwagent/fwagent/internal/metrics"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/pipeline"
	"github.com/fwagent/fwagent/internal/secure"
	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/rules"
	"github.com/fwagent/fwagent/verdict"
)

// Config is everything `fwagent run` can be told.
type Config struct {
	PolicyPath string
	Rules      rules.Config
	Verdict    verdict.Config
	// Events receives the JSON drop log (stdout or a file).
	Events io.Writer
	Logger *slog.Logger
	// MaxFlows caps the flow table (0: the table's default).
	MaxFlows int
	// AllowInsecurePolicyPerms reads the policy and its set files even when
	// group or others may write them (see internal/secure).
	AllowInsecurePolicyPerms bool
	// LogSinks get every logged event beside the JSON log on Events (e.g. a
	// pcap file); the drop-log reader closes them when it stops.
	LogSinks []droplog.Sink
	// LogRate caps logged events per second, 0 for no cap; LogBurst is the
	// burst (0: one second's worth). Events over it are counted, not written.
	LogRate  float64
	LogBurst int
	// LogCopyRange is how many bytes of each logged packet the kernel copies
	// (0: droplog's default, enough for the headers; 0xffff for a pcap).
	LogCopyRange uint32
	// MetricsAddr is where /metrics, /healthz and /readyz are served: a
	// host:port, "unix:PATH" or "/PATH"; "" or "off" serves nothing (see
	// metrics.ParseAddr).
	MetricsAddr string
	// WatchPolicy reloads the policy when it or its set files change on
	// disk, as SIGHUP does.
	WatchPolicy bool
	// WatchDebounce is the quiet time before a changed policy is reloaded
	// (0: watch.DefaultDebounce).
	WatchDebounce time.Duration
}

// Agent is a running firewall.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	shared *pipeline.Shared
	engine *verdict.Engine
	drops  *droplog.Reader
	table  *rules.Table
	ifs    *ifname.Cache

	reloads  *metrics.Reloads
	logAlive atomic.Bool // the drop-log reader is running

	mu  sync.Mutex // serialises reloads
	gen uint32
}

// Run runs the agent until ctx is cancelled or SIGINT/SIGTERM arrives;
// SIGHUP reloads the policy. It removes the agent's table before returning.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, ifs: ifname.New(), reloads: &metrics.Reloads{}}
	// Listen before anything is installed, so a taken address fails the
	// start cleanly; serving waits until every source of metrics exists.
	metricsLn, err := metrics.Listen(cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if metricsLn != nil {
		defer metricsLn.Close()
	}
	prog, err := loadProgram(cfg.PolicyPath, secure.New(os.Geteuid(), cfg.AllowInsecurePolicyPerms))
	if err != nil {
		return err
	}
	if err := checkMarks(prog, cfg.Rules.Marks); err != nil {
		return err
	}
	a.gen = firstGeneration(cfg.Rules.Marks)
	flows := conntrack.New(conntrack.Config{MaxFlows: cfg.MaxFlows})
	a.shared = pipeline.NewShared(&pipeline.Policy{Program: prog, Gen: a.gen}, cfg.Rules.Marks, flows)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go flows.Run(runCtx, time.Second)

	// Drop log first: the kernel logs as soon as the table exists.
	a.drops, err = droplog.NewReader(droplog.Config{
		Group:      cfg.Rules.LogGroup,
		Marks:      cfg.Rules.Marks,
		RuleName:   a.ruleName,
		RulePrefix: a.rulePrefix,
		IfName:     a.ifs.Name,
		Logger:     a.log,
		// Deep enough to ride out a burst the size of the socket buffer
		// (about 20k messages) without shedding in userspace first.
		Buffer:    1 << 15,
		Rate:      cfg.LogRate,
		Burst:     cfg.LogBurst,
		CopyRange: cfg.LogCopyRange,
	}, append([]droplog.Sink{droplog.NewJSONSink(cfg.Events)}, cfg.LogSinks...)...)
	if err != nil {
		return fmt.Errorf("agent: drop log: %w", err)
	}
	logDone := make(chan error, 1)
	a.logAlive.Store(true)
	go func() {
		err := a.drops.Run(runCtx)
		a.logAlive.Store(false)
		logDone <- err
	}()
	// The kernel discards what it logs to a group nobody has bound yet, so
	// the table waits for the reader.
	select {
	case <-a.drops.Ready():
	case err := <-logDone:
		if err == nil {
			return nil // cancelled before it bound
		}
		return fmt.Errorf("agent: drop log: %w", err)
	}

	vcfg := cfg.Verdict
	vcfg.QueueBase, vcfg.Queues = cfg.Rules.QueueBase, cfg.Rules.Queues
	vcfg.FailOpen = cfg.Rules.Bypass
	vcfg.Logger = a.log
	vcfg.IfName = a.ifs.Name
	vcfg.Now = flows.Now
	if vcfg.MaxPacketLen == 0 {
		vcfg.MaxPacketLen = prog.CopyRange()
	}
	a.engine = verdict.New(vcfg, a.shared)
	waitQueues, err := a.engine.Start(runCtx)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer waitQueues()
	defer cancel()

	// One lasting netlink connection: a reload rewrites the offload rules
	// in about a millisecond instead of dialling anew for every operation.
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("agent: nftables: %w", err)
	}
	defer conn.CloseLasting()
	rcfg := cfg.Rules
	rcfg.Generation = a.gen
	if rcfg.QueueKind == rules.QueueAuto {
		kind, err := rules.Probe(conn)
		if err != nil {
			return fmt.Errorf("agent: probe queue support: %w", err)
		}
		rcfg.QueueKind = kind
	}
	a.log.Info("queue rule", "kind", rcfg.QueueKind.String(), "queues", fmt.Sprintf("%d-%d", rcfg.QueueBase, rcfg.QueueBase+max(rcfg.Queues, 1)-1))
	a.table, err = rules.Install(conn, rcfg)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	// A restart of the host's nftables service (`nft flush ruleset`) takes
	// our table with it, and then nothing is filtered: put it back. The
	// guard stops before the table is removed on the way out, or it would
	// put it back then too.
	guardCtx, stopGuard := context.WithCancel(runCtx)
	guardDone := make(chan struct{})
	go func() {
		defer close(guardDone)
		if err := a.table.Guard(guardCtx, 5*time.Second, a.log); err != nil && guardCtx.Err() == nil && !errors.Is(err, rules.ErrTableReplaced) {
			a.log.Error("table guard stopped", "err", err)
		}
	}()
	defer func() {
		stopGuard()
		<-guardDone
		switch err := a.table.Remove(); {
		case errors.Is(err, rules.ErrTableReplaced):
			a.log.Warn("nft table replaced by another agent; leaving it in place")
		case err != nil:
			a.log.Error("remove nft table", "err", err)
		default:
			a.log.Info("nft table removed")
		}
	}()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var health *metrics.Health
	if metricsLn != nil {
		health = a.serveMetrics(runCtx, metricsLn, flows)
		defer health.SetReady(false)
	}
	if cfg.WatchPolicy {
		a.watchPolicy(runCtx)
	}

	if health != nil {
		health.SetReady(true)
	}
	a.log.Info("ready", "policy", cfg.PolicyPath, "rules", prog.NumRules(), "generation", a.gen,
		"hooks", fmt.Sprint(rcfg.Hooks), "audit", prog.Audit())
	for {
		select {
		case <-ctx.Done():
			if health != nil {
				health.SetReady(false)
			}
			a.log.Info("stopping", "reason", context.Cause(ctx))
			return nil
		case err := <-logDone:
			if err != nil && runCtx.Err() == nil {
				return fmt.Errorf("agent: drop log stopped: %w", err)
			}
		case <-hup:
			_ = a.reloadLogged() // logged and counted
		}
	}
}

// Reload loads the policy file again and, if it compiles, makes it the
// policy in force under a new generation. Every attempt is counted in the
// metrics, with its result.
func (a *Agent) Reload() (err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer func() { a.reloads.Record(time.Now(), err) }()
	prog, err := loadProgram(a.cfg.PolicyPath, secure.New(os.Geteuid(), a.cfg.AllowInsecurePolicyPerms))
	if err != nil {
		return err
	}
	if err := checkMarks(prog, a.cfg.Rules.Marks); err != nil {
		return err
	}
	gen := nextGeneration(a.gen, a.cfg.Rules.Marks)
	// A policy that reads more of each packet needs the larger copy range
	// in force before it decides; one that reads less lowers it after.
	copyRange := a.cfg.Verdict.MaxPacketLen
	if copyRange == 0 {
		copyRange = prog.CopyRange()
	}
	if copyRange > a.engine.CopyRange() {
		if err := a.setCopyRange(copyRange); err != nil {
			return err
		}
	}
	// The new policy goes live before the kernel's offload rule moves, so a
	// flow re-queued by the move is decided by the new policy.
	a.shared.SetPolicy(&pipeline.Policy{Program: prog, Gen: gen})
	if copyRange < a.engine.CopyRange() {
		if err := a.setCopyRange(copyRange); err != nil {
			// Copying more than needed only costs time.
			a.log.Warn("cannot lower the queue copy range", "bytes", copyRange, "err", err)
		}
	}
	if err := a.table.SetGeneration(gen); err != nil {
		return fmt.Errorf("agent: reload: %w", err)
	}
	a.gen = gen
	a.log.Info("policy reloaded", "rules", prog.NumRules(), "generation", gen)
	return nil
}

// setCopyRange sets the queues' copy range, waiting at most 5 s for them.
func (a *Agent) setCopyRange(n uint32) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.engine.SetCopyRange(ctx, n); err != nil {
		return fmt.Errorf("agent: reload: copy range %d: %w", n, err)
	}
	return nil
}

func (a *Agent) ruleName(id uint32) string {
	switch {
	case id == 0:
		return "default"
	case id >= a.cfg.Rules.Marks.MaxID():
		return "unknown"
	}
	return a.shared.Policy().Program.RuleName(int32(id - 1))
}

// loadProgram reads the policy and its set files through c, so a file that
// others could have written is refused at start and at every reload.
// rulePrefix is the log prefix a rule chose, "" when it chose none.
func (a *Agent) rulePrefix(id uint32) string {
	if id == 0 || id >= a.cfg.Rules.Marks.MaxID() {
		return ""
	}
	prog := a.shared.Policy().Program
	if p := prog.LogPrefix(int32(id - 1)); p != prog.RuleName(int32(id-1)) {
		return p
	}
	return ""
}

func loadProgram(path string, c *secure.Checker) (*policies.Program, error) {
	data, err := c.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent: policy: %w", err)
	}
	pol, err := policies.Load(path, data, c.ReadFile)
	if err != nil {
		return nil, err
	}
	return policies.Compile(pol)
}

// checkMarks refuses a policy whose `mark:` values use the agent's own mark
// bits: the kernel rules would read them as actions.
func checkMarks(p *policies.Program, m nf.Marks) error {
	for i := range p.NumRules() {
		if mark, ok := p.RuleMark(int32(i)); ok && mark&m.Mask != 0 {
			return fmt.Errorf("agent: rule %q sets mark %#x, which overlaps the agent's mark mask %#x (see --mark-mask)", p.RuleName(int32(i)), mark, m.Mask)
		}
	}
	return nil
}

// firstGeneration is random so that flows a previous run offloaded under its
// generation are not taken as decided by this run's policy.
func firstGeneration(m nf.Marks) uint32 {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return uint32(time.Now().UnixNano())%m.MaxID() + 1
	}
	return binary.LittleEndian.Uint32(b[:])%m.MaxID() + 1
}

func nextGeneration(g uint32, m nf.Marks) uint32 {
	g++
	if g > m.MaxID() || g == 0 {
		g = 1
	}
	return g
}
