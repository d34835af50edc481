package gen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"time"
)

// probeMagic starts every probe, so stray datagrams are not taken for
// replies.
const probeMagic = 0x46574250 // "FWBP"

// probeLen is magic (4) + sequence (8) + send time (8).
const probeLen = 20

// appendProbe writes a probe carrying seq and the send time in nanoseconds
// since the prober started.
func appendProbe(b []byte, seq uint64, sent int64) []byte {
	b = binary.BigEndian.AppendUint32(b, probeMagic)
	b = binary.BigEndian.AppendUint64(b, seq)
	return binary.BigEndian.AppendUint64(b, uint64(sent))
}

// parseProbe reads a probe back from an echoed datagram, which may carry
// padding after it.
func parseProbe(b []byte) (seq uint64, sent int64, ok bool) {
	if len(b) < probeLen || binary.BigEndian.Uint32(b) != probeMagic {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(b[4:]), int64(binary.BigEndian.Uint64(b[12:])), true
}

// ServeEcho sends every datagram on c back to its sender until ctx ends,
// then closes c.
func ServeEcho(ctx context.Context, c *net.UDPConn) error {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("gen: echo: read: %w", err)
		}
		// A failed reply is a lost probe, which the prober counts.
		_, _ = c.WriteToUDPAddrPort(buf[:n], from)
	}
}

// ProbeConfig is one latency measurement.
type ProbeConfig struct {
	Dst netip.AddrPort
	// Rate is probes per second, sent open-loop.
	Rate float64
	// Duration bounds the sending; replies are awaited for Grace more.
	Duration time.Duration
	Grace    time.Duration
	// Payload pads probes to this many bytes (at least probeLen).
	Payload int
}

// ProbeResult is round-trip latency through the path, in microseconds.
type ProbeResult struct {
	Sent     uint64  `json:"sent"`
	Received uint64  `json:"received"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	P999us   float64 `json:"p999_us"`
	MaxUs    float64 `json:"max_us"`
}

// Probe sends numbered, timestamped probes to an echo server at a fixed rate
// and reports percentiles of their round trips. Lost probes are counted,
// not guessed.
func Probe(ctx context.Context, cfg ProbeConfig) (ProbeResult, error) {
	var res ProbeResult
	if cfg.Rate <= 0 || cfg.Duration <= 0 {
		return res, fmt.Errorf("gen: probe: rate and duration must be positive")
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 500 * time.Millisecond
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(cfg.Dst))
	if err != nil {
		return res, fmt.Errorf("gen: probe: dial %s: %w", cfg.Dst, err)
	}
	defer c.Close()
	total := uint64(cfg.Rate*cfg.Duration.Seconds()) + 1
	base := time.Now()
	echoes := &echoReader{c: c, base: base, seen: make([]bool, total), rtts: make([]time.Duration, 0, total)}
	readDone := make(chan error, 1)
	go func() { readDone <- echoes.run() }()

	pkt := make([]byte, 0, max(cfg.Payload, probeLen))
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	var sendErr error
	for seq := uint64(0); seq < total && ctx.Err() == nil; seq++ {
		at := time.Duration(seq) * interval
		if at >= cfg.Duration {
			break
		}
		if d := at - time.Since(base); d > 0 {
			time.Sleep(d)
		}
		pkt = appendProbe(pkt[:0], seq, int64(time.Since(base)))
		pkt = pkt[:max(cfg.Payload, probeLen)]
		if _, err := c.Write(pkt); err != nil {
			// ECONNREFUSED after an ICMP error is a lost probe.
			var ne net.Error
			if !errors.As(err, &ne) {
				sendErr = err
			}
		}
		res.Sent++
	}
	c.SetReadDeadline(time.Now().Add(cfg.Grace))
	if err := <-readDone; err != nil && sendErr == nil {
		sendErr = err
	}
	rtts := echoes.rtts
	res.Received = uint64(len(rtts))
	slices.Sort(rtts)
	res.P50us = micros(Percentile(rtts, 0.50))
	res.P99us = micros(Percentile(rtts, 0.99))
	res.P999us = micros(Percentile(rtts, 0.999))
	if len(rtts) > 0 {
		res.MaxUs = micros(rtts[len(rtts)-1])
	}
	return res, sendErr
}

// echoReader collects the round trips of a prober's echoes, each probe
// once, until its socket is closed or its read deadline passes.
type echoReader struct {
	c    *net.UDPConn
	base time.Time
	seen []bool
	rtts []time.Duration
}

func (e *echoReader) run() error {
	buf := make([]byte, 65536)
	for {
		n, err := e.c.Read(buf)
		now := time.Since(e.base)
		if errors.Is(err, syscall.ECONNREFUSED) {
			// An ICMP port unreachable for an earlier probe: that probe
			// is lost, the prober goes on.
			continue
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				return nil
			}
			return fmt.Errorf("gen: probe: read: %w", err)
		}
		seq, sent, ok := parseProbe(buf[:n])
		if !ok || seq >= uint64(len(e.seen)) || e.seen[seq] {
			continue
		}
		e.seen[seq] = true
		e.rtts = append(e.rtts, now-time.Duration(sent))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// Percentile is the nearest-rank q-quantile (0 < q <= 1) of sorted; zero for
// an empty slice.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q*float64(len(sorted)) + 0.999999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}
