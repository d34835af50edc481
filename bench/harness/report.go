package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

func machine(ctx context.Context) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Date: time.Now().UTC().Format(time.RFC3339)}
	if b, err := exec.CommandContext(ctx, "uname", "-r").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// write puts results.json, results.md and chart.svg in the output
// directory and, if asked, the table into bench/README.md.
func (h *harness) write(res *Results) error {
	dir := h.opt.out
	if !filepath.IsAbs(dir) && h.root != "" {
		dir = filepath.Join(h.root, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: output dir: %w", err)
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode results: %w", err)
	}
	md := markdown(res)
	files := map[string][]byte{"results.json": append(js, '\n'), "results.md": []byte(md), "chart.svg": []byte(chart(res))}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("bench: write %s: %w", name, err)
		}
	}
	fmt.Fprintln(h.stdout, md)
	h.log.Info("wrote results", "dir", dir)
	if h.opt.updateReadme {
		// The README shows the chart of the run whose table it carries.
		if err := os.WriteFile(filepath.Join(h.root, "bench/chart.svg"), files["chart.svg"], 0o644); err != nil {
			return fmt.Errorf("bench: write bench/chart.svg: %w", err)
		}
		return updateReadme(filepath.Join(h.root, "bench/README.md"), md)
	}
	return nil
}

const (
	readmeStart = "<!-- results:start -->"
	readmeEnd   = "<!-- results:end -->"
)

// updateReadme replaces what lies between the results markers.
func updateReadme(path, md string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("bench: read README: %w", err)
	}
	s := string(b)
	i, j := strings.Index(s, readmeStart), strings.Index(s, readmeEnd)
	if i < 0 || j < i {
		return fmt.Errorf("bench: %s has no %s ... %s section", path, readmeStart, readmeEnd)
	}
	s = s[:i+len(readmeStart)] + "\n" + md + "\n" + s[j:]
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		return fmt.Errorf("bench: write README: %w", err)
	}
	return nil
}

