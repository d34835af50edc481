package droplog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nflog "github.com/florianl/go-nflog/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/internal/ratelimit"
)

// Defaults for the zero values of Config.
const (
	DefaultBuffer        = 4096
	DefaultCopyRange     = 256
	DefaultReadBuffer    = 8 << 20
	DefaultFlushInterval = 200 * time.Millisecond
	// DefaultPacketBuffer bounds the packet bytes queued for PacketSinks.
	DefaultPacketBuffer = 64 << 20
)

// kernelFlushTimeout is how long (in 1/100 s) the kernel may hold logged
// packets to batch them into one netlink message. Its default is a second;
// a tenth keeps `tail -f` prompt, and under load the batch buffer fills long
// before the timeout, so throughput does not change.
const kernelFlushTimeout = 10

// Config configures a Reader.
type Config struct {
	// Group is the NFLOG group the agent's log rules send to.
	Group uint16
	// Marks decodes the packet mark into the log action and the deciding
	// rule's ID. Its mask must be set (nf.NewMarks).
	Marks nf.Marks
	// RuleName resolves a rule ID (rule index + 1, 0 for a hook's default)
	// through the current policy. It is called on the reader goroutine for
	// every event, so it must be cheap and safe to call concurrently with a
	// policy reload. May be nil; then, and when it returns "", ID 0 is named
	// "default" and ID n "rule-n".
	RuleName func(id uint32) string
	// RulePrefix resolves a rule ID to the prefix the policy gave the rule
	// (`log: {prefix: ...}`), "" for none; when set, it replaces the kernel's
	// prefix in the event. nil-safe.
	RulePrefix func(id uint32) string
	// Cgroup finds the cgroup v2 path of the local socket of a logged
	// packet at netfilter hook hook (NF_INET_*), as policies.CgroupFinder
	// does for queued ones; nil leaves events without a cgroup. Called on
	// the reader goroutine for events the rate limit lets through.
	Cgroup func(p *packet.Packet, hook uint8) (string, bool)
	// IfName resolves an interface index to its name. May be nil; then the
	// Reader keeps its own ifname.Cache in NetNS, watching for renames.
	IfName func(index uint32) string
	// Logger receives the Reader's own diagnostics; nil discards them.
	Logger *slog.Logger
	// Buffer is the number of events queued between the reader and the
	// sinks (default 4096). When it is full, new events are shed.
	Buffer int

	// NetNS is an open file descriptor of the network namespace to read the
	// log group in; 0 means the caller's.
	NetNS int
	// CopyRange is how many bytes of each packet the kernel copies (default
	// 256: enough for the IP and transport headers with options).
	CopyRange uint32
	// ReadBuffer is the socket receive buffer in bytes (default 8 MiB); the
	// Reader forces it past net.core.rmem_max when it has CAP_NET_ADMIN.
	ReadBuffer int
	// FlushInterval bounds how long an event can sit in a sink's buffer
	// while events keep arriving (default 200ms); sinks are also flushed
	// whenever the queue runs empty.
	FlushInterval time.Duration

	// Rate caps the events handed to the queue, in events per second; 0
	// means no cap. Events over it are dropped before they are decoded and
	// counted in Stats.RateLimited, so a flood of drops costs neither disk
	// nor much CPU. Burst is how many may pass at once (default: one
	// second's worth, at least 1).
	Rate  float64
	Burst int
	// Clock returns monotonic nanoseconds for the rate limit; nil uses the
	// time since NewReader. Tests pass their own.
	Clock func() int64
	// PacketBuffer bounds the bytes of packet copies queued for
	// PacketSinks (default 64 MiB). With a large CopyRange the event queue
	// alone could pin Buffer x CopyRange bytes; past this budget new events
	// are shed as if the queue were full.
	PacketBuffer int
}

