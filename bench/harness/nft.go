package harness

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// benchTable is the harness's own table for the naive and C loops; fwagent
// installs its own.
const benchTable = "fwbench"

// installQueueTable queues every UDP and TCP packet arriving in the
// namespace (fd) to queue 0. This kernel has no native nft `queue`
// expression, so the rule uses the xt NFQUEUE target (revision 3), as
// rules/ does. Without the bypass flag a full queue drops, so overload is
// measured as loss instead of being waved through.
func installQueueTable(nsFd int) (remove func() error, err error) {
	c, err := nftables.New(nftables.WithNetNSFd(nsFd))
	if err != nil {
		return nil, fmt.Errorf("bench: nftables: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: benchTable})
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{
		Name: "in", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Target{Name: "NFQUEUE", Rev: 3, Info: xtQueueInfo(0, 1)},
		}})
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("bench: install table %s: %w", benchTable, err)
	}
	return func() error {
		c.DelTable(t)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("bench: remove table %s: %w", benchTable, err)
		}
		return nil
	}, nil
}

// xtQueueInfo is struct xt_NFQ_info_v3 {u16 queuenum, queues_total, flags}
// in host order, padded to XT_ALIGN (8 bytes).
func xtQueueInfo(num, total uint16) *xt.Unknown {
	b := make([]byte, 0, 8)
	b = binary.NativeEndian.AppendUint16(b, num)
	b = binary.NativeEndian.AppendUint16(b, total)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = append(b, 0, 0)
	u := xt.Unknown(b)
	return &u
}

// kernelOnlyTable is the name and text of a kernel-only configuration's table.
// kernel-ct turns connection tracking on without queueing anything, as
// fwagent's own table does with its ct mark rules; kernel-nft is one rule
// accepting the bench UDP ports, the least any nftables firewall adds.
func kernelOnlyTable(kind string) (string, string) {
	if kind == kindKernelNft1000 {
		return "fwbench_nft", bigPolicyNft(1000)
	}
	if kind == kindKernelCT {
		return "fwbench_ct", `table inet fwbench_ct {
	chain in {
		type filter hook input priority 0; policy accept;
		ct state established,related accept
	}
}
`
	}
	return "fwbench_nft", fmt.Sprintf(`table inet fwbench_nft {
	chain in {
		type filter hook input priority 0; policy accept;
		udp dport %s accept
	}
}
`, benchUDP)
}

// ulogdRuleset logs every UDP packet to the bench ports to NFLOG group and
// drops it: the kernel half of the ulogd2 drop-log configuration, and
// what fwagent's drop path ends in too.
func ulogdRuleset(group uint16, ports string) string {
	return fmt.Sprintf(`table inet fwbench_log {
	chain in {
		type filter hook input priority 0; policy accept;
		udp dport %s log prefix "bench-drop" group %d drop
	}
}
`, ports, group)
}

// ulogdConfig is a ulogd2 configuration reading NFLOG group into a JSON
// lines file, Debian's JSON stack. The 16 MiB socket buffer matches what
// fwagent and the C loop ask for, so both readers get the same headroom.
func ulogdConfig(pluginDir, logFile, jsonFile string, group uint16) string {
	return fmt.Sprintf(`[global]
logfile="%[2]s"
loglevel=5
plugin="%[1]s/ulogd_inppkt_NFLOG.so"
plugin="%[1]s/ulogd_raw2packet_BASE.so"
plugin="%[1]s/ulogd_filter_IFINDEX.so"
plugin="%[1]s/ulogd_filter_IP2STR.so"
plugin="%[1]s/ulogd_filter_HWHDR.so"
plugin="%[1]s/ulogd_output_JSON.so"
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,mac2str1:HWHDR,json1:JSON

[log1]
group=%[4]d
netlink_socket_buffer_size=16777216
netlink_socket_buffer_maxsize=16777216

[json1]
file="%[3]s"
sync=0
`, pluginDir, logFile, jsonFile, group)
}