func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func num(v float64) string {
	if v == 0 {
		return "–"
	}
	if v >= 1000 {
		return fmt.Sprintf("%.0fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

func markdown(res *Results) string {
	var b strings.Builder
	m := res.Machine
	fmt.Fprintf(&b, "Run %s on %s (%d cores), kernel %s, %s. Each run %gs; UDP %d-byte payload over %d flows; sender pinned to CPU %d, handler and server-side tools to CPU %d, all at nice %d.\n\n",
		m.Date, m.CPU, m.Cores, m.Kernel, m.Go, res.Method.DurationSec, res.Method.Payload, res.Method.Flows, res.Method.SenderCPU, res.Method.FirewallCPU, res.Method.Nice)
	skipped := writeMainTable(&b, res)
	writeDropLogTable(&b, res)
	if len(res.Bars) > 0 {
		b.WriteString("### The bar (" + barConfig + " unless stated)\n\n| bar | target | measured | met |\n|---|---|---|---|\n")
		for _, bar := range res.Bars {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", bar.Name, bar.Target, bar.Measured, bar.Met)
		}
		b.WriteString("\n")
	}
	writeUDPRunsTable(&b, res)
	var errs []string
	for _, c := range res.Configs {
		for _, e := range c.Errors {
			errs = append(errs, fmt.Sprintf("- **%s**: %s", c.Name, e))
		}
	}
	if len(skipped)+len(errs) > 0 {
		b.WriteString(strings.Join(append(skipped, errs...), "\n") + "\n")
	}
	return b.String()
}

// writeMainTable writes one row per configuration that ran UDP or TCP,
// against the C loop and the naive reader at maximum load, and returns the
// notes on the configurations that were skipped.
func writeMainTable(b *strings.Builder, res *Results) (skipped []string) {
	var cMax, nMax *UDPPoint
	if c := find(res, "cloop"); c != nil {
		cMax = c.point("max")
	}
	if n := find(res, "naive"); n != nil {
		nMax = n.point("max")
	}
	b.WriteString("### UDP at the maximum offered load, latency at 50% load, TCP\n\n")
	b.WriteString("| configuration | offered pps | delivered pps | loss % | handler CPU s/Mpkt | firewall core s/Mpkt | delivered ×C | delivered ×naive | CPU ×C | CPU ×naive | loss at 80% | p50 / p99 / p99.9 µs at 50% | TCP conn/s | bulk Gbit/s |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n")
	for i := range res.Configs {
		c := &res.Configs[i]
		if c.Skipped != "" {
			skipped = append(skipped, fmt.Sprintf("- **SKIPPED %s**: %s", c.Name, c.Skipped))
			continue
		}
		if c.DropLog != nil && len(c.UDP) == 0 && c.Connect == nil && c.Bulk == nil {
			continue
		}
		b.WriteString("| " + strings.Join(mainRow(c, cMax, nMax), " | ") + " |\n")
	}
	b.WriteString("\n")
	return skipped
}

// mainRow is the main table's row for c; cMax and nMax are the C loop's and
// the naive reader's maximum-load points (nil: not run).
func mainRow(c *ConfigResult, cMax, nMax *UDPPoint) []string {
	row := []string{fmt.Sprintf("**%s** — %s", c.Name, c.Description)}
	if p := c.point("max"); p != nil {
		var dc, dn, cc, cn string = "–", "–", "–", "–"
		if cMax != nil {
			dc, cc = ratio(p.DeliveredPPS, cMax.DeliveredPPS), ratio(p.HandlerCPUPerMpkt, cMax.HandlerCPUPerMpkt)
		}
		if nMax != nil {
			dn, cn = ratio(p.DeliveredPPS, nMax.DeliveredPPS), ratio(p.HandlerCPUPerMpkt, nMax.HandlerCPUPerMpkt)
		}
		hcpu := "–"
		if p.HandlerCPUPerMpkt > 0 {
			hcpu = fmt.Sprintf("%.2f", p.HandlerCPUPerMpkt)
		}
		row = append(row, fmt.Sprintf("%.0f", p.OfferedPPS), fmt.Sprintf("%.0f", p.DeliveredPPS), fmt.Sprintf("%.3f", p.LossPct),
			hcpu, fmt.Sprintf("%.2f", p.CPU1PerMpkt), dc, dn, cc, cn)
	} else {
		row = append(row, "–", "–", "–", "–", "–", "–", "–", "–", "–")
	}
	if p := c.point("80%"); p != nil {
		row = append(row, fmt.Sprintf("%.3f%% of %.0f", p.LossPct, p.OfferedPPS))
	} else {
		row = append(row, "–")
	}
	if p := c.point("50%"); p != nil && p.Latency != nil {
		l := p.Latency
		row = append(row, fmt.Sprintf("%.0f / %.0f / %.0f (%d/%d)", l.P50us, l.P99us, l.P999us, l.Received, l.Sent))
	} else {
		row = append(row, "–")
	}
	if c.Connect != nil {
		row = append(row, fmt.Sprintf("%.0f", c.Connect.PerSec))
	} else {
		row = append(row, "–")
	}
	if c.Bulk != nil {
		row = append(row, fmt.Sprintf("%.2f (%d queued)", c.Bulk.Gbps, c.Bulk.Queued))
	} else {
		row = append(row, "–")
	}
	return row
}

// writeDropLogTable writes the drop-log configurations' table, if any ran.
func writeDropLogTable(b *strings.Builder, res *Results) {
	var dl []*ConfigResult
	for i := range res.Configs {
		if res.Configs[i].DropLog != nil {
			dl = append(dl, &res.Configs[i])
		}
	}
	if len(dl) == 0 {
		return
	}
	b.WriteString("### Drop log: every packet dropped and logged as JSON\n\n")
	b.WriteString("| reader | offered pps | events written/s | written by +1 s | written by exit | reported by the reader | queue drops | unaccounted | reader CPU s |\n|---|---:|---:|---:|---:|---|---:|---:|---:|\n")
	for _, c := range dl {
		d := c.DropLog
		rep := "none"
		if len(d.Reported) > 0 {
			var kv []string
			for _, k := range []string{"received", "written", "shed", "limited", "lost", "overruns", "errors"} {
				if v, ok := d.Reported[k]; ok {
					kv = append(kv, fmt.Sprintf("%s=%d", k, v))
				}
			}
			rep = strings.Join(kv, " ")
		}
		fmt.Fprintf(b, "| **%s** | %.0f | %.0f | %d | %d | %s | %d | %d (%.1f%%) | %.2f |\n", c.Name, d.OfferedPPS, d.EventsPerSec, d.Written, d.WrittenAtExit, rep,
			d.Queue.QueueDropped+d.Queue.UserDropped, d.Unaccounted, 100*float64(d.Unaccounted)/float64(max(d.Offered, 1)), d.HandlerCPUSec)
	}
	b.WriteString("\n")
}

// writeUDPRunsTable writes every UDP run of every configuration.
func writeUDPRunsTable(b *strings.Builder, res *Results) {
	b.WriteString("### Every UDP run\n\n| configuration | run | target pps | offered pps | skipped by the sender | delivered pps | loss % | queue full drops | netlink drops | sink drops | backlog drops (host) | handler CPU s/Mpkt | attempts |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range res.Configs {
		for _, p := range c.UDP {
			fmt.Fprintf(b, "| %s | %s | %s | %.0f | %d | %.0f | %.3f | %d | %d | %d | %d | %.2f | %d |\n", c.Name, p.Label, num(p.TargetPPS), p.OfferedPPS, p.SenderSkipped, p.DeliveredPPS, p.LossPct,
				p.Queue.QueueDropped, p.Queue.UserDropped, p.SinkDrops, p.BacklogDrops, p.HandlerCPUPerMpkt, max(p.Attempts, 1))
		}
	}
	b.WriteString("\n")
}

// chart draws delivered pps against offered pps, one line per
// configuration, with the y = x line a lossless path would follow.
func chart(res *Results) string {
	const w, hgt, ml, mr, mt, mb = 820, 520, 80, 230, 30, 60
	pw, ph := float64(w-ml-mr), float64(hgt-mt-mb)
	type series struct {
		name string
		pts  [][2]float64
	}
	var all []series
	var maxV float64
	for _, c := range res.Configs {
		var s series
		s.name = c.Name
		for _, p := range c.UDP {
			s.pts = append(s.pts, [2]float64{p.OfferedPPS, p.DeliveredPPS})
			maxV = max(maxV, p.OfferedPPS, p.DeliveredPPS)
		}
		if len(s.pts) == 0 {
			continue
		}
		slices.SortFunc(s.pts, func(a, b [2]float64) int {
			switch {
			case a[0] < b[0]:
				return -1
			case a[0] > b[0]:
				return 1
			}
			return 0
		})
		all = append(all, s)
	}
	if maxV <= 0 {
		maxV = 1
	}
	step := niceStep(maxV / 5)
	top := step * float64(int(maxV/step)+1)
	x := func(v float64) float64 { return float64(ml) + pw*v/top }
	y := func(v float64) float64 { return float64(mt) + ph*(1-v/top) }
	colors := []string{"#444444", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, hgt)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, hgt)
	for v := 0.0; v <= top+1; v += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x(0), y(v), x(top), y(v))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x(v), y(0), x(v), y(top))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x(0)-6, y(v)+4, axisLabel(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(v), y(0)+18, axisLabel(v))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999" stroke-dasharray="4 4"/>`+"\n", x(0), y(0), x(top), y(top))
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">offered packets/s (UDP, measured at the sender)</text>`+"\n", x(top/2), hgt-15)
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">delivered packets/s (at the sink)</text>`+"\n", y(top/2))
	for i, s := range all {
		col := colors[i%len(colors)]
		var pts []string
		for _, p := range s.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p[0]), y(p[1])))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, strings.Join(pts, " "))
		for _, p := range s.pts {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(p[0]), y(p[1]), col)
		}
		ly := float64(mt + 10 + 20*i)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", w-mr+15, ly, w-mr+40, ly, col)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f">%s</text>`+"\n", w-mr+46, ly+4, s.name)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func axisLabel(v float64) string {
	if v == 0 {
		return "0"
	}
	return num(v)
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	p := 1.0
	for p*10 <= v {
		p *= 10
	}
	for p > v && p > 1e-9 {
		p /= 10
	}
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
