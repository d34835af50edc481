// Package sockcgroup finds the cgroup v2 of the local socket a queued
// packet belongs to, for the policy's cgroup rules.
//
// NFQUEUE does not tell userspace a packet's cgroup, so the finder asks the
// kernel's socket table over NETLINK_SOCK_DIAG: an exact lookup of the
// packet's 4-tuple (which, like nft's `socket` expression, also finds the
// listener a SYN is for) answers with INET_DIAG_CGROUP_ID (kernel 5.7 and
// later), the id of the cgroup the socket was created in. The id is the
// inode number of the cgroup's directory on the cgroup2 mount; the finder
// turns it into a path with open_by_handle_at (a kernfs file handle is the
// id itself) and caches it: cgroup ids are never reused. See docs/design.md
// ("Socket owner") for why this and not a mark bit per cgroup.
package sockcgroup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// Netlink and inet_diag constants (include/uapi/linux/netlink.h,
// sock_diag.h, inet_diag.h).
const (
	sockDiagByFamily = 20
	nlmsgHdrLen      = 16
	reqLen           = 56 // struct inet_diag_req_v2
	msgLen           = 72 // struct inet_diag_msg
	attrCgroupID     = 21 // INET_DIAG_CGROUP_ID
	nlmsgError       = 2
	nlmsgDone        = 3
)

// Socket names one socket by its local and remote ends.
type Socket struct {
	Proto         uint8 // unix.IPPROTO_TCP or IPPROTO_UDP
	Local, Remote netip.AddrPort
}

// ErrNoSocket is returned when the kernel knows no such socket.
var ErrNoSocket = errors.New("sockcgroup: no such socket")

// errNoCgroupAttr: the socket found carries no cgroup (a request or
// time-wait socket, or a kernel before 5.7).
var errNoCgroupAttr = errors.New("sockcgroup: the socket found has no cgroup id (a request or time-wait socket, or Linux before 5.7)")

// diag is one NETLINK_SOCK_DIAG socket; a lookup is one request and its
// answer, so callers take mu.
type diag struct {
	mu  sync.Mutex
	fd  int
	seq uint32
	buf []byte
}

func openDiag() (*diag, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sockcgroup: open sock_diag socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sockcgroup: bind sock_diag socket: %w", err)
	}
	// Connected to the kernel, a lookup is a plain write and read.
	if err := unix.Connect(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sockcgroup: connect sock_diag socket: %w", err)
	}
	// A lookup that the kernel never answers must not hang a worker.
	tv := unix.Timeval{Usec: 200_000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sockcgroup: set sock_diag timeout: %w", err)
	}
	return &diag{fd: fd, buf: make([]byte, 8192)}, nil
}

func (d *diag) close() error { return unix.Close(d.fd) }

// appendRequest appends the exact-lookup request for s.
func appendRequest(b []byte, seq uint32, s Socket) []byte {
	start := len(b)
	b = binary.NativeEndian.AppendUint32(b, nlmsgHdrLen+reqLen)
	b = binary.NativeEndian.AppendUint16(b, sockDiagByFamily)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	fam := byte(unix.AF_INET6)
	if s.Local.Addr().Is4() {
		fam = unix.AF_INET
	}
	b = append(b, fam, s.Proto, 0, 0) // family, protocol, ext, pad
	b = binary.NativeEndian.AppendUint32(b, 0xffffffff)
	// struct inet_diag_sockid: ports and addresses in network order, the
	// socket's own end first, except that udp_dump_one reads the two ends
	// "swapped for historical reasons" (net/ipv4/udp_diag.c).
	first, second := s.Local, s.Remote
	if s.Proto == unix.IPPROTO_UDP {
		first, second = second, first
	}
	b = binary.BigEndian.AppendUint16(b, first.Port())
	b = binary.BigEndian.AppendUint16(b, second.Port())
	b = appendAddr(b, first.Addr())
	b = appendAddr(b, second.Addr())
	b = binary.NativeEndian.AppendUint32(b, 0)          // any interface
	b = binary.NativeEndian.AppendUint32(b, 0xffffffff) // INET_DIAG_NOCOOKIE
	b = binary.NativeEndian.AppendUint32(b, 0xffffffff)
	if len(b)-start != nlmsgHdrLen+reqLen {
		panic("sockcgroup: request length")
	}
	return b
}

func appendAddr(b []byte, a netip.Addr) []byte {
	var x [16]byte
	if a.Is4() {
		v := a.As4()
		copy(x[:4], v[:])
	} else {
		x = a.As16()
	}
	return append(b, x[:]...)
}

// lookup asks the kernel for s's cgroup id.
func (d *diag) lookup(s Socket) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	req := appendRequest(d.buf[:0], d.seq, s)
	if _, err := unix.Write(d.fd, req); err != nil {
		return 0, fmt.Errorf("sockcgroup: send lookup: %w", err)
	}
	for {
		n, err := unix.Read(d.fd, d.buf)
		if err != nil {
			return 0, fmt.Errorf("sockcgroup: read lookup answer: %w", err)
		}
		id, seq, err := parseAnswer(d.buf[:n])
		if seq != d.seq {
			continue // the late answer to a request that timed out
		}
		return id, err
	}
}

// parseAnswer reads the kernel's answer to one exact lookup: an
// inet_diag_msg with attributes, or an error. It returns the message's
// sequence number so stale answers can be skipped.
func parseAnswer(b []byte) (id uint64, seq uint32, err error) {
	if len(b) < nlmsgHdrLen {
		return 0, 0, fmt.Errorf("sockcgroup: short answer (%d bytes)", len(b))
	}
	n := int(binary.NativeEndian.Uint32(b[0:4]))
	typ := binary.NativeEndian.Uint16(b[4:6])
	seq = binary.NativeEndian.Uint32(b[8:12])
	if n < nlmsgHdrLen || n > len(b) {
		return 0, seq, fmt.Errorf("sockcgroup: answer length %d in a %d-byte datagram", n, len(b))
	}
	body := b[nlmsgHdrLen:n]
	switch typ {
	case nlmsgError:
		if len(body) < 4 {
			return 0, seq, errors.New("sockcgroup: short error answer")
		}
		e := unix.Errno(-int32(binary.NativeEndian.Uint32(body[0:4])))
		if e == unix.ENOENT {
			return 0, seq, ErrNoSocket
		}
		return 0, seq, fmt.Errorf("sockcgroup: lookup: %w", e)
	case nlmsgDone:
		return 0, seq, ErrNoSocket
	case sockDiagByFamily:
	default:
		return 0, seq, fmt.Errorf("sockcgroup: unexpected answer type %d", typ)
	}
	if len(body) < msgLen {
		return 0, seq, fmt.Errorf("sockcgroup: short inet_diag_msg (%d bytes)", len(body))
	}
	attrs := body[msgLen:]
	for len(attrs) >= 4 {
		l := int(binary.NativeEndian.Uint16(attrs[0:2]))
		t := binary.NativeEndian.Uint16(attrs[2:4]) & 0x3fff
		if l < 4 || l > len(attrs) {
			return 0, seq, errors.New("sockcgroup: malformed attribute")
		}
		if t == attrCgroupID && l >= 4+8 {
			return binary.NativeEndian.Uint64(attrs[4:12]), seq, nil
		}
		next := (l + 3) &^ 3
		if next >= len(attrs) {
			break
		}
		attrs = attrs[next:]
	}
	return 0, seq, errNoCgroupAttr
}
