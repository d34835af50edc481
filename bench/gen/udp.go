package gen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SendConfig is one open-loop UDP run.
type SendConfig struct {
	// Dst is where every datagram goes.
	Dst netip.AddrPort
	// Flows is the number of source ports, one socket each; packets are
	// spread over them in batches so a flow-hashing path sees many flows.
	Flows int
	// Payload is the UDP payload size in bytes (36 makes a 64-byte IPv4
	// packet).
	Payload int
	// Rate is the offered rate in packets per second; 0 sends as fast as the
	// core allows.
	Rate float64
	// Duration bounds the run.
	Duration time.Duration
	// Batch is the most datagrams handed to one sendmmsg (default 64).
	Batch int
}

// SendResult is what the sender actually offered.
type SendResult struct {
	Sent   uint64 `json:"sent"`
	Errors uint64 `json:"errors"`
	// Skipped counts packets a paced sender did not send because it fell
	// more than maxLag behind its schedule (its core was taken from it);
	// they are not offered, so PPS is below the rate asked for.
	Skipped uint64 `json:"skipped"`
	// FirstError is the first failed sendmmsg's errno, if any.
	FirstError string        `json:"first_error,omitempty"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	// PPS is Sent over Elapsed: the offered load, measured.
	PPS float64 `json:"pps"`
}

// pace is what the sender does when it is ahead of its rate: it naps, which
// leaves the core to the kernel's receive work and the latency prober. Go's
// netpoller sleeps in whole milliseconds when nothing else is runnable, so
// the nap is about 1 ms and the burst after it rate × 1 ms. (Spinning
// instead was measured: it kept no more of the core on a loaded machine
// and burned it for nothing on an idle one.)
func pace() { time.Sleep(50 * time.Microsecond) }

// maxLag is how far a paced sender may fall behind its schedule and still
// catch up (at 150k pps, 1,500 packets: well inside a 4,096-packet queue).
// A sender that was descheduled for 50 ms and then sent the backlog back to
// back would offer a burst far above its rate and measure a queue's burst
// tolerance instead of its throughput; beyond maxLag the backlog is skipped
// and counted.
const maxLag = 10 * time.Millisecond

// Send runs one open-loop UDP stream and reports what it sent. It stops at
// the end of cfg.Duration or when ctx ends.
func Send(ctx context.Context, cfg SendConfig) (SendResult, error) {
	if cfg.Flows <= 0 {
		cfg.Flows = 1
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	if cfg.Payload < 0 || cfg.Payload > 65000 {
		return SendResult{}, fmt.Errorf("gen: send: payload %d out of range", cfg.Payload)
	}
	conns, err := dialFlows(cfg.Dst, cfg.Flows)
	if err != nil {
		return SendResult{}, err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	raws := make([]syscall.RawConn, 0, len(conns))
	for _, c := range conns {
		rc, err := c.SyscallConn()
		if err != nil {
			return SendResult{}, fmt.Errorf("gen: send: raw conn: %w", err)
		}
		raws = append(raws, rc)
	}
	b := newBatch(cfg.Batch, max(cfg.Payload, 1), false)
	for i := range b.iovs {
		b.iovs[i].SetLen(cfg.Payload)
	}
	return sendPaced(ctx, cfg, raws, b)
}

// dialFlows opens one connected UDP socket per flow: each has its own
// source port.
func dialFlows(dst netip.AddrPort, flows int) ([]*net.UDPConn, error) {
	conns := make([]*net.UDPConn, 0, flows)
	for range flows {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("gen: send: dial %s: %w", dst, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// sendPaced sends batches of b round-robin over conns, at cfg.Rate (as
// fast as it can when zero), until cfg.Duration or ctx ends.
func sendPaced(ctx context.Context, cfg SendConfig, conns []syscall.RawConn, b *mmsgBatch) (SendResult, error) {
	var res SendResult
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	maxDue := max(int64(cfg.Rate*maxLag.Seconds()), int64(cfg.Batch))
	var sendErr error
	// next picks the flow of each send, so every flow gets its turn
	// whatever the pacing does.
	next := 0
	for {
		now := time.Now()
		if !now.Before(deadline) || ctx.Err() != nil {
			break
		}
		n := cfg.Batch
		if cfg.Rate > 0 {
			due := int64(cfg.Rate*now.Sub(start).Seconds()) - int64(res.Sent+res.Skipped)
			if due > maxDue {
				res.Skipped += uint64(due - maxDue)
				due = maxDue
			}
			if due <= 0 {
				pace()
				continue
			}
			n = int(min(due, int64(cfg.Batch)))
		}
		var sent int
		var errno syscall.Errno
		rc := conns[next%len(conns)]
		next++
		err := rc.Write(func(fd uintptr) bool {
			sent, errno = sendmmsg(fd, b.msgs[:n])
			return errno != unix.EAGAIN
		})
		if err != nil {
			sendErr = fmt.Errorf("gen: send: %w", err)
			break
		}
		if errno != 0 {
			// ENOBUFS and ECONNREFUSED (an ICMP error from an earlier
			// datagram) are what overload looks like; count and go on.
			if res.Errors == 0 {
				res.FirstError = errno.Error()
			}
			res.Errors++
			continue
		}
		res.Sent += uint64(sent)
	}
	res.Elapsed = time.Since(start)
	if res.Elapsed > 0 {
		res.PPS = float64(res.Sent) / res.Elapsed.Seconds()
	}
	return res, sendErr
}

// SinkStats is what a sink received.
type SinkStats struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	// Flows is the number of distinct source address:ports seen.
	Flows int `json:"flows"`
	// MinFlow and MaxFlow are the fewest and most packets of one flow, to
	// show whether a path starves some flows.
	MinFlow uint64 `json:"min_flow"`
	MaxFlow uint64 `json:"max_flow"`
}

// Sink counts UDP datagrams per flow.
type Sink struct {
	conn  *net.UDPConn
	flows map[netip.AddrPort]uint64
	stats SinkStats
}

// sinkBuffer is the socket receive buffer the sink asks for, so that the
// sink's own socket is not where a measurement loses packets.
const sinkBuffer = 64 << 20

// ListenSink binds a sink to addr.
func ListenSink(addr netip.AddrPort) (*Sink, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("gen: sink: listen %s: %w", addr, err)
	}
	if err := setRcvBuf(c, sinkBuffer); err != nil {
		c.Close()
		return nil, err
	}
	return &Sink{conn: c, flows: make(map[netip.AddrPort]uint64)}, nil
}

// Addr is the bound address.
func (s *Sink) Addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Run counts datagrams until ctx ends, then closes the socket.
func (s *Sink) Run(ctx context.Context) error {
	defer s.conn.Close()
	stop := context.AfterFunc(ctx, func() { s.conn.SetReadDeadline(time.Now()) })
	defer stop()
	rc, err := s.conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("gen: sink: raw conn: %w", err)
	}
	b := newBatch(64, 2048, true)
	for {
		var n int
		var errno syscall.Errno
		err := rc.Read(func(fd uintptr) bool {
			b.resetNames(len(b.msgs))
			n, errno = recvmmsg(fd, b.msgs)
			return errno != unix.EAGAIN
		})
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("gen: sink: read: %w", err)
		}
		if errno != 0 {
			return fmt.Errorf("gen: sink: recvmmsg: %w", errno)
		}
		for i := range n {
			s.stats.Packets++
			s.stats.Bytes += uint64(b.msgs[i].n)
			if ap, ok := sockaddrAddrPort(unsafe.Slice((*byte)(unsafe.Pointer(&b.names[i])), b.msgs[i].hdr.Namelen)); ok {
				s.flows[ap]++
			}
		}
	}
}

// Stats is what the sink has counted; call it after Run returns.
func (s *Sink) Stats() SinkStats {
	st := s.stats
	st.Flows = len(s.flows)
	first := true
	for _, c := range s.flows {
		if first || c < st.MinFlow {
			st.MinFlow = c
		}
		st.MaxFlow = max(st.MaxFlow, c)
		first = false
	}
	return st
}

// sockaddrAddrPort reads a sockaddr_in or sockaddr_in6 as the kernel wrote
// it (family in host order, port and address in network order).
func sockaddrAddrPort(b []byte) (netip.AddrPort, bool) {
	if len(b) < 2 {
		return netip.AddrPort{}, false
	}
	fam := *(*uint16)(unsafe.Pointer(&b[0]))
	switch {
	case fam == unix.AF_INET && len(b) >= 8:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), uint16(b[2])<<8|uint16(b[3])), true
	case fam == unix.AF_INET6 && len(b) >= 24:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), uint16(b[2])<<8|uint16(b[3])), true
	}
	return netip.AddrPort{}, false
}

// setRcvBuf sets SO_RCVBUFFORCE (root may exceed rmem_max), falling back to
// SO_RCVBUF.
func setRcvBuf(c *net.UDPConn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("gen: raw conn: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		if serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
	}); err != nil {
		return fmt.Errorf("gen: raw conn control: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("gen: set receive buffer: %w", serr)
	}
	return nil
}
