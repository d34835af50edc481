package droplog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fwagent/fwagent/internal/capture"
)

// PacketSink is a Sink that records the logged packets themselves. For a
// sink that implements it, the Reader calls WritePacket instead of Write,
// and keeps each message's packet copy (which go-nflog hands over in a slice
// of its own, so no copy is made) until the sink has seen it. Events whose
// message carried no payload are skipped.
type PacketSink interface {
	Sink
	// WritePacket records one packet, starting at its IP header, logged at
	// ts. data holds what the kernel copied (Config.CopyRange bytes at
	// most); it must not be kept after the call.
	WritePacket(ts time.Time, data []byte) error
}

// pcapRecordHeader and pcapFileHeader are the classic pcap framing sizes,
// used to keep a rotating file under its cap without stat calls.
const (
	pcapFileHeader   = 24
	pcapRecordHeader = 16
)

// pcapSink writes logged packets as a classic pcap (LINKTYPE_RAW) that
// Wireshark and tcpdump open. With rot set it writes a file it rotates.
type pcapSink struct {
	mu     sync.Mutex
	bw     *bufio.Writer
	cw     *capture.Writer
	rot    *pcapRotator
	closed bool
}

// pcapRotator keeps a pcap file under maxBytes by shifting NAME.EXT to
// NAME.1.EXT, NAME.1.EXT to NAME.2.EXT, and so on, dropping the oldest.
type pcapRotator struct {
	path     string
	maxBytes int64
	backups  int
	f        *os.File
	size     int64
	// broken is set after a failed write: the file may end in half a
	// record, so the next packet starts a new file instead.
	broken bool
}

// NewPcapSink writes a pcap file header to w and returns a sink appending
// each logged packet to it, buffered. w stays the caller's; a write error is
// final (the stream may hold half a record), so prefer OpenPcapFile for
// files. Safe for concurrent use.
func NewPcapSink(w io.Writer) (PacketSink, error) {
	bw := bufio.NewWriterSize(w, jsonBufSize)
	cw, err := capture.NewWriter(bw)
	if err != nil {
		return nil, fmt.Errorf("droplog: pcap: %w", err)
	}
	return &pcapSink{bw: bw, cw: cw}, nil
}

// OpenPcapFile returns a sink that writes logged packets to a pcap file at
// path, rotated by size like the JSON log (c.MaxSizeMB, c.MaxBackups;
// rotated files are NAME.1.EXT, NAME.2.EXT, ..., newest first; MaxAgeDays
// and Compress do not apply). A file already at path is rotated away first,
// since appending to a capture whose header may differ would corrupt it.
// The files are created with mode 0640. Close closes the file.
func OpenPcapFile(path string, c RotateConfig) (PacketSink, error) {
	c, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	return openPcapFile(path, int64(c.MaxSizeMB)<<20, c.MaxBackups)
}

func openPcapFile(path string, maxBytes int64, backups int) (*pcapSink, error) {
	if maxBytes < pcapFileHeader+pcapRecordHeader+capture.MaxFrame {
		// One record of the largest size must fit in a fresh file.
		maxBytes = pcapFileHeader + pcapRecordHeader + capture.MaxFrame
	}
	s := &pcapSink{rot: &pcapRotator{path: path, maxBytes: maxBytes, backups: backups}}
	if err := s.rotate(); err != nil {
		return nil, err
	}
	return s, nil
}

// rotate shifts the files and starts a new one with a pcap header.
func (s *pcapSink) rotate() error {
	r := s.rot
	if r.f != nil {
		// A flush error here means the old file lost its tail; the new file
		// starts clean either way.
		_ = s.bw.Flush()
		_ = r.f.Close()
		r.f = nil
	}
	if err := r.shift(); err != nil {
		return err
	}
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("droplog: pcap: %w", err)
	}
	if s.bw == nil {
		s.bw = bufio.NewWriterSize(f, jsonBufSize)
	} else {
		s.bw.Reset(f)
	}
	cw, err := capture.NewWriter(s.bw)
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("droplog: pcap: %w", err)
	}
	r.f, r.size, r.broken = f, pcapFileHeader, false
	s.cw = cw
	return nil
}

// backupName is NAME.n.EXT for path NAME.EXT.
func (r *pcapRotator) backupName(n int) string {
	ext := filepath.Ext(r.path)
	return strings.TrimSuffix(r.path, ext) + "." + strconv.Itoa(n) + ext
}

// shift renames path to backup 1, backup i to i+1, and removes the one that
// would go past r.backups.
func (r *pcapRotator) shift() error {
	if _, err := os.Stat(r.path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.Remove(r.backupName(r.backups)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("droplog: pcap: remove oldest: %w", err)
	}
	for i := r.backups - 1; i >= 1; i-- {
		if err := os.Rename(r.backupName(i), r.backupName(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("droplog: pcap: rotate: %w", err)
		}
	}
	if err := os.Rename(r.path, r.backupName(1)); err != nil {
		return fmt.Errorf("droplog: pcap: rotate: %w", err)
	}
	return nil
}

// Write ignores the event: the Reader hands this sink packets through
// WritePacket.
func (s *pcapSink) Write(*Event) error { return nil }

func (s *pcapSink) WritePacket(ts time.Time, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrSinkClosed
	}
	if r := s.rot; r != nil {
		rec := int64(pcapRecordHeader + min(len(data), capture.MaxFrame))
		if r.broken || (r.size+rec > r.maxBytes && r.size > pcapFileHeader) {
			if err := s.rotate(); err != nil {
				return err
			}
		}
		r.size += rec
	}
	if err := s.cw.Write(ts, data); err != nil {
		return s.writeFailed(fmt.Errorf("droplog: pcap: %w", err))
	}
	return nil
}

// writeFailed marks a rotated file broken after a failed write, so that
// the next packet starts a new file, and returns err.
func (s *pcapSink) writeFailed(err error) error {
	if s.rot != nil {
		s.rot.broken = true
	}
	return err
}

func (s *pcapSink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	return s.flush()
}

func (s *pcapSink) flush() error {
	if err := s.bw.Flush(); err != nil {
		return s.writeFailed(fmt.Errorf("droplog: pcap: flush: %w", err))
	}
	return nil
}

// Close flushes, and closes the file if the sink opened it.
func (s *pcapSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.flush()
	if s.rot != nil && s.rot.f != nil {
		if cerr := s.rot.f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("droplog: pcap: close: %w", cerr)
		}
		s.rot.f = nil
	}
	return err
}
