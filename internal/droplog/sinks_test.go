package droplog

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	nflog "github.com/florianl/go-nflog/v2"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/capture"
	"github.com/fwagent/fwagent/internal/testing/eventually"
	"github.com/fwagent/fwagent/internal/testing/rawpcap"
	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// udpMsg is a logged UDP packet to dport with `extra` payload bytes and
// sequence number seq.
func udpMsg(t testing.TB, dport uint16, extra int, seq uint32) nflog.Attribute {
	t.Helper()
	a := attrs(build(t, ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 1, DstPort: layers.UDPPort(dport)}, gopacketPayload(extra)),
		"fwagent:drop", 0, unix.NF_INET_LOCAL_IN, 0, 0, unix.ETH_P_IP)
	a.Seq = &seq
	return a
}

func TestRateLimitShedsAndCountsExactly(t *testing.T) {
	var now int64
	var buf bytes.Buffer
	r := newTestReader(t, Config{Rate: 10, Burst: 5, Clock: func() int64 { return now }}, NewJSONSink(&buf))

	seq := uint32(0)
	port := uint16(0)
	var wantPorts []uint16
	steps := []struct {
		name   string
		at     time.Duration // clock when the messages arrive
		sent   int
		passed int // how many the limit lets through: the first ones
	}{
		{"a full bucket passes the burst", 0, 20, 5},
		{"a second refills only up to the burst", time.Second, 20, 5},
		{"100ms refill one token at 10/s", time.Second + 100*time.Millisecond, 3, 1},
		{"no time, no tokens", time.Second + 100*time.Millisecond, 4, 0},
		{"250ms refill two", time.Second + 350*time.Millisecond, 2, 2},
	}
	var sent, passed uint64
	for _, st := range steps {
		now = int64(st.at)
		for i := range st.sent {
			port++
			seq++
			r.handle(udpMsg(t, port, 0, seq))
			if i < st.passed {
				wantPorts = append(wantPorts, port)
			}
		}
		sent += uint64(st.sent)
		passed += uint64(st.passed)
		s := r.Stats()
		if s.Received != sent || s.RateLimited != sent-passed || s.Shed != 0 {
			t.Fatalf("%s: stats %+v, want Received %d, RateLimited %d", st.name, s, sent, sent-passed)
		}
	}
	// A gap in the sequence numbers of a rate-limited message still counts.
	seq += 2
	r.handle(udpMsg(t, 999, 0, seq))
	if s := r.Stats(); s.Lost != 1 || s.RateLimited != sent-passed+1 {
		t.Fatalf("after a gap: %+v, want Lost 1, RateLimited %d", r.Stats(), sent-passed+1)
	}

	stop := r.startSinks()
	r.shutdown()
	stop()
	s := r.Stats()
	if s.Written != passed || s.Received != s.Written+s.Shed+s.RateLimited {
		t.Fatalf("after drain: %+v, want Written %d and the counts to add up", s, passed)
	}
	var gotPorts []uint16
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var ev struct{ Dport uint16 }
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		gotPorts = append(gotPorts, ev.Dport)
	}
	if !slices.Equal(gotPorts, wantPorts) {
		t.Fatalf("written ports %v, want %v", gotPorts, wantPorts)
	}
}

func TestNewReaderRejectsBadRates(t *testing.T) {
	sink := NewJSONSink(&bytes.Buffer{})
	for _, c := range []Config{
		{Rate: -1},
		{Rate: 1, Burst: -1},
		{Rate: posInf()},
		{PacketBuffer: -1},
	} {
		c.Marks = testMarks(t)
		if _, err := NewReader(c, sink); err == nil {
			t.Errorf("NewReader(rate %v burst %d packet buffer %d) succeeded", c.Rate, c.Burst, c.PacketBuffer)
		}
	}
}