// Stats are the Reader's counters. Received == Written + Shed + RateLimited
// at any moment the queue is empty, and always after Run returns.
type Stats struct {
	// Received counts log messages turned into events.
	Received uint64
	// Written counts events handed to the sinks (a sink's failure to write
	// one is counted in Errors too).
	Written uint64
	// Shed counts events dropped because the queue to the sinks was full
	// (in events, or in packet bytes: Config.PacketBuffer).
	Shed uint64
	// RateLimited counts events dropped because they came faster than
	// Config.Rate allows.
	RateLimited uint64
	// Errors counts payloads that could not be decoded (the event is still
	// written, with what could be read), sink write and flush failures, and
	// socket overruns reported by the kernel.
	Errors uint64
	// Lost counts messages the kernel logged but could not deliver (gaps in
	// the NFLOG sequence numbers), typically because the socket buffer was
	// full.
	Lost uint64
	// Overruns counts the times the socket buffer overflowed (ENOBUFS);
	// each loses one or more batches of messages, counted in Lost.
	Overruns uint64
}

// Reader reads one NFLOG group, turns each message into an Event and hands
// it to the sinks on a separate goroutine, so a slow sink sheds events
// instead of stalling the socket.
type Reader struct {
	cfg    Config
	sinks  []Sink
	log    *slog.Logger
	dec    *packet.Decoder
	pkt    packet.Packet
	ifName func(uint32) string
	events chan queued

	// limit is nil without a rate cap.
	limit *ratelimit.Bucket
	clock func() int64
	// keepPackets is set when a sink wants packet bytes; queuedBytes is
	// what the queue holds of them.
	keepPackets bool
	queuedBytes atomic.Int64

	// mu orders the last enqueue against shutdown, so no event enters the
	// queue after the sink goroutine's final drain.
	mu     sync.Mutex
	closed bool

	started atomic.Bool
	ready   chan struct{}
	seqSeen bool
	lastSeq uint32

	received, written, shed, errs, lost, rateLimited, overruns atomic.Uint64
}

// queued is an event on its way to the sinks, with the packet copy when a
// PacketSink wants it. go-nflog hands each message's payload over in a slice
// of its own, so keeping it costs no copy.
type queued struct {
	ev  Event
	pkt []byte
}

