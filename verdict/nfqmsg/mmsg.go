package nfqmsg

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nlmsg"
)

// BatchFunc decides one read: it must set vs[i] for each pkts[i] (vs comes
// pre-filled with the fail-open or fail-closed verdict). Payloads are valid
// only until it returns. It runs on the reader's goroutine and may fan the
// work out, but must not return before every verdict is set.
type BatchFunc func(pkts []Packet, vs []Verdict)

// Config configures one batched queue reader.
type Config struct {
	// Queue is the NFQUEUE number to bind.
	Queue uint16
	// Family is the nfgenmsg family of verdicts and the protocol family of
	// the bind (AF_UNSPEC: IPv4 and IPv6 alike), as go-nfqueue's AfFamily.
	Family uint8
	// MaxPacketLen is the copy range (default 0xffff: whole packets); the
	// kernel caps it at 0xffff minus the attribute header. SetCopyRange
	// changes it on the bound queue.
	MaxPacketLen uint32
	// MaxQueueLen is the kernel queue length (default 4096).
	MaxQueueLen uint32
	// FailOpen asks the kernel to accept packets it cannot queue
	// (NFQA_CFG_F_FAIL_OPEN); it also picks the verdict vs is pre-filled
	// with.
	FailOpen bool
	// GSO asks the kernel to queue GSO and GRO aggregates whole
	// (NFQA_CFG_F_GSO, Linux 3.10 and later) instead of cutting each into
	// MTU-sized segments first: one packet, one verdict, for up to 64 KiB
	// of a TCP stream. A kernel that refuses the flag gets the queue without
	// it, and GSOActive says so.
	GSO bool
	// Flags are further NFQA_CFG_F_* flags.
	Flags uint32
	// ReadBuffer is the socket receive buffer in bytes (default 16 MiB);
	// set with SO_RCVBUFFORCE when allowed, else SO_RCVBUF. It is not
	// scaled to the copy range: a buffer that holds more messages than the
	// kernel queue lets a fail-open queue overflow first, and packets a full
	// queue passes are counted by no one, while socket overruns are.
	ReadBuffer int
	// Batch is the most messages one recvmmsg returns (default 64).
	Batch int
	// BufSize is the receive buffer per message (default MaxPacketLen plus
	// room for the netlink headers and attributes, and grown by
	// SetCopyRange). A message that does not fit is answered as
	// undecodable.
	BufSize int
	// Blocking makes recvmmsg block in the kernel (MSG_WAITFORONE on a
	// blocking socket, waking every 100 ms to check the context) instead of
	// parking the goroutine in Go's netpoller.
	Blocking bool
	// NetNS is a network namespace file descriptor to open the socket in (0:
	// the caller's).
	NetNS int
	// Counters receives the reader's counts; several readers may share one.
	// nil gives the reader its own.
	Counters *Counters
	Logger   *slog.Logger
}

// Counters are cumulative counts of one or more readers.
type Counters struct {
	Reads        atomic.Uint64 // recvmmsg calls that returned messages
	Packets      atomic.Uint64 // packets answered
	Writes       atomic.Uint64 // verdict writes (one per read)
	Messages     atomic.Uint64 // verdict messages sent (batch messages count once)
	ENOBUFS      atomic.Uint64 // socket overruns: the kernel handled those packets
	ReadErrors   atomic.Uint64
	SendErrors   atomic.Uint64 // verdict writes that failed after retries
	KernelErrors atomic.Uint64 // error replies from the kernel to our messages
	Truncated    atomic.Uint64 // packets whose message did not fit a buffer
	NoID         atomic.Uint64 // packet messages without an id
	BindRepeats  atomic.Uint64 // packets queued during the bind, sent round again
	Requeued     atomic.Uint64 // packets copied under a smaller copy range, sent round again
	GSO          atomic.Uint64 // GSO aggregates received (NFQA_SKB_GSO)
	CsumPartial  atomic.Uint64 // packets with a partial checksum (NFQA_SKB_CSUMNOTREADY)
}

