package droplog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	nflog "github.com/florianl/go-nflog/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nlmsg"
)

// The batched read path: the kernel packs up to logBatchBytes of log
// messages into one datagram (NFULA_CFG_NLBUFSIZ) and flushes it at
// logQThresh messages or kernelFlushTimeout; one recvmmsg takes up to
// logReadBatch datagrams, and every message is parsed in place
// (parseLogDatagram). go-nflog reads one datagram per call through a peek
// and allocates per attribute; here it only opens the socket.
const (
	logBatchBytes = 128 << 10 // the kernel's largest nlbufsiz
	logQThresh    = 256
	logReadBatch  = 8
)

// Config attributes of nfnetlink_log past the command (nlmsg.CfgAttrCmd),
// and their values.
const (
	cfgAttrMode     = 2
	cfgAttrNlBufSiz = 3
	cfgAttrTimeout  = 4
	cfgAttrQThresh  = 5
	cfgAttrFlags    = 6

	cfgFlagSeq  = 0x1
	copyModePkt = 0x2
)

// logConfig sends one NFULNL_MSG_CONFIG for group and waits for its ack.
func logConfig(c *netlink.Conn, group uint16, attrs func(*netlink.AttributeEncoder)) error {
	ae := netlink.NewAttributeEncoder()
	attrs(ae)
	b, err := ae.Encode()
	if err != nil {
		return err
	}
	data := binary.BigEndian.AppendUint16([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0}, group)
	_, err = c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typeLogCfg), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(data, b...),
	})
	return err
}

// bindLog binds the group and configures it: copy range, sequence numbers,
// batch size, flush threshold and timeout. The kernel logs nothing to the
// group before the agent's table exists, so acks are all that arrives.
func (r *Reader) bindLog(c *netlink.Conn) error {
	cmd := func(v uint8) func(*netlink.AttributeEncoder) {
		return func(ae *netlink.AttributeEncoder) { ae.Bytes(nlmsg.CfgAttrCmd, []byte{v}) }
	}
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	steps := []struct {
		what  string
		group uint16
		attrs func(*netlink.AttributeEncoder)
	}{
		{"unbind family", 0, cmd(nlmsg.CfgCmdPfUnbind)},
		{"bind family", 0, cmd(nlmsg.CfgCmdPfBind)},
		{"bind group", r.cfg.Group, cmd(nlmsg.CfgCmdBind)},
		{"set copy mode", r.cfg.Group, func(ae *netlink.AttributeEncoder) {
			ae.Bytes(cfgAttrMode, append(be32(r.cfg.CopyRange), copyModePkt, 0))
		}},
		{"set flags, batch size, threshold and timeout", r.cfg.Group, func(ae *netlink.AttributeEncoder) {
			ae.Bytes(cfgAttrFlags, binary.BigEndian.AppendUint16(nil, cfgFlagSeq))
			ae.Bytes(cfgAttrNlBufSiz, be32(logBatchBytes))
			ae.Bytes(cfgAttrQThresh, be32(logQThresh))
			ae.Bytes(cfgAttrTimeout, be32(kernelFlushTimeout))
		}},
	}
	for _, s := range steps {
		if err := logConfig(c, s.group, s.attrs); err != nil {
			if s.group != 0 {
				r.unbindLog(c)
			}
			return fmt.Errorf("droplog: nflog group %d: %s: %w", r.cfg.Group, s.what, err)
		}
	}
	return nil
}

func (r *Reader) unbindLog(c *netlink.Conn) {
	if err := logConfig(c, r.cfg.Group, func(ae *netlink.AttributeEncoder) { ae.Bytes(nlmsg.CfgAttrCmd, []byte{nlmsg.CfgCmdUnbind}) }); err != nil {
		r.log.Debug("droplog: unbind nflog group", "err", err)
	}
}

// batchReader reads a bound NFLOG socket many datagrams at a time.
type batchReader struct {
	r    *Reader
	raw  syscall.RawConn
	size int // bytes per datagram slot
	bufs []byte
	iovs []unix.Iovec
	msgs []logMmsghdr

	// scratch is what handle's nflog.Attribute points into, so handing a
	// message over allocates nothing.
	msg     logMsg
	attr    nflog.Attribute
	payload []byte
	prefix  string
	mark    uint32
	ts      time.Time
	hook    uint8
	proto   uint16
	in, out uint32
	uid     uint32
	gid     uint32
	seq     uint32

	readFn func(fd uintptr) bool
	nread  int
	rerr   error
	stop   bool
	each   func(*logMsg)
}

