package rules

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
)

// Table is the installed fwagent table. It remembers the handles of its rules
// so SetGeneration can rewrite the offload rules in place.
type Table struct {
	conn  *nftables.Conn
	table *nftables.Table

	mu     sync.Mutex // guards everything below; every kernel change holds it
	cfg    Config
	kind   QueueKind
	chains []installedChain
}

type installedChain struct {
	hook  nf.Hook
	chain *nftables.Chain
	// policy is the hook's policy chain, nil when the kernel runs no
	// policy (Config.Plan nil); blocks are the block chains it jumps to.
	policy *nftables.Chain
	blocks []*nftables.Chain
	// handles by rule name, read back from the kernel after install.
	handles map[string]uint64
}

func ownTable() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

func chainHook(h nf.Hook) *nftables.ChainHook {
	switch h {
	case nf.HookForward:
		return nftables.ChainHookForward
	case nf.HookOutput:
		return nftables.ChainHookOutput
	}
	return nftables.ChainHookInput
}

// Install builds the table in one netlink transaction: it adds the fwagent
// table, deletes it (removing a table a crashed agent left behind, chains,
// rules and all) and adds it again with its chains and rules. The kernel
// applies the batch atomically: on error nothing changes, and packets never
// see a half-built table. With cfg.QueueKind == QueueAuto, Install first calls
// Probe.
//
// Any change already buffered on c is sent in the same batch.
func Install(c *nftables.Conn, cfg Config) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	kind := cfg.QueueKind
	if kind == QueueAuto {
		var err error
		if kind, err = Probe(c); err != nil {
			return nil, err
		}
	}
	t := &Table{conn: c, table: ownTable(), cfg: cfg, kind: kind}
	if err := t.install(); err != nil {
		return nil, err
	}
	return t, nil
}

// install sends the install batch and records the new rule handles.
func (t *Table) install() error {
	chains, err := t.queueInstall()
	if err != nil {
		return err
	}
	if err := t.conn.Flush(); err != nil {
		if t.kind == QueueNative && isErrno(err, unix.ENOENT) {
			err = fmt.Errorf("%w (the kernel may lack the nft queue expression: use the xt queue kind)", err)
		}
		return fmt.Errorf("rules: install table inet %s (queue kind %s): %w", TableName, t.kind, err)
	}
	for i := range chains {
		ic := &chains[i]
		h, err := t.readHandles(ic.chain, chainRules(t.cfg, ic.hook, t.kind))
		if err != nil {
			return err
		}
		ic.handles = h
		if err := t.checkPolicyChain(ic, t.cfg); err != nil {
			return err
		}
	}
	t.chains = chains
	return nil
}

// checkPolicyChain checks that the policy chain holds as many rules as the
// plan says.
func (t *Table) checkPolicyChain(ic *installedChain, cfg Config) error {
	if ic.policy == nil {
		return nil
	}
	got, err := t.conn.GetRules(t.table, ic.policy)
	if err != nil {
		if isErrno(err, unix.ENOENT) {
			return fmt.Errorf("%w: chain %s is gone", ErrTableChanged, ic.policy.Name)
		}
		return fmt.Errorf("rules: read back chain %s: %w", ic.policy.Name, err)
	}
	if want := len(policyLayout(cfg, ic.hook, t.kind, ic.policy.Name).main); len(got) != want {
		return fmt.Errorf("%w: chain %s has %d rules, want %d", ErrTableChanged, ic.policy.Name, len(got), want)
	}
	return nil
}