// CounterSnapshot is a plain copy of Counters.
type CounterSnapshot struct {
	Reads, Packets, Writes, Messages, ENOBUFS, ReadErrors, SendErrors, KernelErrors, Truncated, NoID, BindRepeats uint64
	Requeued, GSO, CsumPartial                                                                                    uint64
}

// Snapshot copies the counters.
func (c *Counters) Snapshot() CounterSnapshot {
	return CounterSnapshot{
		Reads: c.Reads.Load(), Packets: c.Packets.Load(), Writes: c.Writes.Load(), Messages: c.Messages.Load(),
		ENOBUFS: c.ENOBUFS.Load(), ReadErrors: c.ReadErrors.Load(), SendErrors: c.SendErrors.Load(),
		KernelErrors: c.KernelErrors.Load(), Truncated: c.Truncated.Load(), NoID: c.NoID.Load(),
		BindRepeats: c.BindRepeats.Load(), Requeued: c.Requeued.Load(), GSO: c.GSO.Load(),
		CsumPartial: c.CsumPartial.Load(),
	}
}

// mmsghdr is struct mmsghdr from <sys/socket.h>.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// Reader reads one queue in batches. It is used by one goroutine.
type Reader struct {
	cfg  Config
	q    *nfqueue.Nfqueue
	raw  syscall.RawConn
	log  *slog.Logger
	cnt  *Counters
	seq  uint32
	fail Verdict

	bufs  []byte
	iovs  []unix.Iovec
	msgs  []mmsghdr
	pkts  []Packet
	vs    []Verdict
	enc   *Encoder
	flags int
	// park: on EAGAIN, wait in the netpoller (false: return at once).
	park bool

	// copyRange is the copy range the kernel acknowledged; gso whether it
	// took NFQA_CFG_F_GSO. autoBuf: BufSize follows the copy range.
	copyRange uint32
	gso       atomic.Bool
	autoBuf   bool
	// reconf carries SetCopyRange's requests to the reader goroutine.
	reconf chan copyRequest

	// The RawConn callbacks are made once so a read or write allocates no
	// closure; they report through these fields.
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
	nread   int
	rerr    error
	wbuf    []byte
	werr    error
}

