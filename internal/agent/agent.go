// Package agent runs the firewall: it loads the policy, installs the nft
// table, binds the queues, reads the drop log and reloads on request, and it
// undoes all of that on the way out.
//
// Start-up is a list of stages (see Run), each of which may push an undo
// step on a stack; however far start-up got, the stack unwinds in reverse.
// The order matters and is chosen so no packet is lost or stuck: the policy
// is loaded and its tests pass before anything else (so a --replace never
// pushes out a working agent for a broken policy), the namespace lock comes
// next, and the drop-log reader and the queue readers are bound before the
// table that feeds them exists; on shutdown the table is removed before the
// readers go away (with fail-open the queue rule's bypass flag covers the
// gap either way).
package agent

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/nftables"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/control"
	"github.com/fwagent/fwagent/internal/droplog"
	"github.com/fwagent/fwagent/internal/ifname"
	"github.com/fwagent/fwagent/internal/instance"
	"github.com/fwagent/fwagent/internal/metrics"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/pipeline"
	"github.com/fwagent/fwagent/internal/policyfile"
	"github.com/fwagent/fwagent/internal/procqueue"
	"github.com/fwagent/fwagent/internal/sockcgroup"
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
	// LockDir holds the one-agent-per-namespace lock (instance.DefaultDir
	// if empty).
	LockDir string
	// Replace makes a running agent in the same namespace give way
	// (--replace): it exits non-zero and leaves its table for this one.
	Replace bool
	// PickupWindow is how long after start a mid-stream TCP packet of a
	// flow the kernel does not know counts as established (--pickup-window;
	// 0: never). See rules.RulePickup.
	PickupWindow time.Duration
	// ConfirmReloads puts every policy change on probation: it reverts to
	// the last confirmed policy unless confirmed within this time (0: off).
	ConfirmReloads time.Duration
	// ControlSocket is the unix socket `fwagent confirm` talks to ("": none).
	ControlSocket string
	// Version is reported in fwagent_build_info.
	Version string
	// KernelRules compiles the policy into the table (--kernel-rules
	// auto): rules nftables can express decide in the kernel, only the
	// rest is queued. false queues every packet (--kernel-rules off).
	KernelRules bool
}

// Agent is a running firewall.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	shared *pipeline.Shared
	flows  *conntrack.Table
	engine *verdict.Engine
	drops  *droplog.Reader
	table  *rules.Table
	// planned: the table carries a compiled policy (--kernel-rules auto,
	// or off with rules.Config.QueueAll), which reloads recompile.
	planned bool
	ifs     *ifname.Cache
	// cgroups finds sockets' cgroups for cgroup rules and drop events;
	// nil when the host's cgroup2 mount cannot be seen.
	cgroups *sockcgroup.Finder
	// setGeneration moves the kernel's offload rules to a new generation
	// (the table's SetGeneration; a stand-in in tests).
	setGeneration func(uint32) error

	metricsLn net.Listener
	health    *metrics.Health
	reloads   *metrics.Reloads
	logAlive  atomic.Bool // the drop-log reader is running
	logDone   chan error  // the drop-log reader's result
	guardErr  chan error  // the table guard's result, if it stops by itself

	guarded      atomic.Bool // the table guard runs on our own table
	pickupOpen   atomic.Bool
	leaveTable   atomic.Bool // replaced by a new agent: its Install replaces our table
	unconfirmed  atomic.Bool
	reverts      atomic.Uint64
	testRefusals atomic.Uint64

	mu  sync.Mutex // serialises policy changes; guards below
	gen uint32
	// confirmed is the last confirmed program while a change is on
	// probation (--confirm-reloads), nil otherwise.
	confirmed *policies.Program
	probation *time.Timer
}

// ErrReplaced is Run's error when a new agent started with --replace took
// over: the exit is non-zero so a service manager notices.
var ErrReplaced = errors.New("agent: replaced by a new agent started with --replace")

// errStopped ends start-up quietly: the context ended while a stage waited.
var errStopped = errors.New("agent: stopped during start-up")