// queueInstall buffers the install batch on t.conn and returns the chains
// it adds, without handles yet.
func (t *Table) queueInstall() ([]installedChain, error) {
	c := t.conn
	// Adding before deleting makes the delete succeed whether or not a stale
	// table exists, without a racy lookup first.
	c.AddTable(t.table)
	c.DelTable(t.table)
	c.AddTable(t.table)
	policy := nftables.ChainPolicyAccept
	t.addCounters(t.cfg.Plan)
	var chains []installedChain
	for _, h := range t.cfg.Hooks {
		var pc *nftables.Chain
		var blocks []*nftables.Chain
		if t.cfg.Plan != nil {
			// Before the base chain, whose last rule jumps to it.
			var err error
			pc, blocks, err = addLayout(c, t.table, policyChain(h), policyLayout(t.cfg, h, t.kind, policyChain(h)))
			if err != nil {
				return nil, err
			}
		}
		if t.cfg.stateless() {
			addVerdictsChain(c, t.table, t.cfg, h)
		}
		ch := c.AddChain(&nftables.Chain{
			Name:     h.String(),
			Table:    t.table,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  chainHook(h),
			Priority: nftables.ChainPriorityRef(nftables.ChainPriority(t.cfg.Priority)),
			Policy:   &policy,
		})
		for _, r := range chainRules(t.cfg, h, t.kind) {
			c.AddRule(r.nft(t.table, ch))
		}
		chains = append(chains, installedChain{hook: h, chain: ch, policy: pc, blocks: blocks})
	}
	return chains, nil
}

// readHandles maps rule names to the handles the kernel gave them and checks
// the chain holds exactly the rules we sent, in order.
func (t *Table) readHandles(ch *nftables.Chain, want []rule) (map[string]uint64, error) {
	got, err := t.conn.GetRules(t.table, ch)
	if err != nil {
		return nil, fmt.Errorf("rules: read back chain %s: %w", ch.Name, err)
	}
	if len(got) != len(want) {
		return nil, fmt.Errorf("rules: chain %s has %d rules after install, want %d", ch.Name, len(got), len(want))
	}
	handles := make(map[string]uint64, len(got))
	for i, r := range got {
		name, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		if name != want[i].name {
			return nil, fmt.Errorf("rules: chain %s rule %d is %q, want %q", ch.Name, i, name, want[i].name)
		}
		handles[name] = r.Handle
	}
	return handles, nil
}

// ErrTableChanged reports that the installed table is no longer what
// Install built: something outside the agent (`nft flush ruleset`, a restart
// of the host's nftables service, an operator) deleted or edited it.
var ErrTableChanged = errors.New("rules: table inet " + TableName + " changed outside the agent")

// ErrTableReplaced reports that the `inet fwagent` table in the kernel is no
// longer the one this Table installed: another agent has replaced it.
var ErrTableReplaced = errors.New("rules: table inet " + TableName + " was replaced by another agent")

// Verify checks that every chain still holds the rules Install created, in
// order, under the same handles. It returns an error wrapping
// ErrTableChanged if not: the host is then no longer filtered as configured
// (if the table is gone, nothing is queued at all) and the caller should
// Reinstall. It reads the kernel, so call it from a slow loop, not per
// packet.
func (t *Table) Verify() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ic := range t.chains {
		got, err := t.conn.GetRules(t.table, ic.chain)
		if err != nil {
			if isErrno(err, unix.ENOENT) {
				return fmt.Errorf("%w: chain %s is gone", ErrTableChanged, ic.chain.Name)
			}
			return fmt.Errorf("rules: verify chain %s: %w", ic.chain.Name, err)
		}
		want := chainRules(t.cfg, ic.hook, t.kind)
		if len(got) != len(want) {
			return fmt.Errorf("%w: chain %s has %d rules, want %d", ErrTableChanged, ic.chain.Name, len(got), len(want))
		}
		for i, r := range got {
			name, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			if name != want[i].name || r.Handle != ic.handles[name] {
				return fmt.Errorf("%w: chain %s rule %d is %q handle %d, want %q handle %d", ErrTableChanged, ic.chain.Name, i, name, r.Handle, want[i].name, ic.handles[want[i].name])
			}
		}
		if err := t.checkPolicyChain(&ic, t.cfg); err != nil {
			return err
		}
	}
	return nil
}

// Reinstall builds the table again, as Install does, with the same
// configuration and the current generation, replacing whatever is there. It
// is the repair for ErrTableChanged; on a healthy table it needlessly drops
// the packets waiting in the queues, so call it only after Verify fails.
func (t *Table) Reinstall() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.install()
}

