// Package sockdiag ends local TCP sockets through the kernel's sock_diag
// netlink interface (SOCK_DESTROY, CONFIG_INET_DIAG_DESTROY), as `ss -K`
// does.
//
// The agent needs it for one case: a reject decided in userspace for a
// mid-stream TCP segment on the input hook. nft's `reject with tcp reset`
// resets only the sender of the packet, the remote client; the local server
// socket would wait for a peer that is gone, and a rejected client could
// exhaust a server's connection slots. Ending that socket sends the client
// a reset from the socket too, and frees the slot at once.
package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Message types of NETLINK_SOCK_DIAG (linux/sock_diag.h).
const (
	sockDiagByFamily = 20
	sockDestroy      = 21
)

// tcpListen is TCP_LISTEN in linux/tcp_states.h.
const tcpListen = 10

// noCookie is INET_DIAG_NOCOOKIE: look the socket up by its addresses.
const noCookie = ^uint32(0)

// ErrListener reports that the addresses name no connected socket, only a
// listening one, which Destroy refuses to end.
var ErrListener = errors.New("sockdiag: only a listening socket matches")

// Conn is a sock_diag netlink socket in the network namespace it was dialed
// in. It is not safe for concurrent use.
type Conn struct {
	c *netlink.Conn
}

// Dial opens a sock_diag socket in the calling thread's network namespace.
func Dial() (*Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
	if err != nil {
		return nil, fmt.Errorf("sockdiag: dial: %w", err)
	}
	return &Conn{c: c}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// Destroy ends the TCP socket connected from local to remote.
//
// The kernel's lookup for SOCK_DESTROY falls back to a listening socket when
// no connection matches (it would end the server's listener, as `ss -K`
// with a stale address can). So Destroy first asks for the socket, checks
// that it is a connection to exactly remote, and then ends that socket by
// its cookie. An error wrapping unix.ENOENT means no socket matches.
func (c *Conn) Destroy(local, remote netip.AddrPort) error {
	local, remote = unmap(local), unmap(remote)
	if local.Addr().Is4() != remote.Addr().Is4() {
		return fmt.Errorf("sockdiag: %s and %s are of different families", local, remote)
	}
	req := request(local, remote, noCookie)
	msgs, err := c.c.Execute(netlink.Message{
		Header: netlink.Header{Type: sockDiagByFamily, Flags: netlink.Request},
		Data:   req,
	})
	if err != nil {
		return fmt.Errorf("sockdiag: find %s-%s: %w", local, remote, err)
	}
	if len(msgs) != 1 || len(msgs[0].Data) < 4+48 {
		return fmt.Errorf("sockdiag: find %s-%s: unexpected answer", local, remote)
	}
	d := msgs[0].Data
	state := d[1]
	id := d[4 : 4+48]
	gotRemote := binary.BigEndian.Uint16(id[2:4])
	if state == tcpListen || gotRemote != remote.Port() || !sameAddr(id[20:36], remote.Addr()) {
		return ErrListener
	}
	cookie := binary.NativeEndian.Uint32(id[40:44])
	cookieHi := binary.NativeEndian.Uint32(id[44:48])
	req = request(local, remote, cookie)
	binary.NativeEndian.PutUint32(req[8+44:8+48], cookieHi)
	if _, err := c.c.Execute(netlink.Message{
		Header: netlink.Header{Type: sockDestroy, Flags: netlink.Request | netlink.Acknowledge},
		Data:   req,
	}); err != nil {
		return fmt.Errorf("sockdiag: destroy %s-%s: %w", local, remote, err)
	}
	return nil
}

// request builds an inet_diag_req_v2 (linux/inet_diag.h) for one TCP
// socket: family, protocol, ext, pad, states, then inet_diag_sockid (ports
// and addresses in network order, interface, cookie).
func request(local, remote netip.AddrPort, cookie uint32) []byte {
	b := make([]byte, 8+48)
	b[0] = unix.AF_INET6
	if local.Addr().Is4() {
		b[0] = unix.AF_INET
	}
	b[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:8], ^uint32(0)) // every state
	id := b[8:]
	binary.BigEndian.PutUint16(id[0:2], local.Port())
	binary.BigEndian.PutUint16(id[2:4], remote.Port())
	putAddr(id[4:20], local.Addr())
	putAddr(id[20:36], remote.Addr())
	binary.NativeEndian.PutUint32(id[40:44], cookie)
	binary.NativeEndian.PutUint32(id[44:48], noCookie)
	return b
}

func putAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// sameAddr compares a sockid address field of the answer with a. The answer
// uses the same layout as the request (IPv4 in the first four bytes).
func sameAddr(b []byte, a netip.Addr) bool {
	if a.Is4() {
		v := a.As4()
		return string(b[:4]) == string(v[:])
	}
	v := a.As16()
	return string(b[:16]) == string(v[:])
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