// stage is one start-up step. It may return an undo step, run when the
// agent stops (or a later stage fails), in reverse order of the stages.
type stage struct {
	name string
	run  func(ctx context.Context) (undo func(), err error)
}

// Run runs the agent until ctx is cancelled or SIGINT/SIGTERM arrives;
// SIGHUP reloads the policy and instance.ReplaceSignal makes it give way to
// a new agent. It removes the agent's table before returning, unless
// another agent now owns it.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, ifs: ifname.New(), reloads: &metrics.Reloads{},
		logDone: make(chan error, 1), guardErr: make(chan error, 1)}
	// Before anything else: a --replace agent may signal as soon as the
	// lock file names us, and the default action would kill us outright.
	replace := make(chan os.Signal, 1)
	signal.Notify(replace, instance.ReplaceSignal)
	defer signal.Stop(replace)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	var undo []func()
	defer func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}()
	for _, s := range []stage{
		{"policy", a.loadPolicy},
		{"lock", a.takeLock},
		{"metrics listener", a.listenMetrics},
		{"control socket", a.listenControl},
		{"drop log", a.startDropLog},
		{"queues", a.startQueues},
		{"table", a.installTable},
	} {
		u, err := s.run(runCtx)
		if u != nil {
			undo = append(undo, u)
		}
		if errors.Is(err, errStopped) {
			return nil
		}
		if err != nil {
			a.log.Debug("start-up stage failed", "stage", s.name, "err", err)
			return err
		}
	}
	return a.serve(ctx, runCtx, replace)
}

// loadPolicy reads the policy, refuses it if its tests fail, and builds the
// pipeline around it.
func (a *Agent) loadPolicy(ctx context.Context) (func(), error) {
	prog, err := a.load("refusing to run it")
	if err != nil {
		return nil, err
	}
	a.gen = firstGeneration(a.cfg.Rules.Marks)
	a.flows = conntrack.New(conntrack.Config{MaxFlows: a.cfg.MaxFlows})
	a.shared = pipeline.NewShared(&pipeline.Policy{Program: prog, Gen: a.gen}, a.cfg.Rules.Marks, a.flows)
	// The table installed later writes the kernel's conntrack state into
	// every queued packet's mark: that is the policy's `state`.
	a.shared.UseKernelState()
	go a.flows.Run(ctx, time.Second)
	go a.watchInterfaces(ctx)
	cgroups := openCgroups(a.log, prog)
	if cgroups == nil {
		return nil, nil
	}
	a.shared.SetCgroupFinder(cgroups)
	a.cgroups = cgroups
	return func() { cgroups.Close() }, nil
}

// load is the one way a policy goes live, at start and on every change:
// permissions, syntax, marks, then its own tests.
func (a *Agent) load(refused string) (*policies.Program, error) {
	prog, err := policyfile.Load(a.cfg.PolicyPath, a.cfg.AllowInsecurePolicyPerms)
	if err != nil {
		return nil, err
	}
	if err := checkMarks(prog, a.cfg.Rules.Marks); err != nil {
		return nil, err
	}
	if _, err := policyfile.Gate(a.cfg.PolicyPath, prog, refused); err != nil {
		return nil, err
	}
	return prog, nil
}

