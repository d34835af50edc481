package droplog

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/testing/eventually"
)

func TestParseEventRoundTrip(t *testing.T) {
	tests := []Event{
		{Time: testTime.UTC(), Rule: "block-ssh", Verdict: "drop", Event: "drop", Hook: "input", Family: packet.IPv4,
			Proto: packet.ProtoTCP, Src: netip.MustParseAddr("192.0.2.7"), Dst: netip.MustParseAddr("10.0.0.5"),
			SrcPort: 51514, DstPort: 22, Length: 60, In: "eth0", L4: true, TCPFlags: packet.TCPSyn | packet.TCPAck,
			Prefix: "fwagent:drop", Mark: 0x10001},
		{Time: testTime.UTC(), Rule: "ping", Verdict: "accept", Event: "would_drop", Hook: "forward", Family: packet.IPv6,
			Proto: packet.ProtoICMPv6, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"),
			Length: 104, In: "eth\"0", Out: "wg<0>", L4: true, ICMPType: 128, Prefix: "fwagent:would_drop"},
		{Time: testTime.UTC(), Rule: "default", Verdict: "unknown", Event: "unknown", Hook: "unknown", Proto: 4},
		{Time: testTime.UTC(), Rule: "r", Verdict: "drop", Event: "drop", Hook: "input", Family: packet.IPv4,
			Proto: packet.ProtoUDP, SrcPort: 53, DstPort: 9, Length: 1428},
		{Time: testTime.UTC(), Rule: "owned", Verdict: "drop", Event: "drop", Hook: "output", Family: packet.IPv4,
			Proto: packet.ProtoUDP, SrcPort: 5000, DstPort: 53, Length: 60,
			HasUID: true, UID: 65534, HasGID: true, GID: 0, HasCgroup: true, Cgroup: "system.slice/a \"b\".service"},
		{Time: testTime.UTC(), Rule: "root-cgroup", Verdict: "drop", Event: "drop", Hook: "output", Family: packet.IPv4,
			Proto: packet.ProtoUDP, Length: 60, HasUID: true, UID: 0, HasCgroup: true},
	}
	for _, want := range tests {
		t.Run(want.Rule, func(t *testing.T) {
			line := want.AppendJSON(nil)
			var got Event
			if err := ParseEvent(line, &got); err != nil {
				t.Fatalf("ParseEvent(%s): %v", line, err)
			}
			if got != want {
				t.Fatalf("round trip of %s:\n got %+v\nwant %+v", line, got, want)
			}
		})
	}
}

func TestParseEventRejects(t *testing.T) {
	for _, line := range []string{
		``, `{`, `[]`, `{"time":"yesterday"}`,
		`{"time":"2026-11-27T13:04:05.000000000Z","proto":"tcpx"}`,
		`{"time":"2026-11-27T13:04:05.000000000Z","proto":"256"}`,
		`{"time":"2026-11-27T13:04:05.000000000Z","proto":"tcp","src":"1.2.3"}`,
		`{"time":"2026-11-27T13:04:05.000000000Z","proto":"tcp","tcp_flags":"SX"}`,
		`{"time":"2026-11-27T13:04:05.000000000Z","proto":"tcp","dport":70000}`,
	} {
		var e Event
		if err := ParseEvent([]byte(line), &e); err == nil {
			t.Errorf("ParseEvent(%q) = %+v, want an error", line, e)
		}
	}
}

