package droplog

import (
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/natefinch/lumberjack.v2"
)

// Defaults for the zero values of RotateConfig.
const (
	DefaultMaxSizeMB  = 100
	DefaultMaxBackups = 5
)

// RotateConfig caps what a log file may take on disk: the live file is
// rotated when the next write would take it past MaxSizeMB, and at most
// MaxBackups rotated files are kept, so the total stays under
// MaxSizeMB x (MaxBackups + 1).
type RotateConfig struct {
	// MaxSizeMB is the size in megabytes (2^20 bytes) at which the file is
	// rotated (default 100).
	MaxSizeMB int
	// MaxBackups is how many rotated files are kept (default 5). Zero means
	// the default, never "keep all": an unbounded log is what rotation is
	// for avoiding.
	MaxBackups int
	// MaxAgeDays also removes rotated files older than this many days; 0
	// keeps them (up to MaxBackups).
	MaxAgeDays int
	// Compress gzips rotated JSON files (pcap files are not compressed).
	Compress bool
}

func (c RotateConfig) withDefaults() (RotateConfig, error) {
	if c.MaxSizeMB < 0 || c.MaxBackups < 0 || c.MaxAgeDays < 0 {
		return c, errors.New("droplog: rotate: negative size, backups or age")
	}
	if c.MaxSizeMB == 0 {
		c.MaxSizeMB = DefaultMaxSizeMB
	}
	if c.MaxBackups == 0 {
		c.MaxBackups = DefaultMaxBackups
	}
	return c, nil
}

// OpenRotatingFile opens path for appending JSON events, rotating it by size
// with lumberjack: rotated files sit next to it as
// NAME-<UTC time>.EXT (gzipped with Compress), and the oldest beyond
// MaxBackups or MaxAgeDays are removed. Removal runs on lumberjack's own
// goroutine just after a rotation, so the cap can be exceeded by one file
// for a moment. The file is created with mode 0640 (the log names hosts and
// ports), which rotation keeps. Pass the result to NewJSONSink and close it
// after the sink.
func OpenRotatingFile(path string, c RotateConfig) (io.WriteCloser, error) {
	c, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	// lumberjack creates new files 0600 but keeps the mode of one that
	// exists; create it first so the documented mode holds.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("droplog: open log file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("droplog: open log file: %w", err)
	}
	return &lumberjack.Logger{
		Filename:   path,
		MaxSize:    c.MaxSizeMB,
		MaxBackups: c.MaxBackups,
		MaxAge:     c.MaxAgeDays,
		Compress:   c.Compress,
	}, nil
}