// listenMetrics listens before anything is installed, so a taken address
// fails the start cleanly; serving waits until every source exists.
func (a *Agent) listenMetrics(context.Context) (func(), error) {
	ln, err := metrics.Listen(a.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if ln == nil {
		return nil, nil
	}
	a.metricsLn = ln
	return func() { ln.Close() }, nil
}

// listenControl serves the control socket. Without --confirm-reloads
// nothing depends on it, so a socket it cannot have is only a warning.
func (a *Agent) listenControl(ctx context.Context) (func(), error) {
	if a.cfg.ControlSocket == "" {
		return nil, nil
	}
	srv, err := control.Listen(a.cfg.ControlSocket, map[string]control.Handler{"confirm": a.Confirm}, a.log)
	if err != nil {
		if a.cfg.ConfirmReloads > 0 {
			return nil, fmt.Errorf("agent: --confirm-reloads needs the control socket: %w", err)
		}
		a.log.Warn("no control socket", "err", err)
		return nil, nil
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(sctx)
	}()
	a.log.Info("control socket", "path", srv.Path())
	return func() { stop(); <-done }, nil
}

// startDropLog binds the NFLOG group: the kernel logs as soon as the table
// exists, and discards what it logs to a group nobody has bound yet, so the
// table waits for the reader.
func (a *Agent) startDropLog(ctx context.Context) (func(), error) {
	cfg := a.cfg
	var err error
	a.drops, err = droplog.NewReader(droplog.Config{
		Group:      cfg.Rules.LogGroup,
		Marks:      cfg.Rules.Marks,
		RuleName:   a.ruleName,
		RulePrefix: a.rulePrefix,
		IfName:     a.ifs.Name,
		Cgroup:     logCgroup(a.cgroups),
		Logger:     a.log,
		// Deep enough to ride out a burst the size of the socket buffer
		// (about 20k messages) without shedding in userspace first.
		Buffer:    1 << 15,
		Rate:      cfg.LogRate,
		Burst:     cfg.LogBurst,
		CopyRange: cfg.LogCopyRange,
	}, append([]droplog.Sink{droplog.NewJSONSink(cfg.Events)}, cfg.LogSinks...)...)
	if err != nil {
		return nil, fmt.Errorf("agent: drop log: %w", err)
	}
	a.logAlive.Store(true)
	go func() {
		err := a.drops.Run(ctx)
		a.logAlive.Store(false)
		a.logDone <- err
	}()
	select {
	case <-a.drops.Ready():
		return nil, nil
	case err := <-a.logDone:
		if err == nil {
			return nil, errStopped
		}
		return nil, inUse(fmt.Errorf("agent: drop log: %w", err), "NFLOG group", "--log-group", procqueue.LogPath, []uint16{cfg.Rules.LogGroup})
	}
}

// startQueues binds the queues; the undo stops the readers, after the
// table is gone.
func (a *Agent) startQueues(ctx context.Context) (func(), error) {
	rc := a.cfg.Rules
	vcfg := a.cfg.Verdict
	vcfg.QueueBase, vcfg.Queues = rc.QueueBase, rc.Queues
	vcfg.FailOpen = rc.Bypass
	vcfg.Logger = a.log
	vcfg.IfName = a.ifs.Name
	vcfg.Now = a.flows.Now
	if vcfg.MaxPacketLen == 0 {
		vcfg.MaxPacketLen = a.shared.Policy().Program.CopyRange()
	}
	a.engine = verdict.New(vcfg, a.shared)
	qctx, stop := context.WithCancel(ctx)
	wait, err := a.engine.Start(qctx)
	if err != nil {
		stop()
		nums := make([]uint16, max(rc.Queues, 1))
		for i := range nums {
			nums[i] = rc.QueueBase + uint16(i)
		}
		return nil, inUse(fmt.Errorf("agent: %w", err), "queue", "--queue-base", procqueue.Path, nums)
	}
	return func() { stop(); wait() }, nil
}

// installTable installs the nft table (with the pickup rule while the
// window is open) and guards it.
func (a *Agent) installTable(ctx context.Context) (func(), error) {
	// One lasting netlink connection: a reload rewrites the offload rules
	// in about a millisecond instead of dialling anew for every operation.
	conn, err := nftables.New(nftables.AsLasting(), rules.BigBatches())
	if err != nil {
		return nil, fmt.Errorf("agent: nftables: %w", err)
	}
	rcfg := a.cfg.Rules
	rcfg.Generation = a.gen
	rcfg.Pickup = a.cfg.PickupWindow > 0
	if rcfg.QueueKind == rules.QueueAuto {
		kind, err := rules.Probe(conn)
		if err != nil {
			conn.CloseLasting()
			return nil, fmt.Errorf("agent: probe queue support: %w", err)
		}
		rcfg.QueueKind = kind
	}
	a.log.Info("queue rule", "kind", rcfg.QueueKind.String(), "queues", fmt.Sprintf("%d-%d", rcfg.QueueBase, rcfg.QueueBase+max(rcfg.Queues, 1)-1))
	prog := a.shared.Policy().Program
	if a.cfg.KernelRules {
		if rcfg.Plan, err = rules.Compile(prog, rcfg); err != nil {
			conn.CloseLasting()
			return nil, fmt.Errorf("agent: %w", err)
		}
		a.log.Info("kernel rules", "in_kernel", rcfg.Plan.Kernel(), "rules", prog.NumRules())
	} else if rcfg, err = rules.WithQueueAll(prog, rcfg); err != nil {
		a.log.Warn("the policy does not compile for the kernel: replies to rejected packets, which the kernel cannot queue, will be lost", "err", err)
	}
	a.planned = rcfg.Plan != nil
	a.table, err = rules.Install(conn, rcfg)
	if err != nil {
		conn.CloseLasting()
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.pickupOpen.Store(rcfg.Pickup)
	a.setGeneration = a.table.SetGeneration
	// A restart of the host's nftables service (`nft flush ruleset`) takes
	// our table with it, and then nothing is filtered: put it back. The
	// guard stops before the table is removed on the way out, or it would
	// put it back then too.
	gctx, stopGuard := context.WithCancel(ctx)
	guardDone := make(chan struct{})
	a.guarded.Store(true)
	go func() {
		defer close(guardDone)
		err := a.table.Guard(gctx, 5*time.Second, a.log)
		a.guarded.Store(false)
		if gctx.Err() == nil {
			a.guardErr <- err
		}
	}()
	return func() {
		stopGuard()
		<-guardDone
		defer conn.CloseLasting()
		if a.leaveTable.Load() {
			a.log.Info("nft table left in place for the agent that replaces this one")
			return
		}
		switch err := a.table.Remove(); {
		case errors.Is(err, rules.ErrTableReplaced):
			a.log.Warn("nft table replaced by another agent; leaving it in place")
		case err != nil:
			a.log.Error("remove nft table", "err", err)
		default:
			a.log.Info("nft table removed")
		}
	}, nil
}

// serve runs the started agent until it stops, and says why.
func (a *Agent) serve(ctx, runCtx context.Context, replace <-chan os.Signal) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	defer a.endProbation()

	if a.metricsLn != nil {
		a.health = a.serveMetrics(runCtx, a.metricsLn, a.flows)
		defer a.health.SetReady(false)
	}
	if a.cfg.WatchPolicy {
		a.watchPolicy(runCtx)
	}
	var pickup <-chan time.Time
	if a.pickupOpen.Load() {
		pickup = time.After(a.cfg.PickupWindow)
		a.log.Info("start-up pickup window open: mid-stream TCP packets of flows older than the agent count as established", "window", a.cfg.PickupWindow)
	}
	if a.health != nil {
		a.health.SetReady(true)
	}
	prog := a.shared.Policy().Program
	a.log.Info("ready", "policy", a.cfg.PolicyPath, "rules", prog.NumRules(), "generation", a.gen,
		"hooks", fmt.Sprint(a.cfg.Rules.Hooks), "audit", prog.Audit())
	for {
		select {
		case <-ctx.Done():
			if a.health != nil {
				a.health.SetReady(false)
			}
			a.log.Info("stopping", "reason", context.Cause(ctx))
			return nil
		case err := <-a.logDone:
			if err != nil && runCtx.Err() == nil {
				return fmt.Errorf("agent: drop log stopped: %w", err)
			}
		case <-hup:
			_ = a.reloadLogged() // logged and counted
		case <-replace:
			a.leaveTable.Store(true)
			a.log.Warn("a new agent started with --replace takes over; stopping")
			return ErrReplaced
		case err := <-a.guardErr:
			// An agent that guards nothing only looks like protection:
			// stop, and let the service manager say so.
			return fmt.Errorf("agent: no longer guarding the table, stopping: %w", err)
		case <-pickup:
			pickup = nil
			if err := a.table.EndPickup(); err != nil {
				a.log.Error("cannot end the start-up pickup window; retrying", "err", err)
				pickup = time.After(time.Second)
				continue
			}
			a.pickupOpen.Store(false)
			a.log.Info("start-up pickup window closed")
		}
	}
}

// Reload loads the policy file again and, if it compiles and its tests
// pass, makes it the policy in force under a new generation (on probation
// with --confirm-reloads). Every attempt is counted in the metrics, with
// its result.
func (a *Agent) Reload() (err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer func() { a.reloads.Record(time.Now(), err) }()
	prog, err := a.load("keeping the policy in force")
	if err != nil {
		var tf *policyfile.TestsFailedError
		if errors.As(err, &tf) {
			a.testRefusals.Add(1)
		}
		return err
	}
	prev := a.shared.Policy().Program
	if err := a.apply(prog); err != nil {
		return err
	}
	a.log.Info("policy reloaded", "rules", prog.NumRules(), "generation", a.gen)
	if a.cfg.ConfirmReloads > 0 {
		a.startProbation(prev)
	}
	return nil
}

// apply makes prog the policy in force under the next generation. Callers
// hold a.mu.
func (a *Agent) apply(prog *policies.Program) error {
	gen := nextGeneration(a.gen, a.cfg.Rules.Marks)
	// A policy that reads more of each packet needs the larger copy range
	// in force before it decides; one that reads less lowers it after.
	copyRange := a.cfg.Verdict.MaxPacketLen
	if copyRange == 0 {
		copyRange = prog.CopyRange()
	}
	if a.engine != nil && copyRange > a.engine.CopyRange() {
		if err := a.setCopyRange(copyRange); err != nil {
			return err
		}
	}
	// The new policy goes live before the kernel's offload rule moves, so a
	// flow re-queued by the move is decided by the new policy.
	var (
		plan *rules.Plan
		err  error
	)
	if a.planned {
		plan, err = rules.Compile(prog, a.cfg.Rules)
		switch {
		case err != nil && a.cfg.KernelRules:
			return fmt.Errorf("agent: reload: %w", err)
		case err != nil:
			// --kernel-rules off: the policy is queued whole all the same;
			// only the packets the kernel cannot queue keep the old plan.
			a.log.Warn("the new policy does not compile for the kernel: packets the kernel cannot queue are still decided by the old one", "err", err)
			plan, err = nil, nil
		}
	}
	old := a.shared.Policy()
	a.shared.SetPolicy(&pipeline.Policy{Program: prog, Gen: gen})
	if a.engine != nil && copyRange < a.engine.CopyRange() {
		if err := a.setCopyRange(copyRange); err != nil {
			// Copying more than needed only costs time.
			a.log.Warn("cannot lower the queue copy range", "bytes", copyRange, "err", err)
		}
	}
	if plan != nil {
		// One transaction: the policy chains' contents and the offload
		// rules' generation change together.
		if err = a.table.SetPlan(plan, gen); err != nil {
			// The kernel still runs the old policy's rules: so must the
			// agent, or the two halves would disagree.
			a.shared.SetPolicy(&pipeline.Policy{Program: old.Program, Gen: old.Gen})
		}
	} else {
		err = a.setGeneration(gen)
	}
	if err != nil {
		return fmt.Errorf("agent: reload: %w", err)
	}
	a.gen = gen
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
		return uint32(time.Now().UnixNano())%m.MaxGen() + 1
	}
	return binary.LittleEndian.Uint32(b[:])%m.MaxGen() + 1
}

func nextGeneration(g uint32, m nf.Marks) uint32 {
	g++
	if g > m.MaxGen() || g == 0 {
		g = 1
	}
	return g
}

// watchInterfaces keeps the interface-name cache that iif/oif rules and the
// drop log read in step with renames and removals.
func (a *Agent) watchInterfaces(ctx context.Context) {
	if err := a.ifs.Watch(ctx); err != nil {
		a.log.Warn("interface renames will not be seen until restart", "err", err)
	}
}