// QueueKind is the queue rule the table was installed with.
func (t *Table) QueueKind() QueueKind { return t.kind }

// Generation is the policy generation the offload rules carry now.
func (t *Table) Generation() uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cfg.Generation
}

// Handles returns a copy of the rule handles of the chain for hook h, by rule
// name (nil if the table has no such chain).
func (t *Table) Handles(h nf.Hook) map[string]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ic := range t.chains {
		if ic.hook == h {
			out := make(map[string]uint64, len(ic.handles))
			for k, v := range ic.handles {
				out[k] = v
			}
			return out
		}
	}
	return nil
}

// SetGeneration rewrites the offload rules of every chain to generation
// gen, replacing each by its handle. Base chains and every other rule stay
// as they are: deleting a base chain would drop every packet waiting in the
// queues. Flows offloaded under the old generation no longer match and go
// back to the queue to be decided again.
//
// Each rule is replaced in a transaction of its own: google/nftables
// v0.3.0 loses track of the kernel's acknowledgements when one batch
// replaces more than a few rules (it reads an echoed rule where it expects
// an ack). Every mixture of old and new generations on the way is safe,
// because a generation mismatch only ever sends a packet back to the queue
// (an offload request that no offload-set rule takes is accepted by the
// looped rule, as the agent decided): the match rules of every chain move
// first, so flows offloaded under the old generation stop being accepted
// before anything else changes.
func (t *Table) SetGeneration(gen uint32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	cfg := t.cfg
	cfg.Generation = gen
	if cfg.stateless() {
		// The generation is in the verdicts chains only.
		for _, ic := range t.chains {
			addVerdictsChain(t.conn, t.table, cfg, ic.hook)
		}
		if err := t.conn.Flush(); err != nil {
			return fmt.Errorf("rules: set generation %d: %w", gen, err)
		}
		t.cfg = cfg
		return nil
	}
	for i := range numOffloadRules {
		for _, ic := range t.chains {
			r := offloadRules(cfg, ic.hook)[i]
			nr := r.nft(t.table, ic.chain)
			nr.Handle = ic.handles[r.name]
			if nr.Handle == 0 {
				return fmt.Errorf("rules: set generation: chain %s has no %s rule", ic.chain.Name, r.name)
			}
			t.conn.ReplaceRule(nr)
			if err := t.conn.Flush(); err != nil {
				return fmt.Errorf("rules: set generation %d: rule %s of chain %s: %w", gen, r.name, ic.chain.Name, err)
			}
		}
	}
	t.cfg = cfg
	return nil
}

// Remove deletes the table (on shutdown); a table already deleted by someone
// else is not an error. Packets still waiting in a queue are then accepted
// or dropped by the kernel as the queue's bypass flag says; new packets are
// no longer queued.
func (t *Table) Remove() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch own, err := t.owner(); {
	case err != nil:
		return err
	case own == tableGone:
		return nil
	case own == tableReplaced:
		return ErrTableReplaced
	}
	t.conn.DelTable(t.table)
	if err := t.conn.Flush(); err != nil {
		if isErrno(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("rules: remove table inet %s: %w", TableName, err)
	}
	return nil
}

// RemoveStale deletes a fwagent table left by an agent that did not shut down
// cleanly, and reports whether there was one.
func RemoveStale(c *nftables.Conn) (bool, error) {
	ok, err := tableExists(c)
	if err != nil || !ok {
		return false, err
	}
	c.DelTable(ownTable())
	if err := c.Flush(); err != nil {
		if isErrno(err, unix.ENOENT) {
			return false, nil // removed by someone else meanwhile
		}
		return false, fmt.Errorf("rules: remove stale table inet %s: %w", TableName, err)
	}
	return true, nil
}

func tableExists(c *nftables.Conn) (bool, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("rules: list inet tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			return true, nil
		}
	}
	return false, nil
}