// Open opens a netlink socket with go-nfqueue, binds the queue with the
// same configuration messages go-nfqueue's RegisterWithErrorFunc sends, and
// prepares the receive buffers. Packets are not answered until Run.
func Open(cfg Config) (*Reader, error) {
	if cfg.MaxPacketLen == 0 {
		cfg.MaxPacketLen = 0xffff
	}
	if cfg.MaxQueueLen == 0 {
		cfg.MaxQueueLen = 4096
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	cfg.MaxPacketLen = kernelCopyRange(cfg.MaxPacketLen)
	if cfg.ReadBuffer <= 0 {
		cfg.ReadBuffer = 16 << 20
	}
	autoBuf := cfg.BufSize <= 0
	if autoBuf {
		cfg.BufSize = bufSizeFor(cfg.MaxPacketLen)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Counters == nil {
		cfg.Counters = new(Counters)
	}
	q, err := nfqueue.Open(&nfqueue.Config{
		NfQueue:      cfg.Queue,
		NetNS:        cfg.NetNS,
		MaxPacketLen: cfg.MaxPacketLen,
		MaxQueueLen:  cfg.MaxQueueLen,
		Copymode:     nfqueue.NfQnlCopyPacket,
		AfFamily:     cfg.Family,
	})
	if err != nil {
		return nil, fmt.Errorf("nfqmsg: open queue %d: %w", cfg.Queue, err)
	}
	raw, err := q.Con.SyscallConn()
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("nfqmsg: queue %d raw socket: %w", cfg.Queue, err)
	}
	r := &Reader{
		cfg: cfg, q: q, raw: raw, log: cfg.Logger, cnt: cfg.Counters,
		fail: Verdict{Code: Drop},
		enc:  NewEncoder(cfg.Queue, cfg.Family, cfg.Batch),

		copyRange: cfg.MaxPacketLen,
		autoBuf:   autoBuf,
		reconf:    make(chan copyRequest, 1),
	}
	if cfg.FailOpen {
		r.fail.Code = Accept
	}
	r.alloc()
	if err := r.setRcvBuf(); err != nil {
		r.log.Warn("cannot size queue receive buffer", "queue", cfg.Queue, "bytes", cfg.ReadBuffer, "err", err)
	}
	if err := r.bind(); err != nil {
		q.Close()
		return nil, err
	}
	if cfg.Blocking {
		if err := r.setBlocking(); err != nil {
			r.unbind()
			q.Close()
			return nil, err
		}
	}
	return r, nil
}

// Counters is where the reader counts.
func (r *Reader) Counters() *Counters { return r.cnt }

// maxCopyRange is NFQNL_MAX_COPY_RANGE: the kernel takes any larger copy
// range, and 0, as this.
const maxCopyRange = 0xffff - nlmsg.AttrHdrLen

// kernelCopyRange is the copy range the kernel applies when asked for n.
func kernelCopyRange(n uint32) uint32 {
	if n == 0 || n > maxCopyRange {
		return maxCopyRange
	}
	return n
}

// bufSizeFor is the receive buffer for one message with a copy range of n:
// the headers and every attribute the kernel may add before the payload
// (timestamps, devices, hw address, uid/gid, security context, L2 header)
// fit in well under 1 KiB.
func bufSizeFor(n uint32) int { return int(n) + 1024 }

// allocBufs makes the receive buffers for Batch messages of BufSize bytes.
func (r *Reader) allocBufs() {
	n, size := r.cfg.Batch, r.cfg.BufSize
	r.bufs = make([]byte, n*size)
	r.iovs = make([]unix.Iovec, n)
	r.msgs = make([]mmsghdr, n)
	for i := range n {
		r.iovs[i].Base = &r.bufs[i*size]
		r.iovs[i].SetLen(size)
		r.msgs[i].hdr.Iov = &r.iovs[i]
		r.msgs[i].hdr.SetIovlen(1)
	}
}

func (r *Reader) alloc() {
	n := r.cfg.Batch
	r.allocBufs()
	r.pkts = make([]Packet, 0, n)
	r.vs = make([]Verdict, n)
	// Binding waits for acks in the netpoller in either mode; Open switches
	// to blocking reads afterwards.
	r.flags, r.park = 0, true
	r.readFn = func(fd uintptr) bool {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(len(r.msgs)), uintptr(r.flags), 0, 0)
		if e == unix.EAGAIN && r.park {
			return false // park in the netpoller until readable
		}
		r.nread, r.rerr = int(n), nil
		if e != 0 {
			r.nread, r.rerr = 0, e
		}
		return true
	}
	r.writeFn = func(fd uintptr) bool {
		_, _, e := unix.Syscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(r.wbuf))), uintptr(len(r.wbuf)))
		if e == unix.EAGAIN && !r.cfg.Blocking {
			return false
		}
		r.werr = nil
		if e != 0 {
			r.werr = e
		}
		return true
	}
}

func (r *Reader) setRcvBuf() error {
	var serr error
	err := r.raw.Control(func(fd uintptr) {
		// SO_RCVBUFFORCE passes net.core.rmem_max, as root may.
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, r.cfg.ReadBuffer); serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, r.cfg.ReadBuffer)
		}
	})
	return errors.Join(err, serr)
}

// setBlocking makes the socket blocking with a 100 ms receive timeout, so a
// blocked recvmmsg returns in time to see the context cancelled.
func (r *Reader) setBlocking() error {
	var serr error
	err := r.raw.Control(func(fd uintptr) {
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if serr = unix.SetsockoptTimeval(int(fd), unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); serr == nil {
			serr = unix.SetNonblock(int(fd), false)
		}
	})
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("nfqmsg: queue %d blocking socket: %w", r.cfg.Queue, err)
	}
	r.flags, r.park = unix.MSG_WAITFORONE, false
	return nil
}