// logMmsghdr is struct mmsghdr.
type logMmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

func newBatchReader(r *Reader, c *netlink.Conn) (*batchReader, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("droplog: raw socket: %w", err)
	}
	size := logBatchBytes + 4096
	b := &batchReader{r: r, raw: raw, size: size, bufs: make([]byte, logReadBatch*size), iovs: make([]unix.Iovec, logReadBatch), msgs: make([]logMmsghdr, logReadBatch)}
	for i := range b.msgs {
		b.iovs[i].Base = &b.bufs[i*size]
		b.iovs[i].SetLen(size)
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.SetIovlen(1)
	}
	b.readFn = func(fd uintptr) bool {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[0])), uintptr(len(b.msgs)), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN {
			return false // park in the netpoller until readable
		}
		b.nread, b.rerr = int(n), nil
		if e != 0 {
			b.nread, b.rerr = 0, e
		}
		return true
	}
	b.each = b.handle
	return b, nil
}

// run reads until the socket's read deadline passes (Run sets it in the
// past to stop) or the Reader shuts down; it returns an error only when the
// socket fails for good.
func (b *batchReader) run(ctx context.Context) error {
	for !b.stop {
		if err := b.raw.Read(b.readFn); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
				return nil
			}
			return err
		}
		switch b.rerr {
		case nil:
		case unix.ENOBUFS:
			// The socket overflowed: the kernel dropped whole batches,
			// which the sequence numbers count exactly (Lost); this counts
			// the overruns themselves.
			b.r.errs.Add(1)
			b.r.overruns.Add(1)
			continue
		case unix.EINTR:
			continue
		default:
			return b.rerr
		}
		for i := range b.nread {
			d := b.bufs[i*b.size:][:b.msgs[i].len]
			errno, err := parseLogDatagram(d, &b.msg, b.each)
			if err != nil || errno != 0 {
				b.r.errs.Add(1)
			}
			if b.stop {
				break
			}
		}
	}
	return nil
}

// keep stores v in the batchReader's scratch slot dst and returns dst when
// the message carried the attribute, nil otherwise: nflog.Attribute marks an
// absent attribute by a nil pointer, and the scratch slots spare an
// allocation per attribute.
func keep[T any](has bool, dst *T, v T) *T {
	if !has {
		return nil
	}
	*dst = v
	return dst
}

// handle hands one parsed message to Reader.handle as go-nflog would.
func (b *batchReader) handle(m *logMsg) {
	if b.stop {
		return
	}
	a := &b.attr
	*a = nflog.Attribute{}
	if m.HasHdr {
		b.hook, b.proto = m.Hook, m.HwProto
		a.Hook, a.HwProtocol = &b.hook, &b.proto
	}
	a.Mark = keep(m.HasMark, &b.mark, m.Mark)
	a.Timestamp = keep(m.HasTime, &b.ts, m.Time)
	a.InDev = keep(m.HasIn, &b.in, m.InDev)
	a.OutDev = keep(m.HasOut, &b.out, m.OutDev)
	a.Seq = keep(m.HasSeq, &b.seq, m.Seq)
	a.UID = keep(m.HasUID, &b.uid, m.UID)
	a.GID = keep(m.HasGID, &b.gid, m.GID)
	if m.HasPrefix {
		// The agent's prefixes are few: reuse the last string while the
		// bytes match, so a flood allocates none.
		if !bytes.Equal(m.Prefix, []byte(b.prefix)) {
			b.prefix = string(m.Prefix)
		}
		a.Prefix = &b.prefix
	}
	if m.HasPayload {
		b.payload = m.Payload
		if b.r.keepPackets {
			// A PacketSink keeps the bytes past this read.
			b.payload = bytes.Clone(m.Payload)
		}
		a.Payload = &b.payload
	}
	if b.r.handle(*a) != 0 {
		b.stop = true
	}
}
