package gen

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr from <sys/socket.h>; x/sys/unix does not define
// it. The padding keeps the array stride equal to the kernel's on 64-bit.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// mmsgBatch is a reusable vector of messages for sendmmsg/recvmmsg, each
// with one buffer and, for receiving, room for the peer's address.
type mmsgBatch struct {
	msgs  []mmsghdr
	iovs  []unix.Iovec
	bufs  [][]byte
	names []unix.RawSockaddrInet6
}

func newBatch(n, size int, withNames bool) *mmsgBatch {
	b := &mmsgBatch{
		msgs: make([]mmsghdr, n),
		iovs: make([]unix.Iovec, n),
		bufs: make([][]byte, n),
	}
	if withNames {
		b.names = make([]unix.RawSockaddrInet6, n)
	}
	for i := range n {
		b.bufs[i] = make([]byte, size)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(size)
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.Iovlen = 1
		if withNames {
			b.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
			b.msgs[i].hdr.Namelen = uint32(unsafe.Sizeof(b.names[i]))
		}
	}
	return b
}

// resetNames restores the name lengths the kernel overwrote on the last
// receive.
func (b *mmsgBatch) resetNames(n int) {
	for i := range n {
		b.msgs[i].hdr.Namelen = uint32(unsafe.Sizeof(b.names[i]))
	}
}

func sendmmsg(fd uintptr, msgs []mmsghdr) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), 0, 0, 0)
	return int(n), errno
}

func recvmmsg(fd uintptr, msgs []mmsghdr) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}
