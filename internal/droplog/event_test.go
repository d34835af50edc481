package droplog

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fwagent/fwagent/internal/packet"
)

var testTime = time.Date(2026, 11, 27, 13, 4, 5, 120000, time.FixedZone("CET", 3600))

func TestAppendJSON(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{
			name: "tcp syn-ack ipv4, every field",
			ev: Event{
				Time: testTime, Rule: "block-ssh", Verdict: "drop", Event: "drop", Hook: "input",
				Family: packet.IPv4, Proto: packet.ProtoTCP,
				Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("198.51.100.7"),
				SrcPort: 40000, DstPort: 22, Length: 60, In: "eth0", Out: "eth1",
				L4: true, TCPFlags: packet.TCPSyn | packet.TCPAck,
				Prefix: "fwagent:drop", Mark: 0x00310000,
			},
			// The time is converted to UTC and keeps all nine digits.
			want: `{"time":"2026-11-27T12:04:05.000120000Z","rule":"block-ssh","verdict":"drop","event":"drop","hook":"input","family":"ipv4","proto":"tcp","src":"192.0.2.1","dst":"198.51.100.7","sport":40000,"dport":22,"length":60,"in":"eth0","out":"eth1","tcp_flags":"SA","prefix":"fwagent:drop","mark":3211264}`,
		},
		{
			name: "tcp flags in pf order, no interfaces",
			ev: Event{
				Time: testTime.UTC(), Rule: "default", Verdict: "reject", Event: "reject", Hook: "output",
				Family: packet.IPv6, Proto: packet.ProtoTCP,
				Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"),
				SrcPort: 1, DstPort: 443, Length: 1280, L4: true, TCPFlags: 0xff,
				Prefix: "fwagent:reject",
			},
			want: `{"time":"2026-11-27T12:04:05.000120000Z","rule":"default","verdict":"reject","event":"reject","hook":"output","family":"ipv6","proto":"tcp","src":"2001:db8::1","dst":"2001:db8::2","sport":1,"dport":443,"length":1280,"tcp_flags":"FSRPAUEW","prefix":"fwagent:reject","mark":0}`,
		},
		{
			name: "icmp echo reply keeps type 0",
			ev: Event{
				Time: testTime, Rule: "r", Verdict: "accept", Event: "would_drop", Hook: "forward",
				Family: packet.IPv4, Proto: packet.ProtoICMP,
				Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
				Length: 84, In: "veth0", Out: "veth1", L4: true, ICMPType: 0, ICMPCode: 0,
				Prefix: "fwagent:would_drop", Mark: 5,
			},
			want: `{"time":"2026-11-27T12:04:05.000120000Z","rule":"r","verdict":"accept","event":"would_drop","hook":"forward","family":"ipv4","proto":"icmp","src":"10.0.0.1","dst":"10.0.0.2","length":84,"in":"veth0","out":"veth1","icmp_type":0,"icmp_code":0,"prefix":"fwagent:would_drop","mark":5}`,
		},
		{
			name: "socket owner and cgroup",
			ev: Event{
				Time: testTime.UTC(), Rule: "r", Verdict: "drop", Event: "drop", Hook: "output",
				Family: packet.IPv4, Proto: packet.ProtoUDP, Length: 60,
				HasUID: true, UID: 65534, HasGID: true, GID: 100, HasCgroup: true, Cgroup: "user.slice/x\n",
			},
			want: `{"time":"2026-11-27T12:04:05.000120000Z","rule":"r","verdict":"drop","event":"drop","hook":"output","family":"ipv4","proto":"udp","length":60,"prefix":"","mark":0,"uid":65534,"gid":100,"cgroup":"/user.slice/x\n"}`,
		},
		{
			name: "icmpv6 unreachable",
			ev: Event{
				Time: testTime, Rule: "r", Verdict: "drop", Event: "drop", Hook: "input",
				Family: packet.IPv6, Proto: packet.ProtoICMPv6,
				Src: netip.MustParseAddr("fe80::1"), Dst: netip.MustParseAddr("ff02::1"),
				Length: 72, L4: true, ICMPType: 1, ICMPCode: 4, Prefix: "fwagent:drop",
			},
			want: `{"time":"2026-11-27T12:04:05.000120000Z","rule":"r","verdict":"drop","event":"drop","hook":"input","family":"ipv6","proto":"icmpv6","src":"fe80::1","dst":"ff02::1","length":72,"icmp_type":1,"icmp_code":4,"prefix":"fwagent:drop","mark":0}`,
		},
		{
			name: "protocol without a name or ports",
			ev: Event{
				Time: testTime, Rule: "rule-9", Verdict: "drop", Event: "drop", Hook: "forward",
				Family: packet.IPv4, Proto: 4,
				Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
				Length: 40, Prefix: "fwagent:drop",
			},
			want: `{"time":"2026-11-27T12:04:05.000120000Z","rule":"rule-9","verdict":"drop","event":"drop","hook":"forward","family":"ipv4","proto":"4","src":"10.0.0.1","dst":"10.0.0.2","length":40,"prefix":"fwagent:drop","mark":0}`,
		},
		{
			name: "named protocols",
			ev:   Event{Time: testTime, Family: packet.IPv4, Proto: packet.ProtoESP},
			want: `{"time":"2026-11-27T12:04:05.000120000Z","rule":"","verdict":"","event":"","hook":"","family":"ipv4","proto":"esp","length":0,"prefix":"","mark":0}`,
		},
		{
			name: "udp without a decoded transport header has no ports or flags",
			ev: Event{
				Time: testTime, Rule: "r", Verdict: "drop", Event: "drop", Hook: "input",
				Family: packet.IPv4, Proto: packet.ProtoUDP,
				Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
				Length: 1500, Prefix: "fwagent:drop",
			},
			want: `{"time":"2026-11-27T12:04:05.000120000Z","rule":"r","verdict":"drop","event":"drop","hook":"input","family":"ipv4","proto":"udp","src":"10.0.0.1","dst":"10.0.0.2","length":1500,"prefix":"fwagent:drop","mark":0}`,
		},
		{
			name: "payload not decoded",
			ev: Event{
				Time: testTime, Rule: "default", Verdict: "drop", Event: "drop", Hook: "input",
				Prefix: "fwagent:drop", In: "lo",
			},
			want: `{"time":"2026-11-27T12:04:05.000120000Z","rule":"default","verdict":"drop","event":"drop","hook":"input","family":"unknown","proto":"0","length":0,"in":"lo","prefix":"fwagent:drop","mark":0}`,
		},
		{
			name: "hostile interface names and prefix are escaped",
			ev: Event{
				Time: testTime, Rule: "a\"b\\c", Verdict: "drop", Event: "drop", Hook: "input",
				Family: packet.IPv4, Proto: packet.ProtoUDP, L4: true,
				In:     "eth0\",\"rule\":\"allow-all\"}\n{\"x\":\"",
				Out:    "\x00\x1f\t\r\b\f",
				Prefix: "fwagent:drop\u2028\u2029<script>&\xff",
			},
			want: `{"time":"2026-11-27T12:04:05.000120000Z","rule":"a\"b\\c","verdict":"drop","event":"drop","hook":"input","family":"ipv4","proto":"udp","length":0,` +
				`"in":"eth0\",\"rule\":\"allow-all\"}\n{\"x\":\"","out":"\u0000\u001f\t\r\b\f",` +
				`"prefix":"fwagent:drop\u2028\u2029\u003cscript\u003e\u0026\ufffd","mark":0}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(tt.ev.AppendJSON(nil))
			if got != tt.want {
				t.Fatalf("AppendJSON:\n got %s\nwant %s", got, tt.want)
			}
			if strings.ContainsAny(got, "\n\r") {
				t.Fatalf("encoded event spans lines: %q", got)
			}
			// The same bytes as encoding/json would produce from the schema.
			std, err := json.Marshal(toStd(&tt.ev))
			if err != nil {
				t.Fatal(err)
			}
			if got != string(std) {
				t.Fatalf("differs from encoding/json:\n got %s\nwant %s", got, std)
			}
			viaMarshal, err := json.Marshal(&tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if string(viaMarshal) != got {
				t.Fatalf("MarshalJSON = %s, want %s", viaMarshal, got)
			}
			// Hostile strings survive the round trip unchanged.
			var back map[string]any
			if err := json.Unmarshal([]byte(got), &back); err != nil {
				t.Fatalf("not valid JSON: %v", err)
			}
			for key, s := range map[string]string{"in": tt.ev.In, "out": tt.ev.Out, "rule": tt.ev.Rule} {
				if s == "" || !utf8.ValidString(s) {
					continue
				}
				if back[key] != s {
					t.Fatalf("%s round-tripped to %q, want %q", key, back[key], s)
				}
			}
		})
	}
}

func TestAppendJSONAppends(t *testing.T) {
	ev := Event{Time: testTime, Rule: "r"}
	prefix := []byte("prior;")
	got := ev.AppendJSON(prefix)
	if !bytes.HasPrefix(got, []byte("prior;{")) || !json.Valid(got[len("prior;"):]) {
		t.Fatalf("AppendJSON did not append one object: %s", got)
	}
}

var stdProtoNames = map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "icmpv6", 132: "sctp"}

// toStd is e in jsonEvent, the schema as a struct for encoding/json: the
// oracle that AppendJSON must match byte for byte, and the baseline it is
// benchmarked against.
func toStd(e *Event) *jsonEvent {
	s := &jsonEvent{
		Time: e.Time.UTC().Format(timeLayout), Rule: e.Rule, Verdict: e.Verdict, Event: e.Event,
		Hook: e.Hook, Family: e.Family.String(), Sport: e.SrcPort, Dport: e.DstPort,
		Length: e.Length, In: e.In, Out: e.Out, Prefix: e.Prefix, Mark: e.Mark,
	}
	if n, ok := stdProtoNames[e.Proto]; ok {
		s.Proto = n
	} else {
		s.Proto = strconv.Itoa(int(e.Proto))
	}
	if e.Src.IsValid() {
		s.Src = e.Src.String()
	}
	if e.Dst.IsValid() {
		s.Dst = e.Dst.String()
	}
	if e.HasUID {
		u := e.UID
		s.UID = &u
	}
	if e.HasGID {
		g := e.GID
		s.GID = &g
	}
	if e.HasCgroup {
		c := "/" + e.Cgroup
		s.Cgroup = &c
	}
	if e.L4 {
		switch e.Proto {
		case packet.ProtoTCP:
			var f []byte
			for i, l := range "FSRPAUEW" {
				if e.TCPFlags&(1<<i) != 0 {
					f = append(f, byte(l))
				}
			}
			fs := string(f)
			s.TCPFlags = &fs
		case packet.ProtoICMP, packet.ProtoICMPv6:
			ty, code := e.ICMPType, e.ICMPCode
			s.ICMPType, s.ICMPCode = &ty, &code
		}
	}
	return s
}

// FuzzAppendJSON checks that any strings and numbers encode exactly as
// encoding/json would encode the schema: valid, one line, nothing forged.
func FuzzAppendJSON(f *testing.F) {
	f.Add("fwagent:drop", "eth0", "", "block", uint8(6), uint8(0x12), uint8(0), uint32(0x10000))
	f.Add("fwagent:\"}\n", "a\u2028b", "\xff\xfe", "<&>", uint8(1), uint8(0), uint8(8), uint32(0))
	f.Add("", "", "", "", uint8(200), uint8(0), uint8(0), uint32(0xffffffff))
	f.Fuzz(func(t *testing.T, prefix, in, out, rule string, proto, flags, icmpType uint8, mark uint32) {
		ev := Event{
			Time: testTime, Rule: rule, Verdict: "drop", Event: "drop", Hook: "input",
			Family: packet.IPv6, Proto: proto, Src: netip.IPv6Loopback(), Dst: netip.IPv6Loopback(),
			SrcPort: uint16(mark), DstPort: uint16(mark >> 16), Length: int(mark), In: in, Out: out,
			L4: flags&1 == 0, TCPFlags: flags, ICMPType: icmpType, ICMPCode: flags,
			Prefix: prefix, Mark: mark,
		}
		got := ev.AppendJSON(nil)
		want, err := json.Marshal(toStd(&ev))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON:\n got %s\nwant %s", got, want)
		}
		if bytes.ContainsAny(got, "\n\r") {
			t.Fatalf("encoded event spans lines: %q", got)
		}
	})
}

func TestAppendTimeMatchesFormat(t *testing.T) {
	times := []time.Time{
		{}, time.Unix(0, 0), time.Unix(1, 1), testTime,
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 29, 7, 8, 9, 10, time.FixedZone("x", -5*3600-1800)),
	}
	for i := int64(0); i < 2000; i++ {
		times = append(times, time.Unix(i*987654321+i*i*1234567, i*7919%1e9))
	}
	for _, ts := range times {
		got := string(appendTime(nil, ts))
		if want := ts.UTC().Format(timeLayout); got != want {
			t.Fatalf("appendTime(%v) = %s, want %s", ts, got, want)
		}
	}
}

func FuzzAppendTime(f *testing.F) {
	f.Add(int64(0), int64(0))
	f.Add(int64(253402300799), int64(999999999))
	f.Fuzz(func(t *testing.T, sec, nsec int64) {
		ts := time.Unix(sec, nsec)
		if got, want := string(appendTime(nil, ts)), ts.UTC().Format(timeLayout); got != want {
			t.Fatalf("appendTime(%d, %d) = %s, want %s", sec, nsec, got, want)
		}
	})
}

func BenchmarkAppendTime(b *testing.B) {
	ts := testTime
	buf := make([]byte, 0, 64)
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = appendTime(buf[:0], ts)
		}
	})
	b.Run("AppendFormat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = ts.UTC().AppendFormat(buf[:0], timeLayout)
		}
	})
}
