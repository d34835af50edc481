package rules

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/testing/eventually"
)

var allHooks = []nf.Hook{nf.HookInput, nf.HookForward, nf.HookOutput}

func testConfig(t *testing.T) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Hooks = allHooks
	cfg.QueueKind = QueueXT // the only kind this kernel has; Probe is tested on its own
	cfg.Generation = 3
	return cfg
}

// ruleNames reads the rule comments of a chain of the fwagent table, in order.
func ruleNames(t *testing.T, c *nftables.Conn, chain string) []string {
	t.Helper()
	rs, err := c.GetRules(ownTable(), &nftables.Chain{Name: chain, Table: ownTable()})
	if err != nil {
		t.Fatalf("get rules of %s: %v", chain, err)
	}
	var names []string
	for _, r := range rs {
		n, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		names = append(names, n)
	}
	return names
}

func wantNames(cfg Config, h nf.Hook) []string {
	var out []string
	for _, r := range chainRules(cfg, h, QueueXT) {
		out = append(out, r.name)
	}
	return out
}

func TestInstallCreatesChainsAndRules(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"defaults all hooks", func(*Config) {}},
		{"input only no essentials", func(c *Config) {
			c.Hooks = []nf.Hook{nf.HookInput}
			c.AcceptLoopback, c.AcceptICMPv6ND = false, false
		}},
		{"output and forward fanout", func(c *Config) {
			c.Hooks = []nf.Hook{nf.HookOutput, nf.HookForward}
			c.QueueBase, c.Queues, c.CPUFanout, c.Bypass = 4, 4, true, false
			c.Priority = -50
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := newTestNS(t)
			c := ns.conn(t)
			cfg := testConfig(t)
			tt.mutate(&cfg)
			tbl, err := Install(c, cfg)
			if err != nil {
				t.Fatalf("Install: %v", err)
			}
			chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ch := range chains {
				if ch.Table.Name != TableName {
					continue
				}
				got = append(got, ch.Name)
				if ch.Hooknum == nil || ch.Priority == nil || *ch.Priority != nftables.ChainPriority(cfg.Priority) {
					t.Errorf("chain %s: hook %v priority %v, want a base chain at priority %d", ch.Name, ch.Hooknum, ch.Priority, cfg.Priority)
				}
				if ch.Policy == nil || *ch.Policy != nftables.ChainPolicyAccept {
					t.Errorf("chain %s: policy %v, want accept", ch.Name, ch.Policy)
				}
			}
			var want []string
			for _, h := range cfg.Hooks {
				want = append(want, h.String())
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("chains %v, want %v", got, want)
			}
			for _, h := range cfg.Hooks {
				if names, want := ruleNames(t, c, h.String()), wantNames(cfg, h); !slices.Equal(names, want) {
					t.Errorf("chain %s rules %v, want %v", h, names, want)
				}
				if len(tbl.Handles(h)) != len(wantNames(cfg, h)) {
					t.Errorf("chain %s: %d handles recorded", h, len(tbl.Handles(h)))
				}
			}
			if tbl.QueueKind() != QueueXT {
				t.Errorf("QueueKind %s", tbl.QueueKind())
			}
		})
	}
}

