package capture

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Writer writes IP packets as a classic pcap file with LINKTYPE_RAW, the
// format every pcap tool opens. It is safe for concurrent use. It does not
// buffer: wrap a file in a bufio.Writer (and flush it) when writing many
// packets.
type Writer struct {
	mu sync.Mutex
	w  *pcapgo.Writer
}

// NewWriter writes the pcap file header to w and returns a Writer appending
// packets after it.
func NewWriter(w io.Writer) (*Writer, error) {
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(MaxFrame, layers.LinkTypeRaw); err != nil {
		return nil, fmt.Errorf("capture: write pcap header: %w", err)
	}
	return &Writer{w: pw}, nil
}

// Write appends one packet, which starts at the IP header, captured at ts.
// Packets longer than MaxFrame are cut to it, as a capture would; the record
// keeps the original length.
func (w *Writer) Write(ts time.Time, ipPacket []byte) error {
	if ts.IsZero() {
		// pcapgo would substitute the current time; a zero time written as
		// the epoch is honest about not knowing.
		ts = time.Unix(0, 0)
	}
	ci := gopacket.CaptureInfo{Timestamp: ts, Length: len(ipPacket)}
	data := ipPacket[:min(len(ipPacket), MaxFrame)]
	ci.CaptureLength = len(data)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.w.WritePacket(ci, data); err != nil {
		return fmt.Errorf("capture: write packet: %w", err)
	}
	return nil
}
