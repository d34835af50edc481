// Package rawpcap writes classic raw-IP pcap files for tests, with what
// capture.Writer does not offer on purpose: frames cut to a snap length,
// or recorded with an original length they do not have, as tcpdump -s and
// broken writers leave them; and it reads captures back whole.
package rawpcap

import (
	"encoding/binary"
	"io"
	"os"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/capture"
)

// Record is one frame of the file.
type Record struct {
	Time time.Time
	Data []byte
	// OrigLen is the length on the wire the record claims; 0 means
	// len(Data), before any cut to the snap length.
	OrigLen int
}

// File returns a nanosecond-resolution pcap (LINKTYPE_RAW) of recs, each
// cut to snap bytes (0: whole).
func File(snap int, recs ...Record) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, 0xa1b23c4d) // nanosecond timestamps
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 4)
	b = le.AppendUint64(b, 0) // thiszone, sigfigs
	b = le.AppendUint32(b, 262144)
	b = le.AppendUint32(b, 101) // LINKTYPE_RAW
	for _, r := range recs {
		data := r.Data
		if snap > 0 && len(data) > snap {
			data = data[:snap]
		}
		orig := r.OrigLen
		if orig == 0 {
			orig = len(r.Data)
		}
		b = le.AppendUint32(b, uint32(r.Time.Unix()))
		b = le.AppendUint32(b, uint32(r.Time.Nanosecond()))
		b = le.AppendUint32(b, uint32(len(data)))
		b = le.AppendUint32(b, uint32(orig))
		b = append(b, data...)
	}
	return b
}

// Packets returns File(0, ...) of pkts, one a second from Unix time 100.
func Packets(pkts ...[]byte) []byte {
	recs := make([]Record, len(pkts))
	for i, p := range pkts {
		recs[i] = Record{Time: time.Unix(100+int64(i), 0), Data: p}
	}
	return File(0, recs...)
}

// Frames reads every frame of the capture in r with capture.Reader (their
// Data copied). A capture that does not read to its end fails the test.
func Frames(tb testing.TB, r io.Reader) []capture.Frame {
	tb.Helper()
	cr, err := capture.Open(r)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cr.ReadAll()
	if err != nil {
		tb.Fatalf("frame %d: %v", len(out), err)
	}
	return out
}

// FileFrames is Frames of the capture file at path.
func FileFrames(tb testing.TB, path string) []capture.Frame {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	return Frames(tb, f)
}