func logLines(n int, start time.Time) []byte {
	var b bytes.Buffer
	for i := range n {
		e := Event{Time: start.Add(time.Duration(i) * time.Minute), Rule: fmt.Sprintf("r%d", i%3),
			Event: []string{"drop", "would_drop"}[i%2], Verdict: "drop", Hook: "input", Family: packet.IPv4, Proto: packet.ProtoUDP, DstPort: uint16(i)}
		b.Write(e.AppendJSON(nil))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func TestScanFilters(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	data := logLines(12, start)
	data = append(data, "not json\n"...)
	data = append(data, logLines(1, start.Add(time.Hour))...) // no trailing newline needed
	data = bytes.TrimSuffix(data, []byte("\n"))
	tests := []struct {
		name  string
		f     Filter
		ports []uint16
	}{
		{"everything", Filter{}, []uint16{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0}},
		{"rule", Filter{Rule: "r1"}, []uint16{1, 4, 7, 10}},
		{"event", Filter{Event: "would_drop"}, []uint16{1, 3, 5, 7, 9, 11}},
		{"since", Filter{Since: start.Add(10 * time.Minute)}, []uint16{10, 11, 0}},
		{"all three", Filter{Rule: "r0", Event: "drop", Since: start.Add(5 * time.Minute)}, []uint16{6, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ports []uint16
			skipped, err := Scan(bytes.NewReader(data), tt.f, func(line []byte, e *Event) error {
				if !bytes.HasPrefix(line, []byte(`{"time":`)) {
					t.Fatalf("line %q", line)
				}
				ports = append(ports, e.DstPort)
				return nil
			})
			if err != nil || skipped != 1 {
				t.Fatalf("Scan: skipped %d, %v; want 1 skipped, no error", skipped, err)
			}
			if !slices.Equal(ports, tt.ports) {
				t.Fatalf("ports %v, want %v", ports, tt.ports)
			}
		})
	}
}

func TestScanSkipsOverlongLines(t *testing.T) {
	data := append(bytes.Repeat([]byte("x"), 3*maxLine), '\n')
	data = append(data, logLines(2, testTime)...)
	n := 0
	skipped, err := Scan(bytes.NewReader(data), Filter{}, func([]byte, *Event) error { n++; return nil })
	if err != nil || skipped != 1 || n != 2 {
		t.Fatalf("Scan: %d events, %d skipped, %v; want 2, 1, nil", n, skipped, err)
	}
}

// TestFollowAcrossRotation appends to a log, rotates it the way lumberjack
// does (rename, then a new file) and appends more: Follow must pass on
// every line exactly once, in order, including a line written in two parts.
func TestFollowAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.json")
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	lines := bytes.SplitAfter(logLines(9, start), []byte("\n"))[:9]
	appendTo := func(b []byte) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	appendTo(bytes.Join(lines[:3], nil))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var ports []uint16
	got := func() int { mu.Lock(); defer mu.Unlock(); return len(ports) }
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, path, 5*time.Millisecond, Filter{}, func(_ []byte, e *Event) error {
			mu.Lock()
			ports = append(ports, e.DstPort)
			mu.Unlock()
			return nil
		})
	}()
	waitFor := func(n int) {
		t.Helper()
		if !eventually.True(20*time.Second, time.Millisecond, func() bool { return got() >= n }) {
			t.Fatalf("got %d events, want %d", got(), n)
		}
	}
	waitFor(3)
	half := len(lines[3]) / 2
	appendTo(lines[3][:half])
	appendTo(lines[3][half:])
	appendTo(lines[4])
	waitFor(5)
	appendTo(lines[5])
	if err := os.Rename(path, filepath.Join(dir, "events-old.json")); err != nil {
		t.Fatal(err)
	}
	appendTo(bytes.Join(lines[6:], nil))
	waitFor(9)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []uint16{0, 1, 2, 3, 4, 5, 6, 7, 8}
	if !slices.Equal(ports, want) {
		t.Fatalf("followed ports %v, want %v", ports, want)
	}
}

