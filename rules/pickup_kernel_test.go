package rules

import (
	"slices"
	"strings"
	"testing"
)

// TestPickupRule installs the table with the pickup rule: it sits right
// before the established rule on every hook, nft -f of Render builds the
// same, and EndPickup deletes it in place, leaving every other rule under
// its handle and a table that Verify accepts.
func TestPickupRule(t *testing.T) {
	cfg := testConfig(t)
	cfg.Pickup = true
	text := Render(cfg)
	if !strings.Contains(text, `ct state new meta l4proto tcp tcp flags & (syn | ack) == ack meta mark set meta mark | 0x00080000 comment "pickup"`) {
		t.Fatalf("Render has no pickup rule:\n%s", text)
	}
	loaded := newTestNS(t)
	loaded.mustRun(t, text, "nft", "-f", "-")

	ns := newTestNS(t)
	c := ns.conn(t)
	tbl, err := Install(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range cfg.Hooks {
		names := ruleNames(t, c, h.String())
		i := slices.Index(names, RulePickup)
		if i < 0 || i+1 >= len(names) || names[i+1] != RuleEstablished {
			t.Fatalf("chain %s: %v, want pickup right before established", h, names)
		}
	}
	var want []string
	for _, l := range ns.listing(t, "inet", TableName) {
		if !strings.HasSuffix(l, `comment "queue"`) { // Render writes the xt queue as a comment
			want = append(want, l)
		}
	}
	if got := loaded.listing(t, "inet", TableName); !slices.Equal(got, want) {
		t.Fatalf("nft -f of Render:\n%s\n\nInstall:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	before := tbl.Handles(cfg.Hooks[0])
	if !tbl.Pickup() {
		t.Fatal("Pickup() = false after installing with the pickup rule")
	}
	if err := tbl.EndPickup(); err != nil {
		t.Fatal(err)
	}
	if tbl.Pickup() {
		t.Error("Pickup() = true after EndPickup")
	}
	if err := tbl.Verify(); err != nil {
		t.Fatalf("Verify after EndPickup: %v", err)
	}
	for _, h := range cfg.Hooks {
		if names := ruleNames(t, c, h.String()); slices.Contains(names, RulePickup) {
			t.Errorf("chain %s still has the pickup rule: %v", h, names)
		}
	}
	after := tbl.Handles(cfg.Hooks[0])
	for name, h := range after {
		if before[name] != h {
			t.Errorf("rule %s moved from handle %d to %d", name, before[name], h)
		}
	}
	if len(after) != len(before)-1 {
		t.Errorf("%d rules after EndPickup, want %d", len(after), len(before)-1)
	}
	if err := tbl.EndPickup(); err != nil {
		t.Errorf("second EndPickup: %v", err)
	}
	// A repair after the window does not bring the rule back.
	ns.mustRun(t, "flush ruleset\n", "nft", "-f", "-")
	if err := tbl.Reinstall(); err != nil {
		t.Fatal(err)
	}
	if names := ruleNames(t, c, cfg.Hooks[0].String()); slices.Contains(names, RulePickup) {
		t.Errorf("Reinstall after EndPickup brought the pickup rule back: %v", names)
	}
}
