package droplog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Sink receives events from a Reader. The Reader calls Write, Flush and
// Close from one goroutine; Write must not keep the *Event after it returns,
// because the Reader reuses it. A sink that records the packets themselves
// implements PacketSink.
type Sink interface {
	// Write records one event; it may buffer.
	Write(*Event) error
	// Flush pushes buffered events to the underlying writer. The Reader calls
	// it whenever its queue runs empty and on a short timer.
	Flush() error
	// Close flushes and releases the sink. It does not close a writer that
	// the caller passed in.
	Close() error
}

// jsonBufSize is the bufio buffer in front of the writer: about 200 events
// at ~300 bytes each, so a busy reader makes one write syscall per few
// hundred events.
const jsonBufSize = 64 << 10

// jsonSink writes one JSON object per line.
type jsonSink struct {
	mu     sync.Mutex
	out    io.Writer
	w      *bufio.Writer
	line   []byte
	closed bool
}

// ErrSinkClosed is returned by a sink's Write after Close.
var ErrSinkClosed = errors.New("droplog: sink closed")

// NewJSONSink returns a sink that writes each event to w as one line of JSON
// (the schema in the package comment), buffered. w stays the caller's: Close
// flushes but does not close it. The sink is safe for concurrent use.
func NewJSONSink(w io.Writer) Sink {
	return &jsonSink{out: w, w: bufio.NewWriterSize(w, jsonBufSize), line: make([]byte, 0, 512)}
}

func (s *jsonSink) Write(e *Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrSinkClosed
	}
	s.line = append(e.AppendJSON(s.line[:0]), '\n')
	// Hand the writer whole lines only: a rotating file rotates between
	// writes, and a line split across two files is lost to jq in both.
	if s.w.Available() < len(s.line) && s.w.Buffered() > 0 {
		if err := s.w.Flush(); err != nil {
			s.discardBuffered()
			return fmt.Errorf("droplog: write event: %w", err)
		}
	}
	if _, err := s.w.Write(s.line); err != nil {
		s.discardBuffered()
		return fmt.Errorf("droplog: write event: %w", err)
	}
	return nil
}

// discardBuffered drops what is buffered after a failed write. A bufio.Writer keeps
// its first error forever; a log file on a full disk must start working
// again once space is freed, at the price of the events in the buffer.
func (s *jsonSink) discardBuffered() {
	s.w.Reset(s.out)
}

func (s *jsonSink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if err := s.w.Flush(); err != nil {
		s.discardBuffered()
		return fmt.Errorf("droplog: flush events: %w", err)
	}
	return nil
}

func (s *jsonSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("droplog: flush events: %w", err)
	}
	return nil
}

// OpenFile opens path for appending events, creating it with mode 0640 (the
// log names hosts and ports, so it is not world-readable). Pass the result to
// NewJSONSink and close it after the sink.
func OpenFile(path string) (io.WriteCloser, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("droplog: open log file: %w", err)
	}
	return f, nil
}
