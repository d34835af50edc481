package main

import (
	"bytes"
	"compress/gzip"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/droplog"
	"github.com/fwagent/fwagent/internal/packet"
)

func writeLog(t *testing.T, events []droplog.Event) []byte {
	t.Helper()
	var b bytes.Buffer
	for i := range events {
		b.Write(events[i].AppendJSON(nil))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func TestLogs(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	events := []droplog.Event{
		{Time: t0, Rule: "default", Verdict: "drop", Event: "drop", Hook: "input", Family: packet.IPv4, Proto: packet.ProtoTCP,
			Src: netip.MustParseAddr("192.0.2.7"), Dst: netip.MustParseAddr("10.0.0.5"), SrcPort: 51514, DstPort: 23,
			Length: 60, In: "eth0", L4: true, TCPFlags: packet.TCPSyn, Prefix: "fwagent:drop"},
		{Time: t0.Add(30 * time.Minute), Rule: "ping", Verdict: "accept", Event: "would_drop", Hook: "input", Family: packet.IPv6,
			Proto: packet.ProtoICMPv6, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"),
			Length: 104, L4: true, ICMPType: 128},
		{Time: t0.Add(50 * time.Minute), Rule: "default", Verdict: "drop", Event: "drop", Hook: "input", Family: packet.IPv4,
			Proto: packet.ProtoUDP, Src: netip.MustParseAddr("192.0.2.8"), Dst: netip.MustParseAddr("10.0.0.5"), SrcPort: 5353, DstPort: 5353, Length: 80},
	}
	data := writeLog(t, events)
	dir := t.TempDir()
	plain := filepath.Join(dir, "events.json")
	if err := os.WriteFile(plain, append(append([]byte(nil), data...), "garbage\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	gzPath := filepath.Join(dir, "events-old.json.gz")
	if err := os.WriteFile(gzPath, gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		f       logsFlags
		stdin   []byte
		want    []string // output lines, in order
		wantErr string
	}{
		{name: "readable", f: logsFlags{file: plain}, want: []string{
			`2026-11-27T12:00:00.000Z drop         default          tcp 192.0.2.7:51514 -> 10.0.0.5:23 in="eth0" flags=S len=60 hook=input`,
			`2026-11-27T12:30:00.000Z would_drop   ping             icmpv6 2001:db8::1 -> 2001:db8::2 type=128 code=0 len=104 hook=input`,
			`2026-11-27T12:50:00.000Z drop         default          udp 192.0.2.8:5353 -> 10.0.0.5:5353 len=80 hook=input`,
		}},
		{name: "rule and event, json", f: logsFlags{file: plain, rule: "default", event: "drop", json: true}, want: []string{
			string(events[0].AppendJSON(nil)), string(events[2].AppendJSON(nil)),
		}},
		{name: "since a duration", f: logsFlags{file: gzPath, since: "35m", json: true}, want: []string{
			string(events[1].AppendJSON(nil)), string(events[2].AppendJSON(nil)),
		}},
		{name: "since a time, stdin", f: logsFlags{since: "2026-11-27T12:40:00Z", json: true}, stdin: data, want: []string{
			string(events[2].AppendJSON(nil)),
		}},
		{name: "since days", f: logsFlags{file: plain, since: "1d", json: true}, want: []string{
			string(events[0].AppendJSON(nil)), string(events[1].AppendJSON(nil)), string(events[2].AppendJSON(nil)),
		}},
		{name: "since and until, absolute", f: logsFlags{file: plain, since: "2026-11-27T12:10:00Z", until: "2026-11-27T12:40:00+00:00", json: true}, want: []string{
			string(events[1].AppendJSON(nil)),
		}},
		{name: "until a duration", f: logsFlags{file: plain, until: "45m", json: true}, want: []string{
			string(events[0].AppendJSON(nil)),
		}},
		{name: "src prefix", f: logsFlags{file: plain, src: []string{"192.0.2.0/24"}, json: true}, want: []string{
			string(events[0].AppendJSON(nil)), string(events[2].AppendJSON(nil)),
		}},
		{name: "dst address, v6", f: logsFlags{file: plain, dst: []string{"2001:db8::2"}, json: true}, want: []string{
			string(events[1].AppendJSON(nil)),
		}},
		{name: "dport range and sport", f: logsFlags{file: plain, dport: []string{"20-30"}, json: true}, want: []string{
			string(events[0].AppendJSON(nil)),
		}},
		{name: "sport list", f: logsFlags{file: plain, sport: []string{"1", "5353"}, json: true}, want: []string{
			string(events[2].AppendJSON(nil)),
		}},
		{name: "proto", f: logsFlags{file: plain, proto: []string{"icmpv6", "17"}, json: true}, want: []string{
			string(events[1].AppendJSON(nil)), string(events[2].AppendJSON(nil)),
		}},
		{name: "all filters", f: logsFlags{file: plain, proto: []string{"TCP"}, src: []string{"192.0.2.7"}, dst: []string{"10.0.0.0/8"}, dport: []string{"23"}, since: "2h", json: true}, want: []string{
			string(events[0].AppendJSON(nil)),
		}},
		{name: "bad since", f: logsFlags{file: plain, since: "yesterday"}, wantErr: "--since"},
		{name: "bad src", f: logsFlags{file: plain, src: []string{"10.0.0.0/33"}}, wantErr: "--src"},
		{name: "bad dport", f: logsFlags{file: plain, dport: []string{"30-20"}}, wantErr: "--dport"},
		{name: "bad proto", f: logsFlags{file: plain, proto: []string{"tcpp"}}, wantErr: "--proto"},
		{name: "bad event", f: logsFlags{file: plain, event: "dropped"}, wantErr: "--event"},
		{name: "follow needs a file", f: logsFlags{follow: true}, wantErr: "--follow needs --file"},
		{name: "missing file", f: logsFlags{file: filepath.Join(dir, "nope")}, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := tt.f.run(t.Context(), bytes.NewReader(tt.stdin), &out, &errOut, t0.Add(time.Hour))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("output:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if tt.f.file == plain && !strings.Contains(errOut.String(), "skipped 1 lines") {
				t.Fatalf("stderr %q does not report the skipped line", errOut.String())
			}
		})
	}
}