// addCounters buffers the hit counter objects plan's rules count into. An
// object that exists already is left as it is, counts and all.
func (t *Table) addCounters(plan *Plan) {
	if plan == nil {
		return
	}
	for _, name := range sortedKeys(plan.counters()) {
		t.conn.AddObj(&nftables.CounterObj{Table: t.table, Name: name})
	}
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// SetPlan replaces the compiled policy of every chain with plan and moves
// the offload rules to generation gen, in one transaction: each policy
// chain is flushed and refilled (its anonymous sets go with its old rules)
// and the two offload rules are rewritten by handle. Base chains, the
// queues and the packets waiting in them are untouched, so queued packets
// still get their verdicts. Kernel counters of the old rules are added to
// RuleHits' running totals first, so hit counts do not go backwards.
func (t *Table) SetPlan(plan *Plan, gen uint32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if (plan == nil) != (t.cfg.Plan == nil) {
		return fmt.Errorf("rules: set plan: --kernel-rules cannot change while running")
	}
	cfg := t.cfg
	cfg.Plan, cfg.Generation = plan, gen
	t.addCounters(plan)
	// A plan that needs conntrack and one that does not have different
	// base chains (stateless.go): the base chain is then refilled in the
	// same transaction, never deleted, so the queues and the packets in
	// them stay.
	rebuild := cfg.stateless() != t.cfg.stateless()
	next := make([]*nftables.Chain, len(t.chains))
	nextBlocks := make([][]*nftables.Chain, len(t.chains))
	for i, ic := range t.chains {
		if ic.policy != nil {
			nc, nblocks, err := t.replacePolicy(ic, cfg, rebuild)
			if err != nil {
				return err
			}
			next[i], nextBlocks[i] = nc, nblocks
			if rebuild {
				continue
			}
		}
		if cfg.stateless() {
			// No offload rules; the generation is in the verdicts chain.
			addVerdictsChain(t.conn, t.table, cfg, ic.hook)
			continue
		}
		if err := t.replaceOffloadRules(ic, cfg); err != nil {
			return err
		}
	}
	if err := t.conn.Flush(); err != nil {
		return fmt.Errorf("rules: set plan (generation %d): %w", gen, err)
	}
	for i := range t.chains {
		ic := &t.chains[i]
		ic.policy, ic.blocks = next[i], nextBlocks[i]
		h, err := t.readHandles(ic.chain, chainRules(cfg, ic.hook, t.kind))
		if err != nil {
			return err
		}
		ic.handles = h
	}
	t.cfg = cfg
	return nil
}

// replacePolicy buffers hook ic's new policy chain and its blocks, and the
// deletion of the old ones. The new policy goes into a fresh chain (the two
// names alternate); the base chain's jump moves to it (or, with rebuild,
// the base chain is refilled) and the old chain is flushed and deleted, all
// in one transaction, so no packet sees both policies or neither.
// Replacing rules one by one would cost a message per rule, each old rule's
// delete included.
func (t *Table) replacePolicy(ic installedChain, cfg Config, rebuild bool) (*nftables.Chain, []*nftables.Chain, error) {
	name := policyChain(ic.hook)
	if ic.policy.Name == name {
		name += "_b"
	}
	nc, nblocks, err := addLayout(t.conn, t.table, name, policyLayout(cfg, ic.hook, t.kind, name))
	if err != nil {
		return nil, nil, err
	}
	old := append([]*nftables.Chain{ic.policy}, ic.blocks...)
	if rebuild {
		rebuildBase(t.conn, t.table, ic.chain, cfg, ic.hook, t.kind, name, t.cfg.stateless())
	} else {
		jump := policyJump(cfg, name).nft(t.table, ic.chain)
		jump.Position = ic.handles[RulePolicy]
		if jump.Position == 0 {
			return nil, nil, fmt.Errorf("rules: set plan: chain %s has no %s rule", ic.chain.Name, RulePolicy)
		}
		t.conn.InsertRule(jump)
		if err := t.conn.DelRule(&nftables.Rule{Table: t.table, Chain: ic.chain, Handle: jump.Position}); err != nil {
			return nil, nil, fmt.Errorf("rules: set plan: %w", err)
		}
	}
	// The main chain first: its guards jump to the blocks.
	for _, oc := range old {
		t.conn.FlushChain(oc)
	}
	for _, oc := range old {
		t.conn.DelChain(oc)
	}
	return nc, nblocks, nil
}

// replaceOffloadRules buffers hook ic's offload rules of cfg's generation
// in place of the old ones.
func (t *Table) replaceOffloadRules(ic installedChain, cfg Config) error {
	for _, r := range offloadRules(cfg, ic.hook) {
		nr := r.nft(t.table, ic.chain)
		nr.Handle = ic.handles[r.name]
		if nr.Handle == 0 {
			return fmt.Errorf("rules: set plan: chain %s has no %s rule", ic.chain.Name, r.name)
		}
		// Insert the new rule before the old one, then delete the old: a
		// ReplaceRule in a batch with other echoed changes draws two
		// replies where google/nftables reads one.
		nr.Position, nr.Handle = nr.Handle, 0
		t.conn.InsertRule(nr)
		if err := t.conn.DelRule(&nftables.Rule{Table: t.table, Chain: ic.chain, Handle: nr.Position}); err != nil {
			return fmt.Errorf("rules: set plan: %w", err)
		}
	}
	return nil
}

// addVerdictsChain buffers a stateless table's verdicts chain for hook h.
func addVerdictsChain(c *nftables.Conn, t *nftables.Table, cfg Config, h nf.Hook) {
	vc := c.AddChain(&nftables.Chain{Name: verdictsChain(h), Table: t})
	c.FlushChain(vc)
	for _, r := range statelessAnswers(cfg) {
		c.AddRule(r.nft(t, vc))
	}
}

// rebuildBase buffers the refill of base chain ch for cfg, whose policy
// chain is now policy, when the table goes from needing conntrack to not
// or back (wasStateless: what it was).
func rebuildBase(c *nftables.Conn, t *nftables.Table, ch *nftables.Chain, cfg Config, h nf.Hook, kind QueueKind, policy string, wasStateless bool) {
	c.FlushChain(ch)
	if cfg.stateless() {
		addVerdictsChain(c, t, cfg, h)
	}
	for _, r := range chainRules(cfg, h, kind) {
		if r.name == RulePolicy {
			r = policyJump(cfg, policy)
		}
		c.AddRule(r.nft(t, ch))
	}
	if wasStateless {
		vc := &nftables.Chain{Name: verdictsChain(h), Table: t}
		c.FlushChain(vc)
		c.DelChain(vc)
	}
}

// policyChainsOf are the names of hook h's policy chain and its block
// chains now (none without a plan).
func (t *Table) policyChainsOf(h nf.Hook) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, ic := range t.chains {
		if ic.hook == h && ic.policy != nil {
			out = append(out, ic.policy.Name)
			for _, b := range ic.blocks {
				out = append(out, b.Name)
			}
		}
	}
	return out
}

// RuleHits returns, by rule name, how many packets the kernel decided by
// that rule ("default" for the hooks' defaults), summed over hooks and the
// rule's conjunctions, since the rule's name first appeared in a policy
// (the counters are named objects that reloads keep). Packets a rule
// queued are not hits: the agent counts them when it decides them. It reads
// the kernel, so call it at scrape time, not per packet.
func (t *Table) RuleHits() (map[string]uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]uint64{}
	if t.cfg.Plan == nil {
		return out, nil
	}
	names := t.cfg.Plan.counters()
	objs, err := t.conn.GetObjects(t.table)
	if err != nil {
		return nil, fmt.Errorf("rules: read hit counters: %w", err)
	}
	for _, o := range objs {
		if c, ok := o.(*nftables.CounterObj); ok {
			if rule, ok := names[c.Name]; ok {
				out[rule] += c.Packets
			}
		}
	}
	return out, nil
}
