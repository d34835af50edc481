package harness

import (
	"math"
	"strings"
	"testing"
)

// perfReport is `perf report -q --stdio --no-children --sort comm,sym` of a
// sampled flood through a compiled table, cut down, with an idle task, perf
// itself, a comm with a space and a user-space symbol added.
const perfReport = `
    10.47%  send             [k] pvm_irq_enable
     9.20%  send             [k] nft_do_chain
     6.56%  send             [k] skb_set_owner_w
     5.32%  send             [k] udp_queue_rcv_one_skb
     1.44%  send             [k] nft_meta_set_eval
     1.04%  send             [k] nft_hash_lookup_fast
     0.91%  send             [k] nft_do_chain_inet
     0.30%  send             [k] nf_hook_slow
     0.20%  send             [k] __nf_conntrack_find_get
     0.10%  send             [.] nft_like_user_function
     2.00%  kworker/0:1 H    [k] nft_counter_obj_eval
     1.00%  kworker/0:1 H    [k] process_one_work
    40.00%  swapper          [k] pv_native_safe_halt
     1.00%  swapper          [k] nft_do_chain
     0.50%  perf             [k] nft_do_chain
`

func TestParsePerfNetfilterShare(t *testing.T) {
	got, err := parsePerfNetfilterShare(perfReport)
	if err != nil {
		t.Fatal(err)
	}
	// Busy: everything but swapper and perf; netfilter: the kernel's nft_,
	// nf_ and __nf_ functions of those tasks, not the user-space symbol.
	busy := 10.47 + 9.20 + 6.56 + 5.32 + 1.44 + 1.04 + 0.91 + 0.30 + 0.20 + 0.10 + 2.00 + 1.00
	nf := 9.20 + 1.44 + 1.04 + 0.91 + 0.30 + 0.20 + 2.00
	if want := 100 * nf / busy; math.Abs(got-want) > 1e-9 {
		t.Errorf("share %.4f%%, want %.4f%%", got, want)
	}
	for _, bad := range []string{"", "    40.00%  swapper  [k] pv_native_safe_halt\n", "  x%  send  [k] nft_do_chain extra\n", "  1.00%  send  nft_do_chain x\n"} {
		if v, err := parsePerfNetfilterShare(bad); err == nil {
			t.Errorf("parsePerfNetfilterShare(%q) = %v, want an error", bad, v)
		}
	}
}

func TestKernelPathBarShowsNetfilterShare(t *testing.T) {
	res := sample()
	share := func(v float64) *float64 { return &v }
	find(res, "kernel").point("max").SenderNetfilterPct = share(0.1)
	find(res, "fwagent-1000-kernel").point("max").SenderNetfilterPct = share(17.25)
	for _, b := range evaluateBars(res) {
		if strings.HasPrefix(b.Name, "1,000-rule policy in the kernel") {
			if !strings.Contains(b.Measured, "netfilter 17.2% vs 0.1% of the sender core") {
				t.Errorf("bar %q: %q, want the sampled netfilter shares", b.Name, b.Measured)
			}
			return
		}
	}
	t.Fatal("no kernel-path bar")
}

// A table cannot make the kernel faster: when one of the kernel-path runs
// delivers clearly more than kernel only, kernel only's run was slowed by
// something else, and a ratio to it would pass the bar on noise.
func TestKernelPathBarsNotJudgedOnDisturbedBaseline(t *testing.T) {
	res := sample()
	kernelPath := func() map[string]Bar {
		m := map[string]Bar{}
		for _, b := range evaluateBars(res) {
			if strings.Contains(b.Name, "kernel only") && (strings.Contains(b.Name, "in the kernel") || strings.Contains(b.Name, "nft rule")) {
				m[b.Name] = b
			}
		}
		return m
	}
	if got := kernelPath(); len(got) != 3 {
		t.Fatalf("%d kernel-path bars against kernel only, want 3: %v", len(got), got)
	}
	find(res, "fwagent-1000-kernel").point("max").DeliveredPPS = 1.06 * find(res, "kernel").point("max").DeliveredPPS
	for name, b := range kernelPath() {
		if b.Met != "n/a" || !strings.Contains(b.Measured, "kernel only's run was disturbed: fwagent-1000-kernel delivered 1.06×") {
			t.Errorf("bar %q on a disturbed baseline: met %q, %q", name, b.Met, b.Measured)
		}
	}
	// Within the noise allowance the bars are judged as usual.
	find(res, "fwagent-1000-kernel").point("max").DeliveredPPS = 1.04 * find(res, "kernel").point("max").DeliveredPPS
	if b := kernelPath()["1,000-rule policy in the kernel (--kernel-rules auto) vs kernel only, delivered pps at max, nothing queued"]; b.Met != "yes" {
		t.Errorf("1.04x kernel only: met %q (%s), want yes", b.Met, b.Measured)
	}
}