// NewReader checks cfg, fills in its defaults and returns a Reader that
// writes to sinks. It opens nothing until Run.
func NewReader(cfg Config, sinks ...Sink) (*Reader, error) {
	if cfg.Marks.Mask == 0 {
		return nil, errors.New("droplog: config: mark mask is not set")
	}
	if len(sinks) == 0 {
		return nil, errors.New("droplog: config: no sinks")
	}
	if cfg.Buffer < 0 || cfg.ReadBuffer < 0 || cfg.FlushInterval < 0 || cfg.PacketBuffer < 0 {
		return nil, errors.New("droplog: config: negative buffer size or interval")
	}
	if !(cfg.Rate >= 0) || math.IsInf(cfg.Rate, 0) || cfg.Burst < 0 {
		return nil, fmt.Errorf("droplog: config: rate %v burst %d: want a finite rate >= 0 and burst >= 0", cfg.Rate, cfg.Burst)
	}
	if cfg.PacketBuffer == 0 {
		cfg.PacketBuffer = DefaultPacketBuffer
	}
	if cfg.Buffer == 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.CopyRange == 0 {
		cfg.CopyRange = DefaultCopyRange
	}
	if cfg.ReadBuffer == 0 {
		cfg.ReadBuffer = DefaultReadBuffer
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reader{
		cfg:    cfg,
		sinks:  sinks,
		log:    log,
		dec:    packet.NewDecoder(),
		ifName: cfg.IfName,
		events: make(chan queued, cfg.Buffer),
		ready:  make(chan struct{}),
		clock:  cfg.Clock,
	}
	if cfg.Rate > 0 {
		burst := cfg.Burst
		if burst == 0 {
			burst = max(1, int(math.Ceil(cfg.Rate)))
		}
		r.limit = ratelimit.NewBucket(cfg.Rate, burst)
		if r.clock == nil {
			start := time.Now()
			r.clock = func() int64 { return int64(time.Since(start)) }
		}
	}
	for _, s := range sinks {
		if _, ok := s.(PacketSink); ok {
			r.keepPackets = true
		}
	}
	return r, nil
}

// Stats returns the counters; safe to call at any time.
func (r *Reader) Stats() Stats {
	return Stats{
		Received: r.received.Load(),
		Written:  r.written.Load(),
		Shed:     r.shed.Load(),
		Errors:   r.errs.Load(),
		Lost:     r.lost.Load(),

		RateLimited: r.rateLimited.Load(),
		Overruns:    r.overruns.Load(),
	}
}

// Ready is closed once Run has bound the log group: from then on the kernel
// delivers what it logs to the group instead of discarding it. Install the
// rules that log after Ready, or accept that the first events may be lost.
func (r *Reader) Ready() <-chan struct{} { return r.ready }

// Run reads the log group until ctx is cancelled, then drains the queue,
// flushes and closes the sinks, and returns nil. It returns an error if the
// group cannot be opened or the socket fails. Run may be called once.
func (r *Reader) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("droplog: Run called twice")
	}
	if r.ifName == nil {
		names, stop, err := ownNames(ctx, r.cfg.NetNS, r.log)
		if err != nil {
			return err
		}
		defer stop()
		r.ifName = names.Name
	}

	nl, err := nflog.Open(&nflog.Config{
		Group:    r.cfg.Group,
		Copymode: nflog.CopyPacket,
		Bufsize:  r.cfg.CopyRange,
		Flags:    nflog.FlagSeq,
		Timeout:  kernelFlushTimeout,
		NetNS:    r.cfg.NetNS,
		Logger:   nflogLogger{r.log},
	})
	if err != nil {
		return fmt.Errorf("droplog: open nflog group %d: %w", r.cfg.Group, err)
	}
	if err := setReadBuffer(nl.Con, r.cfg.ReadBuffer); err != nil {
		_ = nl.Close()
		return err
	}
	if err := r.bindLog(nl.Con); err != nil {
		_ = nl.Close()
		return err
	}
	br, err := newBatchReader(r, nl.Con)
	if err != nil {
		r.unbindLog(nl.Con)
		_ = nl.Close()
		return err
	}

	stopSinks := r.startSinks()
	r.log.Info("droplog: reading NFLOG", "group", r.cfg.Group, "copy_range", r.cfg.CopyRange, "batch_bytes", logBatchBytes)
	close(r.ready)

	// Cancellation interrupts a parked read through a deadline in the past.
	stop := context.AfterFunc(ctx, func() { _ = nl.Con.SetReadDeadline(time.Now().Add(-time.Second)) })
	readErr := br.run(ctx)
	stop()
	var runErr error
	if readErr != nil && ctx.Err() == nil {
		runErr = fmt.Errorf("droplog: read nflog group %d: %w", r.cfg.Group, readErr)
	}
	r.shutdown()
	// Closing the socket unbinds the group too; the explicit unbind only
	// ends logging to it sooner.
	_ = nl.Con.SetReadDeadline(time.Time{})
	r.unbindLog(nl.Con)
	if err := nl.Close(); err != nil {
		r.log.Debug("droplog: close nflog", "err", err)
	}
	stopSinks()
	s := r.Stats()
	r.log.Info("droplog: stopped", "received", s.Received, "written", s.Written, "shed", s.Shed,
		"rate_limited", s.RateLimited, "lost", s.Lost, "overruns", s.Overruns, "errors", s.Errors)
	return runErr
}

// setReadBuffer asks for a large socket buffer, forcing it past rmem_max if
// allowed, since log bursts arrive faster than one goroutine parses them.
func setReadBuffer(c *netlink.Conn, size int) error {
	rc, err := c.SyscallConn()
	if err == nil {
		var serr error
		if cerr := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		}); cerr == nil && serr == nil {
			return nil
		}
	}
	if err := c.SetReadBuffer(size); err != nil {
		return fmt.Errorf("droplog: set read buffer: %w", err)
	}
	return nil
}