// Config attributes of nfnetlink_queue past the command (nlmsg.CfgAttrCmd).
const (
	cfgAttrParams = 2
	cfgAttrMaxLen = 3
	cfgAttrMask   = 4
	cfgAttrFlags  = 5
)

// bind sends the configuration go-nfqueue's RegisterWithErrorFunc sends, in
// the same order, each acknowledged before the next. PF_UNBIND/PF_BIND are
// no-ops on kernels since 3.8 but cost nothing.
func (r *Reader) bind() error {
	cmd := func(c uint8) attr { return attr{nlmsg.CfgAttrCmd, []byte{c, 0, 0, r.cfg.Family}} }
	params := binary.BigEndian.AppendUint32(nil, r.cfg.MaxPacketLen)
	params = append(params, nfqueue.NfQnlCopyPacket)
	flags := r.cfg.Flags
	if r.cfg.FailOpen {
		flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	if r.cfg.GSO {
		flags |= nfqueue.NfQaCfgFlagGSO
	}
	last := flagsAttrs(flags, r.cfg.MaxQueueLen)
	steps := []struct {
		what  string
		queue uint16
		attrs []attr
	}{
		{"unbind family", 0, []attr{cmd(nlmsg.CfgCmdPfUnbind)}},
		{"bind family", 0, []attr{cmd(nlmsg.CfgCmdPfBind)}},
		{"bind", r.cfg.Queue, []attr{cmd(nlmsg.CfgCmdBind)}},
		{"set copy mode", r.cfg.Queue, []attr{{cfgAttrParams, params}}},
		{"set flags and length", r.cfg.Queue, last},
	}
	var early []Packet
	for _, s := range steps {
		err := r.request(s.queue, s.attrs, &early)
		if err != nil && r.cfg.GSO && s.what == "set flags and length" {
			// Kernels before 3.10 know no GSO flag and refuse the whole
			// set: the queue works without it, one segment per packet.
			r.log.Warn("kernel refused GSO queueing; packets are queued segment by segment", "queue", r.cfg.Queue, "err", err)
			err = r.request(s.queue, flagsAttrs(flags&^nfqueue.NfQaCfgFlagGSO, r.cfg.MaxQueueLen), &early)
			flags &^= nfqueue.NfQaCfgFlagGSO
		}
		if err != nil {
			if s.queue != 0 {
				r.unbind()
			}
			return fmt.Errorf("nfqmsg: queue %d: %s: %w", r.cfg.Queue, s.what, err)
		}
	}
	r.gso.Store(flags&nfqueue.NfQaCfgFlagGSO != 0)
	if err := r.repeatEarly(early); err != nil {
		return fmt.Errorf("nfqmsg: queue %d: answer packets queued during bind: %w", r.cfg.Queue, err)
	}
	r.cnt.BindRepeats.Add(uint64(len(early)))
	return nil
}

// flagsAttrs are the config attributes that set flags (when any) and the
// queue length.
func flagsAttrs(flags, maxLen uint32) []attr {
	last := []attr{{cfgAttrMaxLen, binary.BigEndian.AppendUint32(nil, maxLen)}}
	if flags != 0 {
		f := binary.BigEndian.AppendUint32(nil, flags)
		last = append([]attr{{cfgAttrFlags, f}, {cfgAttrMask, f}}, last...)
	}
	return last
}

// repeatEarly answers NF_REPEAT to packets read while waiting for a config
// acknowledgement.
func (r *Reader) repeatEarly(early []Packet) error {
	if len(early) > 0 {
		// Packets queued before the copy mode was set carry no payload:
		// NF_REPEAT sends them through the chain again, and the queue, now
		// configured, delivers them whole.
		r.enc.Reset()
		for _, p := range early {
			r.enc.AppendVerdict(p.ID, Verdict{Code: Repeat})
		}
		if err := r.send(r.enc.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// request sends one config message and waits up to 5 s for its
// acknowledgement. Packets read meanwhile are appended to early.
func (r *Reader) request(queue uint16, attrs []attr, early *[]Packet) error {
	r.seq++
	seq := r.seq
	if err := r.send(appendConfig(nil, seq, queue, attrs...)); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	if err := r.q.Con.SetReadDeadline(deadline); err != nil && !r.cfg.Blocking {
		return err
	}
	defer r.q.Con.SetReadDeadline(time.Time{})
	for {
		if err := r.raw.Read(r.readFn); err != nil {
			return fmt.Errorf("wait for ack: %w", err)
		}
		if r.rerr != nil {
			switch {
			case r.rerr == unix.ENOBUFS:
				r.cnt.ENOBUFS.Add(1)
				continue
			case (r.rerr == unix.EAGAIN || r.rerr == unix.EINTR) && time.Now().Before(deadline):
				// A blocking socket's receive timeout, not ours.
				continue
			}
			return fmt.Errorf("wait for ack: %w", r.rerr)
		}
		// Every datagram of the read is scanned even after the ack: a packet
		// behind it would otherwise never be answered, and a later batch
		// verdict would answer it blindly.
		var ack ackInfo
		for i := range r.nread {
			b := r.bufs[i*r.cfg.BufSize:][:r.msgs[i].len]
			pkts, info, _ := scanAck(b, seq)
			*early = append(*early, pkts...)
			if info.acked {
				ack = info
			}
		}
		if ack.acked {
			return ack.err
		}
	}
}

type ackInfo struct {
	acked bool
	err   error
}

// scanAck looks for the acknowledgement or error reply to seq in b.
func scanAck(b []byte, seq uint32) ([]Packet, ackInfo, error) {
	var ai ackInfo
	pkts, _, err := Parse(b, nil)
	for len(b) > 0 {
		msg, rest, ok := nlmsg.Next(b, false)
		if !ok {
			break
		}
		// struct nlmsgerr: int error, then the request's nlmsghdr, whose
		// sequence number says which request this answers.
		if body := msg.Body; msg.Type == nlmsg.TypeError && len(body) >= 4+nlmsg.HdrLen &&
			binary.NativeEndian.Uint32(body[4+8:]) == seq {
			ai.acked = true
			if e := int32(binary.NativeEndian.Uint32(body[0:4])); e != 0 {
				ai.err = syscall.Errno(-e)
			}
		}
		b = rest
	}
	for i := range pkts {
		pkts[i].Payload = nil // the buffer is reused
	}
	return pkts, ai, err
}

// unbind detaches the queue; the kernel then drops what is still queued to
// us, and with the rule's bypass flag lets new packets pass.
func (r *Reader) unbind() {
	r.seq++
	msg := appendConfig(nil, r.seq, r.cfg.Queue, attr{nlmsg.CfgAttrCmd, []byte{nlmsg.CfgCmdUnbind, 0, 0, r.cfg.Family}})
	if err := r.send(msg); err != nil {
		r.log.Warn("cannot unbind queue", "queue", r.cfg.Queue, "err", err)
	}
}

// send writes b to the kernel in one write, retrying a failed write twice:
// the kernel takes a netlink write whole or not at all.
func (r *Reader) send(b []byte) error {
	r.wbuf = b
	var err error
	for range 3 {
		if err = r.raw.Write(r.writeFn); err == nil {
			err = r.werr
		}
		if err == nil {
			break
		}
	}
	r.wbuf = nil
	return err
}

// Run answers packets with decide until ctx is cancelled, then answers what
// is already readable, unbinds the queue and closes the socket. It returns
// nil after a cancellation and an error only when the socket fails for good.
func (r *Reader) Run(ctx context.Context, decide BatchFunc) error {
	defer r.q.Close()
	if !r.cfg.Blocking {
		stop := context.AfterFunc(ctx, func() { r.q.Con.SetReadDeadline(time.Now()) })
		defer stop()
	}
	for ctx.Err() == nil {
		r.applyPending()
		if err := r.readOnce(decide); err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// SetCopyRange woke us. Clearing the deadline could
				// clear a cancellation's too: the loop condition checks
				// the context again.
				r.q.Con.SetReadDeadline(time.Time{})
				continue
			}
			r.unbind()
			return err
		}
	}
	// Nobody will apply a request that is still waiting.
	select {
	case req := <-r.reconf:
		req.done <- ErrNotRunning
	default:
	}
	// Answer what the kernel already handed us before leaving: unbinding
	// would drop it.
	r.q.Con.SetReadDeadline(time.Time{})
	r.flags, r.park = unix.MSG_DONTWAIT, false
	for range 64 {
		if r.readOnce(decide) != nil || r.nread == 0 {
			break
		}
	}
	r.unbind()
	return nil
}

// readOnce reads up to Batch messages and answers every packet among them
// with one write. A read error that is survivable (ENOBUFS, timeout) returns
// nil.
func (r *Reader) readOnce(decide BatchFunc) error {
	if err := r.raw.Read(r.readFn); err != nil {
		r.nread = 0
		return fmt.Errorf("nfqmsg: read queue %d: %w", r.cfg.Queue, err)
	}
	switch r.rerr {
	case nil:
	case unix.ENOBUFS:
		// The socket overflowed; the kernel accepted (fail-open) or dropped
		// what it could not deliver. Nothing of ours is lost.
		r.cnt.ENOBUFS.Add(1)
		return nil
	case unix.EAGAIN, unix.EINTR:
		return nil
	case unix.EBADF, unix.ENOTSOCK, unix.EINVAL, unix.EFAULT:
		// The socket or our buffers are broken: reading again cannot help.
		r.cnt.ReadErrors.Add(1)
		return fmt.Errorf("nfqmsg: read queue %d: %w", r.cfg.Queue, r.rerr)
	default:
		// Anything else (ENOMEM under memory pressure) may pass; a queue
		// nobody reads holds or drops every packet, so keep reading, as
		// the go-nfqueue path does, without spinning on the error.
		r.cnt.ReadErrors.Add(1)
		r.log.Warn("queue read failed, retrying", "queue", r.cfg.Queue, "err", r.rerr)
		time.Sleep(10 * time.Millisecond)
		return nil
	}
	if r.nread == 0 {
		return nil
	}
	r.cnt.Reads.Add(1)
	pkts := r.pkts[:0]
	for i := range r.nread {
		m := &r.msgs[i]
		b := r.bufs[i*r.cfg.BufSize:][:m.len]
		p, info, err := Parse(b, pkts)
		for j := len(pkts); j < len(p); j++ {
			if p[j].Truncated {
				r.cnt.Truncated.Add(1)
			}
		}
		pkts = p
		if info.KernelErrors > 0 {
			r.cnt.KernelErrors.Add(uint64(info.KernelErrors))
			r.log.Debug("kernel refused a verdict", "queue", r.cfg.Queue, "errno", info.LastErrno)
		}
		if info.NoID > 0 || err != nil {
			r.cnt.NoID.Add(uint64(info.NoID))
			r.disableBatch("a queued packet without a readable id")
		}
	}
	if len(pkts) == 0 {
		return nil
	}
	vs := r.vs[:len(pkts)]
	for i := range vs {
		vs[i] = r.fail
	}
	r.markRequeue(pkts, vs)
	decide(pkts, vs)
	r.enc.Reset()
	r.enc.AppendVerdicts(pkts, vs)
	r.cnt.Packets.Add(uint64(len(pkts)))
	if err := r.send(r.enc.Bytes()); err != nil {
		r.cnt.SendErrors.Add(1)
		r.log.Error("cannot send verdicts", "queue", r.cfg.Queue, "packets", len(pkts), "err", err)
		r.disableBatch("a verdict write failed")
		return nil
	}
	r.cnt.Writes.Add(1)
	r.cnt.Messages.Add(uint64(r.enc.Messages()))
	return nil
}

func (r *Reader) disableBatch(why string) {
	if !r.enc.BatchDisabled() {
		r.enc.DisableBatch()
		r.log.Warn("batch verdicts off for this queue: a batch could answer a packet nobody decided", "queue", r.cfg.Queue, "reason", why)
	}
}