func TestInstallReplacesStaleTable(t *testing.T) {
	ns := newTestNS(t)
	ns.mustRun(t, `
table inet fwagent {
	chain leftover { type filter hook input priority 0; policy accept; counter; }
	chain input { counter comment "from a crashed agent"; }
}
`, "nft", "-f", "-")
	c := ns.conn(t)
	cfg := testConfig(t)
	if _, err := Install(c, cfg); err != nil {
		t.Fatalf("Install over stale table: %v", err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tb := range tables {
		if tb.Name == TableName {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d fwagent tables after install, want 1", n)
	}
	out := ns.nft(t, "list", "table", "inet", TableName)
	if strings.Contains(out, "leftover") || strings.Contains(out, "crashed") {
		t.Fatalf("stale chain survived install:\n%s", out)
	}
	if names := ruleNames(t, c, "input"); !slices.Equal(names, wantNames(cfg, nf.HookInput)) {
		t.Fatalf("input rules %v", names)
	}
	// A second install (agent restart) replaces the first the same way.
	if _, err := Install(c, cfg); err != nil {
		t.Fatalf("second Install: %v", err)
	}
	if names := ruleNames(t, c, "input"); !slices.Equal(names, wantNames(cfg, nf.HookInput)) {
		t.Fatalf("input rules after reinstall %v", names)
	}
}

// TestForeignTablesUntouched checks every kernel-changing call against
// tables the agent does not own, including one named fwagent in another
// family.
func TestForeignTablesUntouched(t *testing.T) {
	ns := newTestNS(t)
	ns.mustRun(t, `
table inet other {
	chain input { type filter hook input priority -10; policy accept; tcp dport 22 counter accept comment "ssh"; }
}
table ip fwagent {
	chain output { type filter hook output priority 5; policy accept; meta mark 0x1 counter drop; }
}
`, "nft", "-f", "-")
	snapshot := func() []string {
		return append(ns.listing(t, "inet", "other"), ns.listing(t, "ip", "fwagent")...)
	}
	before := snapshot()
	c := ns.conn(t)
	if _, err := Probe(c); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	check := func(step string) {
		t.Helper()
		if got := snapshot(); !slices.Equal(got, before) {
			t.Fatalf("after %s foreign tables changed:\n%s\nwant\n%s", step, strings.Join(got, "\n"), strings.Join(before, "\n"))
		}
	}
	check("Probe")
	tbl, err := Install(c, testConfig(t))
	if err != nil {
		t.Fatalf("Install: %v", err)
	}
	check("Install")
	if err := tbl.SetGeneration(9); err != nil {
		t.Fatalf("SetGeneration: %v", err)
	}
	check("SetGeneration")
	if err := tbl.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	check("Remove")
	if removed, err := RemoveStale(c); err != nil || removed {
		t.Fatalf("RemoveStale with only foreign tables = %v, %v", removed, err)
	}
	check("RemoveStale")
}

// nftJSON is the part of `nft -j list table` the in-place test needs.
type nftJSON struct {
	Nftables []struct {
		Chain *struct {
			Name   string `json:"name"`
			Handle uint64 `json:"handle"`
		} `json:"chain"`
		Rule *struct {
			Chain   string `json:"chain"`
			Handle  uint64 `json:"handle"`
			Comment string `json:"comment"`
		} `json:"rule"`
	} `json:"nftables"`
}

// handlesOf returns chain name -> handle and chain/comment -> rule handle.
func handlesOf(t *testing.T, ns *testNS) (map[string]uint64, map[string]uint64) {
	t.Helper()
	var j nftJSON
	if err := json.Unmarshal([]byte(ns.nft(t, "-j", "list", "table", "inet", TableName)), &j); err != nil {
		t.Fatal(err)
	}
	chains, rs := map[string]uint64{}, map[string]uint64{}
	for _, o := range j.Nftables {
		if o.Chain != nil {
			chains[o.Chain.Name] = o.Chain.Handle
		}
		if o.Rule != nil {
			rs[o.Rule.Chain+"/"+o.Rule.Comment] = o.Rule.Handle
		}
	}
	return chains, rs
}

func TestSetGenerationInPlace(t *testing.T) {
	ns := newTestNS(t)
	c := ns.conn(t)
	cfg := testConfig(t)
	tbl, err := Install(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	chainsBefore, rulesBefore := handlesOf(t, ns)
	const gen = 42
	if err := tbl.SetGeneration(gen); err != nil {
		t.Fatalf("SetGeneration: %v", err)
	}
	chainsAfter, rulesAfter := handlesOf(t, ns)
	if len(chainsBefore) != len(cfg.Hooks) || len(rulesBefore) == 0 {
		t.Fatalf("unexpected table: chains %v rules %v", chainsBefore, rulesBefore)
	}
	for k, v := range chainsBefore {
		if chainsAfter[k] != v {
			t.Errorf("chain %s handle %d -> %d: base chain recreated", k, v, chainsAfter[k])
		}
	}
	// Replacing by handle keeps every handle, the offload rules' included.
	for k, v := range rulesBefore {
		if rulesAfter[k] != v {
			t.Errorf("rule %s handle %d -> %d", k, v, rulesAfter[k])
		}
	}
	if len(rulesAfter) != len(rulesBefore) {
		t.Errorf("%d rules after, %d before", len(rulesAfter), len(rulesBefore))
	}
	if tbl.Generation() != gen {
		t.Errorf("Generation() = %d", tbl.Generation())
	}
	// The table now reads exactly as a fresh table of generation gen.
	cfg.Generation = gen
	fresh := newTestNS(t)
	if _, err := Install(fresh.conn(t), cfg); err != nil {
		t.Fatal(err)
	}
	if got, want := ns.listing(t, "inet", TableName), fresh.listing(t, "inet", TableName); !slices.Equal(got, want) {
		t.Fatalf("after SetGeneration:\n%s\nfresh install:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	want := offloadRules(cfg, cfg.Hooks[0])[offOrig].stmts[0].(maskedCmp).value
	if out := strings.Join(ns.listing(t, "inet", TableName), "\n"); !strings.Contains(out, strings.TrimPrefix(hex32(want), "0x")) {
		t.Fatalf("listing lacks offload connmark %s:\n%s", hex32(want), out)
	}
}

func TestRemoveAndRemoveStale(t *testing.T) {
	ns := newTestNS(t)
	c := ns.conn(t)
	if removed, err := RemoveStale(c); err != nil || removed {
		t.Fatalf("RemoveStale on empty namespace = %v, %v", removed, err)
	}
	tbl, err := Install(c, testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if ok, err := tableExists(c); err != nil || ok {
		t.Fatalf("table exists after Remove: %v, %v", ok, err)
	}
	if _, err := Install(c, testConfig(t)); err != nil {
		t.Fatal(err)
	}
	if removed, err := RemoveStale(c); err != nil || !removed {
		t.Fatalf("RemoveStale with a table = %v, %v", removed, err)
	}
	// Shutdown after someone else deleted the table (nft flush ruleset).
	if err := tbl.Remove(); err != nil {
		t.Fatalf("Remove of an already deleted table: %v", err)
	}
	if ok, err := tableExists(c); err != nil || ok {
		t.Fatalf("table exists after RemoveStale: %v, %v", ok, err)
	}
}

func TestProbe(t *testing.T) {
	t.Run("no table before", func(t *testing.T) {
		ns := newTestNS(t)
		c := ns.conn(t)
		kind, err := Probe(c)
		if err != nil {
			t.Fatalf("Probe: %v", err)
		}
		// This kernel is built without CONFIG_NFT_QUEUE (DESIGN.md, Facts).
		if kind != QueueXT {
			t.Errorf("Probe = %s, want xt on this kernel", kind)
		}
		if out := ns.nft(t, "list", "ruleset"); strings.TrimSpace(out) != "" {
			t.Fatalf("Probe left state behind:\n%s", out)
		}
	})
	t.Run("installed table unchanged", func(t *testing.T) {
		ns := newTestNS(t)
		c := ns.conn(t)
		if _, err := Install(c, testConfig(t)); err != nil {
			t.Fatal(err)
		}
		before := ns.listing(t, "inet", TableName)
		if _, err := Probe(c); err != nil {
			t.Fatalf("Probe: %v", err)
		}
		if after := ns.listing(t, "inet", TableName); !slices.Equal(after, before) {
			t.Fatalf("Probe changed the table:\n%s", strings.Join(after, "\n"))
		}
	})
	t.Run("install auto", func(t *testing.T) {
		ns := newTestNS(t)
		cfg := testConfig(t)
		cfg.QueueKind = QueueAuto
		tbl, err := Install(ns.conn(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if tbl.QueueKind() != QueueXT {
			t.Errorf("auto install picked %s", tbl.QueueKind())
		}
	})
}

// TestRenderLoadsLikeInstall loads Render's output with nft -f in one
// namespace, installs the same config through netlink in another, and
// compares the two listings rule by rule. Only the queue rule differs: nft
// cannot write the xt target, so Render leaves it as a comment.
func TestRenderLoadsLikeInstall(t *testing.T) {
	m, err := nf.NewMarks(0x1ff00000)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"defaults", func(*Config) {}},
		{"other mask, priority, no essentials", func(c *Config) {
			c.Marks, c.Priority, c.Generation = m, -150, 77
			c.AcceptLoopback, c.AcceptICMPv6ND = false, false
		}},
		{"low mask", func(c *Config) {
			lm, err := nf.NewMarks(0x0001ff00)
			if err != nil {
				t.Fatal(err)
			}
			c.Marks, c.LogGroup, c.Generation = lm, 7, 4095
		}},
		{"full mask", func(c *Config) {
			fm, err := nf.NewMarks(0xffffffff)
			if err != nil {
				t.Fatal(err)
			}
			c.Marks, c.Generation = fm, 1<<27
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.mutate(&cfg)
			text := Render(cfg)
			loaded := newTestNS(t)
			loaded.mustRun(t, text, "nft", "-f", "-")
			// Loading twice replaces, as the file's add/delete preamble promises.
			loaded.mustRun(t, text, "nft", "-f", "-")
			installed := newTestNS(t)
			if _, err := Install(installed.conn(t), cfg); err != nil {
				t.Fatal(err)
			}
			got := loaded.listing(t, "inet", TableName)
			var want []string
			queues := 0
			for _, l := range installed.listing(t, "inet", TableName) {
				if strings.HasSuffix(l, `comment "queue"`) {
					queues++
					continue
				}
				want = append(want, l)
			}
			if queues != len(cfg.Hooks) {
				t.Errorf("installed table has %d queue rules, want %d", queues, len(cfg.Hooks))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("nft -f of Render:\n%s\n\nInstall:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestInstallIsAtomic makes the kernel refuse an install (this kernel has no
// native queue expression, which Validate cannot know) and checks that the
// table already there is left exactly as it was: the stale-table delete and
// the new rules live in the same transaction.
func TestInstallIsAtomic(t *testing.T) {
	ns := newTestNS(t)
	c := ns.conn(t)
	cfg := testConfig(t)
	if _, err := Install(c, cfg); err != nil {
		t.Fatal(err)
	}
	before := ns.listing(t, "inet", TableName)
	bad := cfg
	bad.QueueKind = QueueNative
	bad.Generation = 99
	if _, err := Install(c, bad); err == nil {
		t.Fatal("Install with the native queue expression succeeded on a kernel without it")
	}
	if after := ns.listing(t, "inet", TableName); !slices.Equal(after, before) {
		t.Fatalf("failed Install changed the table:\n%s\nwas\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
}

// TestVerifyAndReinstall simulates what `systemctl restart nftables` does to
// the agent's table (`flush ruleset`) and an operator's edit, and checks
// that Verify notices and Reinstall repairs, keeping the generation.
func TestVerifyAndReinstall(t *testing.T) {
	tests := []struct {
		name    string
		tamper  string
		changed bool
	}{
		{"untouched", "", false},
		{"flush ruleset", "flush ruleset", true},
		{"table deleted", "delete table inet fwagent", true},
		{"chain flushed", "flush chain inet fwagent input", true},
		{"rule inserted", `insert rule inet fwagent output counter comment "operator"`, true},
		{"foreign table added", "add table inet other", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := newTestNS(t)
			c := ns.conn(t)
			tbl, err := Install(c, testConfig(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := tbl.SetGeneration(21); err != nil {
				t.Fatal(err)
			}
			want := ns.listing(t, "inet", TableName)
			if tt.tamper != "" {
				ns.mustRun(t, tt.tamper+"\n", "nft", "-f", "-")
			}
			err = tbl.Verify()
			if got := errors.Is(err, ErrTableChanged); got != tt.changed {
				t.Fatalf("Verify() = %v, want changed=%v", err, tt.changed)
			}
			if !tt.changed {
				return
			}
			if err := tbl.Reinstall(); err != nil {
				t.Fatalf("Reinstall: %v", err)
			}
			if err := tbl.Verify(); err != nil {
				t.Fatalf("Verify after Reinstall: %v", err)
			}
			if got := ns.listing(t, "inet", TableName); !slices.Equal(got, want) {
				t.Fatalf("after Reinstall:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			// The repaired table still updates in place.
			if err := tbl.SetGeneration(22); err != nil {
				t.Fatalf("SetGeneration after Reinstall: %v", err)
			}
		})
	}
}

func TestGuardRepairs(t *testing.T) {
	ns := newTestNS(t)
	tbl, err := Install(ns.conn(t), testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	want := ns.listing(t, "inet", TableName)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tbl.Guard(ctx, 5*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	for round := range 2 {
		ns.nft(t, "flush", "ruleset")
		// Poll for the repair; the bound only stops a broken test.
		if !eventually.True(10*time.Second, 5*time.Millisecond, func() bool { return tbl.Verify() == nil }) {
			t.Fatalf("round %d: table not repaired: %v", round, tbl.Verify())
		}
		if got := ns.listing(t, "inet", TableName); !slices.Equal(got, want) {
			t.Fatalf("round %d: repaired table:\n%s\nwant\n%s", round, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Guard returned %v", err)
	}
}
