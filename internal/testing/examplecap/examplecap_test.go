package examplecap

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/cryptotest"

	"github.com/fwagent/fwagent/internal/capture"
	"github.com/fwagent/fwagent/internal/packet"
)

var update = flag.Bool("update", false, "rewrite the captures under policies/examples/testdata")

const dir = "../../../policies/examples/testdata"

// build makes the captures with crypto/rand seeded, so the ClientHellos (and
// with them the files) are the same on every run.
func build(t *testing.T) []Capture {
	t.Helper()
	cryptotest.SetGlobalRandom(t, 1)
	caps, err := All()
	if err != nil {
		t.Fatal(err)
	}
	return caps
}

// TestCommittedCaptures fails when the generator and the committed files
// differ; `go test ./internal/testing/examplecap -update` rewrites them.
func TestCommittedCaptures(t *testing.T) {
	for _, c := range build(t) {
		path := filepath.Join(dir, c.File)
		if *update {
			if err := os.WriteFile(path, c.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./internal/testing/examplecap -update)", err)
		}
		if !bytes.Equal(got, c.Data) {
			t.Errorf("%s differs from what the generator makes (%d bytes, generated %d); run go test ./internal/testing/examplecap -update and review the diff", path, len(got), len(c.Data))
		}
	}
}

// TestDeterministic: two builds give the same bytes, or the drift test
// above would fail at random.
func TestDeterministic(t *testing.T) {
	a, b := build(t), build(t)
	for i := range a {
		if !bytes.Equal(a[i].Data, b[i].Data) {
			t.Errorf("%s: two builds differ", a[i].File)
		}
	}
}

// TestCapturesRead checks every capture reads back through the reader eval
// uses, every IP packet decodes except the ones meant to be malformed, and
// the captures stay small.
func TestCapturesRead(t *testing.T) {
	// Frames each capture holds, and how many are meant not to decode.
	want := map[string]struct{ frames, skipped, bad int }{
		"host-baseline.pcap":        {41, 0, 0},
		"log-only.pcapng":           {7, 1, 0},
		"dns-blocklist.pcap":        {16, 0, 0},
		"tls-egress-allowlist.pcap": {16, 0, 0},
		"ssh-bruteforce.pcap":       {13, 0, 0},
		"router-lan.pcapng":         {11, 1, 0},
		"router-wan.pcap":           {7, 0, 0},
		"every-key.pcap":            {42, 0, 2},
	}
	caps := build(t)
	if len(caps) != len(want) {
		t.Errorf("%d captures, want %d", len(caps), len(want))
	}
	for _, c := range caps {
		t.Run(c.File, func(t *testing.T) {
			w, ok := want[c.File]
			if !ok {
				t.Fatalf("unexpected capture %s", c.File)
			}
			if len(c.Data) > 16<<10 {
				t.Errorf("%d bytes: keep example captures small", len(c.Data))
			}
			rd, err := capture.Open(bytes.NewReader(c.Data))
			if err != nil {
				t.Fatal(err)
			}
			dec := packet.NewDecoder()
			var p packet.Packet
			n, bad, last := 0, 0, -1
			for {
				fr, err := rd.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				n++
				if fr.Index-last-1 > 0 && fr.Index-last-1 != w.skipped {
					t.Errorf("frame %d: %d frames skipped before it", fr.Index+1, fr.Index-last-1)
				}
				last = fr.Index
				if fr.Timestamp.Before(epoch) {
					t.Errorf("frame %d: timestamp %v before the epoch", fr.Index+1, fr.Timestamp)
				}
				if err := dec.Decode(fr.Data, &p); err != nil {
					bad++
				}
			}
			if n != w.frames || bad != w.bad {
				t.Errorf("%d IP frames, %d malformed; want %d and %d", n, bad, w.frames, w.bad)
			}
		})
	}
}