func TestPcapSinkThroughReader(t *testing.T) {
	var pcap, js bytes.Buffer
	ps, err := NewPcapSink(&pcap)
	if err != nil {
		t.Fatal(err)
	}
	r := newTestReader(t, Config{}, ps, NewJSONSink(&js))
	if !r.keepPackets {
		t.Fatal("a PacketSink did not make the reader keep packets")
	}
	var want [][]byte
	var times []time.Time
	for i := range 3 {
		a := udpMsg(t, uint16(100+i), 10*i, uint32(i))
		ts := time.Unix(1_800_000_000+int64(i), int64(i)*1000)
		a.Timestamp = &ts
		want = append(want, append([]byte(nil), *a.Payload...))
		times = append(times, ts)
		r.handle(a)
	}
	// A message without a payload reaches the JSON log but not the pcap.
	noPayload := udpMsg(t, 1, 0, 3)
	noPayload.Payload = nil
	r.handle(noPayload)

	stop := r.startSinks()
	r.shutdown()
	stop()
	if n := strings.Count(js.String(), "\n"); n != 4 {
		t.Fatalf("JSON sink got %d lines, want 4", n)
	}
	if r.queuedBytes.Load() != 0 {
		t.Fatalf("queued packet bytes = %d after the drain, want 0", r.queuedBytes.Load())
	}
	cr, err := capture.Open(&pcap)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		f, err := cr.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(f.Data, want[i]) || !f.Timestamp.Equal(times[i].Truncate(time.Microsecond)) || f.Truncated {
			t.Fatalf("frame %d: %x at %v (truncated %v), want %x at %v", i, f.Data, f.Timestamp, f.Truncated, want[i], times[i])
		}
	}
	if _, err := cr.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}

func TestPacketBufferShedsOverTheByteBudget(t *testing.T) {
	var pcap bytes.Buffer
	ps, err := NewPcapSink(&pcap)
	if err != nil {
		t.Fatal(err)
	}
	// Each message is a 28-byte IPv4+UDP packet: three fit in 100 bytes.
	r := newTestReader(t, Config{PacketBuffer: 100}, ps)
	for i := range 5 {
		r.handle(udpMsg(t, uint16(i+1), 0, uint32(i)))
	}
	if s := r.Stats(); s.Received != 5 || s.Shed != 2 {
		t.Fatalf("stats %+v, want Received 5, Shed 2", s)
	}
	stop := r.startSinks()
	r.shutdown()
	stop()
	if s := r.Stats(); s.Written != 3 || r.queuedBytes.Load() != 0 {
		t.Fatalf("stats %+v, queued bytes %d; want Written 3, 0 bytes", s, r.queuedBytes.Load())
	}
	if n := len(rawpcap.Frames(t, &pcap)); n != 3 {
		t.Fatalf("pcap holds %d frames, want 3", n)
	}
}

// readDports reads a pcap file and returns the UDP destination port of every
// frame (the tests number packets by port).
func readDports(t *testing.T, path string) []uint16 {
	t.Helper()
	var ports []uint16
	for _, f := range rawpcap.FileFrames(t, path) {
		ports = append(ports, binary.BigEndian.Uint16(f.Data[22:24]))
	}
	return ports
}

func TestPcapFileRotatesAndKeepsBackups(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "drops.pcap")
	if err := os.WriteFile(path, []byte("an older capture"), 0o600); err != nil {
		t.Fatal(err)
	}
	const maxBytes = 300_000 // clamped up to 262,184 at least: one largest record
	s, err := openPcapFile(path, maxBytes, 2)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "drops.1.pcap")); err != nil || string(b) != "an older capture" {
		t.Fatalf("the file already at the path was not rotated away: %q, %v", b, err)
	}
	const n = 1000
	ts := time.Unix(1_800_000_000, 0)
	for i := range n {
		a := udpMsg(t, uint16(i), 1372, 0) // 1400-byte packets
		if err := s.WritePacket(ts, *a.Payload); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	names, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"drops.1.pcap", "drops.2.pcap", "drops.pcap"}
	var got []string
	for _, p := range names {
		got = append(got, filepath.Base(p))
	}
	if strings.Join(got, " ") != strings.Join(wantNames, " ") {
		t.Fatalf("files %v, want %v", got, wantNames)
	}
	// Newest last: .2, .1, then the live file hold a contiguous run of
	// packets ending with the last one written.
	var ports []uint16
	for _, name := range []string{"drops.2.pcap", "drops.1.pcap", "drops.pcap"} {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxBytes {
			t.Fatalf("%s is %d bytes, over the cap %d", name, fi.Size(), maxBytes)
		}
		if fi.Mode().Perm() != 0o640 {
			t.Fatalf("%s has mode %v, want 0640", name, fi.Mode().Perm())
		}
		ports = append(ports, readDports(t, p)...)
	}
	if len(ports) == 0 || len(ports) >= n {
		t.Fatalf("%d packets kept of %d: rotation removed nothing or everything", len(ports), n)
	}
	for i, p := range ports {
		if want := uint16(n - len(ports) + i); p != want {
			t.Fatalf("packet %d of the kept ones has port %d, want %d", i, p, want)
		}
	}
}

