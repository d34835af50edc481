package rules

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// batchBuffer is the socket buffer size for the agent's nftables
// connection. A compiled policy of a thousand rules is one batch of several
// megabytes (the kernel refuses a message larger than the send buffer), and
// the kernel echoes every rule added before google/nftables reads the
// acknowledgements (an overrun receive buffer loses them).
const batchBuffer = 64 << 20

// BigBatches is the connection option every nftables connection that
// installs or reloads a compiled policy needs: send and receive buffers
// large enough for its batch, forced past the sysctl caps (the agent holds
// CAP_NET_ADMIN, which SO_*BUFFORCE needs).
func BigBatches() nftables.ConnOption {
	return nftables.WithSockOptions(func(c *netlink.Conn) error {
		raw, err := c.SyscallConn()
		if err != nil {
			return fmt.Errorf("rules: netlink socket: %w", err)
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
				if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, batchBuffer); e != nil && serr == nil {
					serr = e
				}
			}
		}); err != nil {
			return fmt.Errorf("rules: netlink socket: %w", err)
		}
		if serr != nil {
			return fmt.Errorf("rules: size the netlink socket buffers for large batches: %w", serr)
		}
		return nil
	})
}