// shutdown stops handle from enqueueing; see Reader.mu.
func (r *Reader) shutdown() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// handle runs on go-nflog's receive goroutine for every message. It never
// blocks: a full queue sheds the event.
func (r *Reader) handle(a nflog.Attribute) int {
	if r.limit != nil && !r.limit.Allow(r.clock()) {
		// Not decoded, but the sequence number still counts for Lost.
		if a.Seq != nil {
			r.trackSeq(*a.Seq)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.closed {
			return 1
		}
		r.received.Add(1)
		r.rateLimited.Add(1)
		return 0
	}
	var q queued
	r.fill(&q.ev, &a)
	if r.keepPackets && a.Payload != nil {
		q.pkt = *a.Payload
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 1
	}
	r.received.Add(1)
	n := int64(len(q.pkt))
	if n > 0 && r.queuedBytes.Add(n) > int64(r.cfg.PacketBuffer) {
		r.queuedBytes.Add(-n)
		r.shed.Add(1)
		return 0
	}
	select {
	case r.events <- q:
	default:
		r.queuedBytes.Add(-n)
		r.shed.Add(1)
	}
	return 0
}

// fill turns one NFLOG message into an event. A payload that cannot be
// decoded still yields an event with the kernel's metadata, because a drop
// must not vanish from the log for being odd.
func (r *Reader) fill(e *Event, a *nflog.Attribute) {
	if a.Timestamp != nil {
		e.Time = *a.Timestamp
	} else {
		e.Time = time.Now()
	}
	if a.Seq != nil {
		r.trackSeq(*a.Seq)
	}
	if a.Mark != nil {
		e.Mark = *a.Mark
	}
	action, _, id := r.cfg.Marks.Decode(e.Mark)
	e.RuleID = id
	e.Rule = r.ruleName(id)
	if a.Prefix != nil {
		e.Prefix = *a.Prefix
	}
	e.Event = eventName(e.Prefix, action)
	if r.cfg.RulePrefix != nil && action != 0 {
		if p := r.cfg.RulePrefix(id); p != "" {
			e.Prefix = p
		}
	}
	e.Verdict = verdictOf(e.Event)
	e.Hook = "unknown"
	if a.Hook != nil {
		e.Hook = hookName(*a.Hook)
	}
	if a.InDev != nil && r.ifName != nil {
		e.In = r.ifName(*a.InDev)
	}
	if a.OutDev != nil && r.ifName != nil {
		e.Out = r.ifName(*a.OutDev)
	}
	if a.UID != nil {
		e.HasUID, e.UID = true, *a.UID
	}
	if a.GID != nil {
		e.HasGID, e.GID = true, *a.GID
	}
	if a.HwProtocol != nil {
		switch *a.HwProtocol {
		case unix.ETH_P_IP:
			e.Family = packet.IPv4
		case unix.ETH_P_IPV6:
			e.Family = packet.IPv6
		}
	}
	if a.Payload == nil {
		return
	}
	p := &r.pkt
	if err := r.decodeCopy(*a.Payload, p); err != nil {
		n := r.errs.Add(1)
		if isPowerOfTwo(n) {
			r.log.Warn("droplog: undecodable log payload", "err", err, "errors", n)
		}
		return
	}
	e.Family = p.Family
	e.Proto = p.Proto
	e.Src, e.Dst = p.Src, p.Dst
	e.Length = p.Length
	e.L4 = p.HasL4 && !p.NonFirstFragment
	if e.L4 {
		switch p.Proto {
		case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoSCTP:
			e.SrcPort, e.DstPort = p.SrcPort, p.DstPort
		}
		e.TCPFlags = p.TCPFlags
		e.ICMPType, e.ICMPCode = p.ICMPType, p.ICMPCode
	}
	if r.cfg.Cgroup != nil && a.Hook != nil && e.L4 && (p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP) {
		e.Cgroup, e.HasCgroup = r.cfg.Cgroup(p, *a.Hook)
	}
}

// trackSeq counts gaps in the per-group sequence numbers: each is a message
// the kernel built but could not queue to the socket.
func (r *Reader) trackSeq(seq uint32) {
	if r.seqSeen {
		if gap := seq - r.lastSeq - 1; gap != 0 && gap < 1<<31 {
			r.lost.Add(uint64(gap))
		}
	}
	r.seqSeen, r.lastSeq = true, seq
}

func (r *Reader) ruleName(id uint32) string {
	if r.cfg.RuleName != nil {
		if n := r.cfg.RuleName(id); n != "" {
			return n
		}
	}
	if id == 0 {
		return "default"
	}
	return "rule-" + strconv.FormatUint(uint64(id), 10)
}

// eventName reads the event from the agent's prefix ("fwagent:<event>") and
// falls back to the action in the mark for prefixes it does not know.
func eventName(prefix string, a nf.MarkAction) string {
	if rest, ok := strings.CutPrefix(strings.TrimSpace(prefix), "fwagent:"); ok {
		switch rest {
		case "drop":
			return "drop"
		case "reject":
			return "reject"
		case "accept":
			return "accept"
		case "would_drop":
			return "would_drop"
		case "would_reject":
			return "would_reject"
		}
	}
	switch a {
	case nf.MarkDropLog, nf.MarkRejectLog, nf.MarkAcceptLog, nf.MarkWouldDrop, nf.MarkWouldReject:
		return a.String()
	}
	return "unknown"
}

// verdictOf is what the kernel did: audit events are accepted.
func verdictOf(event string) string {
	switch event {
	case "drop":
		return "drop"
	case "reject":
		return "reject"
	case "accept", "would_drop", "would_reject":
		return "accept"
	}
	return "unknown"
}

// hookName maps the netfilter hook number of an inet-family hook.
func hookName(h uint8) string {
	switch h {
	case unix.NF_INET_PRE_ROUTING:
		return "prerouting"
	case unix.NF_INET_LOCAL_IN:
		return "input"
	case unix.NF_INET_FORWARD:
		return "forward"
	case unix.NF_INET_LOCAL_OUT:
		return "output"
	case unix.NF_INET_POST_ROUTING:
		return "postrouting"
	}
	return "unknown"
}

func isPowerOfTwo(n uint64) bool { return bits.OnesCount64(n) == 1 }

// startSinks starts the goroutine that drains the queue into the sinks. The
// returned stop waits for it to drain what is queued, flush and close the
// sinks; call it only after shutdown.
func (r *Reader) startSinks() (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.drain(quit)
	}()
	return func() {
		close(quit)
		<-done
	}
}