func FuzzParseEvent(f *testing.F) {
	for _, l := range strings.Split(strings.TrimSpace(string(logLines(4, testTime))), "\n") {
		f.Add([]byte(l))
	}
	f.Add([]byte(`{"time":"2026-11-27T13:04:05.000120000Z","rule":"r","verdict":"drop","event":"drop","hook":"input","family":"ipv6","proto":"icmpv6","src":"2001:db8::1","dst":"2001:db8::2","length":104,"icmp_type":128,"icmp_code":0,"prefix":"fwagent:drop","mark":1}`))
	f.Add([]byte(`{"time":"2026-11-27T13:04:05Z","proto":"tcp","tcp_flags":"FSRPAUEW"}`))
	f.Add([]byte(`{"time":"2026-11-27T13:04:05Z","proto":"udp","uid":65534,"gid":0,"cgroup":"/system.slice/a\n.service"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var e Event
		if ParseEvent(line, &e) != nil {
			return
		}
		// Whatever parses is an event: writing it and reading it back is
		// stable.
		again := e.AppendJSON(nil)
		var e2 Event
		if err := ParseEvent(again, &e2); err != nil {
			t.Fatalf("re-encoded %s does not parse: %v", again, err)
		}
		e.Time, e2.Time = e.Time.UTC(), e2.Time.UTC()
		if !e.Time.Equal(e2.Time) {
			t.Fatalf("time %v became %v", e.Time, e2.Time)
		}
		e.Time, e2.Time = time.Time{}, time.Time{}
		if e != e2 {
			t.Fatalf("parse(append(parse(x))) differs:\n %+v\n %+v", e, e2)
		}
	})
}

func TestParseTime(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, loc)
	for in, want := range map[string]time.Time{
		"30m":                         now.Add(-30 * time.Minute),
		"2d":                          now.Add(-48 * time.Hour),
		"1w":                          now.Add(-7 * 24 * time.Hour),
		"1d12h":                       now.Add(-36 * time.Hour),
		"1w1d":                        now.Add(-8 * 24 * time.Hour),
		"2026-11-27T10:00:00Z":        time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
		"2026-11-27T10:00:00.5+02:00": time.Date(2026, 11, 27, 8, 0, 0, 5e8, time.UTC),
		"2026-11-27T10:00:00":         time.Date(2026, 11, 27, 10, 0, 0, 0, loc),
		"2026-11-27 10:00":            time.Date(2026, 11, 27, 10, 0, 0, 0, loc),
		"2026-11-26":                  time.Date(2026, 11, 26, 0, 0, 0, 0, loc),
	} {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2x", "d", "-1d", "1d-2h", "2026-13-01"} {
		if got, err := ParseTime(bad, now); err == nil {
			t.Errorf("ParseTime(%q) = %v, want an error", bad, got)
		}
	}
}

func TestFilterAddressesPortsProtos(t *testing.T) {
	tcp := Event{Proto: packet.ProtoTCP, Src: netip.MustParseAddr("::ffff:192.0.2.7"), Dst: netip.MustParseAddr("10.0.0.5"), SrcPort: 4000, DstPort: 22}
	icmp := Event{Proto: packet.ProtoICMP, Src: netip.MustParseAddr("192.0.2.7"), Dst: netip.MustParseAddr("10.0.0.5")}
	pfx := func(s string) []netip.Prefix { p, _ := ParsePrefix(s); return []netip.Prefix{p} }
	tests := []struct {
		f         Filter
		tcp, icmp bool
	}{
		{Filter{Src: pfx("192.0.2.7")}, true, true},
		{Filter{Src: pfx("192.0.2.0/25"), Dst: pfx("10.0.0.0/8")}, true, true},
		{Filter{Dst: pfx("10.0.1.0/24")}, false, false},
		{Filter{Dport: []PortRange{{20, 25}}}, true, false},
		{Filter{Sport: []PortRange{{1, 1}, {4000, 4000}}}, true, false},
		{Filter{Protos: []uint8{packet.ProtoICMP}}, false, true},
	}
	for i, tt := range tests {
		if got := tt.f.Match(&tcp); got != tt.tcp {
			t.Errorf("%d: tcp %v", i, got)
		}
		if got := tt.f.Match(&icmp); got != tt.icmp {
			t.Errorf("%d: icmp %v", i, got)
		}
	}
}
