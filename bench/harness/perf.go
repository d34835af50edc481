package harness

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// With veth the receiver's input path, netfilter included, runs in softirq
// on the sender's core, so a table's cost shows as sender packets not sent.
// The packet rates of these VMs move by a third within minutes, more than a
// table costs; the share of the sender core's samples that fall in
// netfilter's functions moves far less, because whatever slows the core
// slows both sides of the ratio. It is what -perf adds to every max-rate
// UDP run.

// perfSampleHz is the sampling rate: odd, so that it does not beat with
// the kernel's 1000 Hz tick or the sender's pacing.
const perfSampleHz = 997

// senderSampler is a running `perf record` of the sender's core.
type senderSampler struct {
	p    *proc
	data string
}

// startSenderSampler samples the sender's core (cpu-clock, every task on
// it) for the run's duration. perf itself runs on the firewall core: it
// observes, it changes nothing, and it must not take the sender's time.
func (h *harness) startSenderSampler(ctx context.Context, label string) (*senderSampler, error) {
	data := filepath.Join(h.tmp, "perf-"+label+".data")
	cmd := exec.CommandContext(ctx, "taskset", "-c", strconv.Itoa(h.opt.firewallCPU), "perf", "record", "-q",
		"-e", "cpu-clock", "-F", strconv.Itoa(perfSampleHz), "-C", strconv.Itoa(h.opt.senderCPU), "-o", data,
		"--", "sleep", strconv.FormatFloat(h.opt.duration.Seconds(), 'f', 3, 64))
	p, err := startProc(ctx, "perf", cmd, "", 0)
	if err != nil {
		return nil, err
	}
	return &senderSampler{p: p, data: data}, nil
}

// netfilterShare waits for the sampler and returns the percentage of the
// sender core's busy samples (idle and perf's own left out) spent in
// netfilter.
func (s *senderSampler) netfilterShare(ctx context.Context, duration time.Duration) (float64, error) {
	if err := s.p.wait(duration + 30*time.Second); err != nil {
		return 0, err
	}
	out, err := exec.CommandContext(ctx, "perf", "report", "-i", s.data, "-q", "--stdio", "--no-children",
		"--sort", "comm,sym").Output()
	if err != nil {
		return 0, fmt.Errorf("bench: perf report: %w", err)
	}
	return parsePerfNetfilterShare(string(out))
}

// parsePerfNetfilterShare reads `perf report --sort comm,sym` lines
// ("  9.20%  send  [k] nft_do_chain") and returns the netfilter symbols'
// share of the samples of every task but the idle task and perf.
func parsePerfNetfilterShare(out string) (float64, error) {
	var busy, nf float64
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasSuffix(f[0], "%") {
			continue
		}
		pct, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "%"), 64)
		if err != nil {
			return 0, fmt.Errorf("bench: perf report line %q: %w", sc.Text(), err)
		}
		// The comm may hold spaces; the symbol follows the [k] or [.] mark.
		at := -1
		for i := 2; i < len(f); i++ {
			if f[i] == "[k]" || f[i] == "[.]" {
				at = i
				break
			}
		}
		if at < 0 || at+1 >= len(f) {
			return 0, fmt.Errorf("bench: perf report line %q: no symbol", sc.Text())
		}
		lines++
		comm := strings.Join(f[1:at], " ")
		if comm == "swapper" || comm == "perf" {
			continue
		}
		busy += pct
		if f[at] == "[k]" && netfilterSymbol(f[at+1]) {
			nf += pct
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("bench: perf report: %w", err)
	}
	if lines == 0 || busy == 0 {
		return 0, fmt.Errorf("bench: perf report: no busy samples")
	}
	return 100 * nf / busy, nil
}

// netfilterSymbol reports whether a kernel function is netfilter's: the
// hook walk, nf_tables and its expressions and sets, conntrack, the queue
// and the xt compatibility targets.
func netfilterSymbol(sym string) bool {
	for _, p := range []string{"nft_", "__nft_", "nf_", "__nf_", "nfqnl_", "nfnl_", "nfnetlink_", "xt_", "ipv4_conntrack", "ipv6_conntrack", "ctnetlink_"} {
		if strings.HasPrefix(sym, p) {
			return true
		}
	}
	return false
}