func (r *Reader) drain(quit <-chan struct{}) {
	t := time.NewTicker(r.cfg.FlushInterval)
	defer t.Stop()
	var q queued
	dirty := false
	for {
		select {
		case q = <-r.events:
			r.write(&q)
			dirty = true
			if len(r.events) == 0 {
				r.flush()
				dirty = false
			}
		case <-t.C:
			if dirty {
				r.flush()
				dirty = false
			}
		case <-quit:
			for {
				select {
				case q = <-r.events:
					r.write(&q)
				default:
					r.flush()
					r.closeSinks()
					return
				}
			}
		}
	}
}

func (r *Reader) write(q *queued) {
	r.written.Add(1)
	for _, s := range r.sinks {
		var err error
		if ps, ok := s.(PacketSink); ok {
			if q.pkt == nil {
				continue
			}
			err = ps.WritePacket(q.ev.Time, q.pkt)
		} else {
			err = s.Write(&q.ev)
		}
		if err != nil {
			r.sinkError("write", err)
		}
	}
	if n := len(q.pkt); n > 0 {
		r.queuedBytes.Add(-int64(n))
	}
	// Let the packet go now rather than when the variable is next reused.
	q.pkt = nil
}

func (r *Reader) flush() {
	for _, s := range r.sinks {
		if err := s.Flush(); err != nil {
			r.sinkError("flush", err)
		}
	}
}

func (r *Reader) closeSinks() {
	for _, s := range r.sinks {
		if err := s.Close(); err != nil {
			r.sinkError("close", err)
		}
	}
}

// sinkError logs the 1st, 2nd, 4th, 8th... failure: a full disk must not
// turn into a log storm of its own.
func (r *Reader) sinkError(op string, err error) {
	if n := r.errs.Add(1); isPowerOfTwo(n) {
		r.log.Warn("droplog: sink "+op+" failed", "err", err, "errors", n)
	}
}

// nflogLogger routes go-nflog's messages to slog at debug level: errors
// that matter reach Run through its error function, and the library also
// reports a normal shutdown as an error.
type nflogLogger struct{ l *slog.Logger }

func (n nflogLogger) Debugf(format string, args ...any) {
	n.l.Debug("droplog: nflog: " + fmt.Sprintf(format, args...))
}

func (n nflogLogger) Errorf(format string, args ...any) {
	n.l.Debug("droplog: nflog: " + fmt.Sprintf(format, args...))
}