// TestTcpdumpReadsPcapSink checks the file with a pcap tool other than ours.
func TestTcpdumpReadsPcapSink(t *testing.T) {
	testnet.RequireCommands(t, "tcpdump")
	path := filepath.Join(t.TempDir(), "drops.pcap")
	s, err := OpenPcapFile(path, RotateConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		a := udpMsg(t, uint16(4000+i), 0, 0)
		if err := s.WritePacket(time.Unix(1_800_000_000, int64(i)*1000), *a.Payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out := testnet.TcpdumpRead(t, path)
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "192.0.2.1.1 > 198.51.100.7.") {
			lines = append(lines, sc.Text())
		}
	}
	if len(lines) != 5 || !strings.Contains(lines[4], ".4004: UDP") {
		t.Fatalf("tcpdump read %d packets, want 5 ending with port 4004:\n%s", len(lines), out)
	}
}

func TestRotatingFileCapsTotalSize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.json")
	const maxMB, backups = 1, 2
	capBytes := int64(maxMB<<20) * (backups + 1)
	w, err := OpenRotatingFile(path, RotateConfig{MaxSizeMB: maxMB, MaxBackups: backups})
	if err != nil {
		t.Fatal(err)
	}
	sink := NewJSONSink(w)
	ev := Event{Time: testTime, Rule: strings.Repeat("r", 200), Verdict: "drop", Event: "drop", Hook: "input"}
	var written int64
	last := 0
	for i := 0; written < 2*capBytes; i++ {
		ev.Mark = uint32(i)
		if err := sink.Write(&ev); err != nil {
			t.Fatal(err)
		}
		written += int64(len(ev.AppendJSON(nil))) + 1
		if i%100 == 0 {
			if err := sink.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		last = i
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// lumberjack removes old backups on its own goroutine right after a
	// rotation; wait for it to catch up.
	var files []os.DirEntry
	eventually.True(20*time.Second, 10*time.Millisecond, func() bool {
		if files, err = os.ReadDir(dir); err != nil {
			t.Fatal(err)
		}
		return len(files) <= backups+1
	})
	if len(files) > backups+1 || len(files) < 2 {
		t.Fatalf("%d files on disk, want 2..%d (rotated, old ones removed)", len(files), backups+1)
	}
	var total int64
	for _, f := range files {
		p := filepath.Join(dir, f.Name())
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxMB<<20 {
			t.Fatalf("%s is %d bytes, over %d MiB", f.Name(), fi.Size(), maxMB)
		}
		if fi.Mode().Perm() != 0o640 {
			t.Fatalf("%s has mode %v, want 0640", f.Name(), fi.Mode().Perm())
		}
		total += fi.Size()
		// Rotation happens between whole lines: every file is valid JSON
		// lines.
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Fatalf("%s ends mid-line", f.Name())
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
			if !json.Valid(line) {
				t.Fatalf("%s: invalid line %.80q", f.Name(), line)
			}
		}
	}
	if total > capBytes {
		t.Fatalf("%d bytes on disk after writing %d, over the cap %d", total, written, capBytes)
	}
	// The live file ends with the last event.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte(`"mark":`+strconv.Itoa(last)+"}\n")) {
		t.Fatalf("live file does not end with event %d: ...%q", last, b[max(0, len(b)-40):])
	}
}

func TestRotateConfigRejectsNegatives(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []RotateConfig{{MaxSizeMB: -1}, {MaxBackups: -1}, {MaxAgeDays: -1}} {
		if _, err := OpenRotatingFile(filepath.Join(dir, "x.json"), c); err == nil {
			t.Errorf("OpenRotatingFile(%+v) succeeded", c)
		}
		if _, err := OpenPcapFile(filepath.Join(dir, "x.pcap"), c); err == nil {
			t.Errorf("OpenPcapFile(%+v) succeeded", c)
		}
	}
}

func TestJSONSinkWritesWholeLines(t *testing.T) {
	// A writer that records each Write: every one must end a line, so a
	// rotating file never splits an event between two files.
	w := &lineWriter{writes: make(chan []byte, 1024)}
	s := NewJSONSink(w)
	ev := Event{Time: testTime, Rule: strings.Repeat("x", 1000)}
	for range 200 {
		if err := s.Write(&ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	close(w.writes)
	lines := 0
	for b := range w.writes {
		if len(b) == 0 || b[len(b)-1] != '\n' {
			t.Fatalf("a write of %d bytes does not end a line", len(b))
		}
		lines += bytes.Count(b, []byte("\n"))
	}
	if lines != 200 {
		t.Fatalf("%d lines written, want 200", lines)
	}
}

func gopacketPayload(n int) gopacket.Payload { return gopacket.Payload(make([]byte, n)) }

func posInf() float64 { return math.Inf(1) }
