package rules

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
)

// captureConn is an nftables.Conn whose batches go to a recorder instead of
// the kernel; every message is acknowledged by echoing it, as the library's
// own tests do.
func captureConn(t *testing.T) (*nftables.Conn, *[]netlink.Message) {
	t.Helper()
	var got []netlink.Message
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		got = append(got, req...)
		return req, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return c, &got
}

func msgType(m netlink.Message) uint16 { return uint16(m.Header.Type) & 0xff }

// ruleExprs decodes a NEWRULE message into its comment and, per expression,
// its name and raw attributes.
type decodedExpr struct {
	name  string
	attrs map[uint16][]byte
}

func decodeRule(t *testing.T, m netlink.Message) (comment string, exprs []decodedExpr) {
	t.Helper()
	ad, err := netlink.NewAttributeDecoder(m.Data[4:]) // skip nfgenmsg
	if err != nil {
		t.Fatal(err)
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_USERDATA:
			b := ad.Bytes()
			comment = strings.TrimRight(string(b[2:]), "\x00")
		case unix.NFTA_RULE_EXPRESSIONS:
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					var e decodedExpr
					list.Nested(func(ed *netlink.AttributeDecoder) error {
						for ed.Next() {
							switch ed.Type() {
							case unix.NFTA_EXPR_NAME:
								e.name = strings.TrimRight(ed.String(), "\x00")
							case unix.NFTA_EXPR_DATA:
								e.attrs = map[uint16][]byte{}
								ed.Nested(func(dd *netlink.AttributeDecoder) error {
									for dd.Next() {
										e.attrs[dd.Type()] = dd.Bytes()
									}
									return nil
								})
							}
						}
						return nil
					})
					exprs = append(exprs, e)
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		t.Fatal(err)
	}
	return comment, exprs
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// TestQueueRuleMarshal checks both queue kinds on the wire. This kernel
// refuses the native expression, so the kernel tests only cover xt; this
// one pins what the native path sends.
func TestQueueRuleMarshal(t *testing.T) {
	tests := []struct {
		name      string
		q         queueStmt
		wantName  string
		wantAttrs map[uint16][]byte
	}{
		{"native one queue bypass", queueStmt{kind: QueueNative, base: 0, total: 1, bypass: true}, "queue", map[uint16][]byte{
			unix.NFTA_QUEUE_NUM: be16(0), unix.NFTA_QUEUE_TOTAL: be16(1), unix.NFTA_QUEUE_FLAGS: be16(unix.NFT_QUEUE_FLAG_BYPASS),
		}},
		{"native fanout no bypass", queueStmt{kind: QueueNative, base: 4, total: 4, fanout: true}, "queue", map[uint16][]byte{
			unix.NFTA_QUEUE_NUM: be16(4), unix.NFTA_QUEUE_TOTAL: be16(4), unix.NFTA_QUEUE_FLAGS: be16(unix.NFT_QUEUE_FLAG_CPU_FANOUT),
		}},
		{"xt one queue bypass", queueStmt{kind: QueueXT, base: 0, total: 1, bypass: true}, "target", map[uint16][]byte{
			unix.NFTA_TARGET_NAME: []byte("NFQUEUE\x00"),
			unix.NFTA_TARGET_REV:  binary.BigEndian.AppendUint32(nil, 3),
			unix.NFTA_TARGET_INFO: nfqInfo(0, 1, 1),
		}},
		{"xt fanout bypass high queues", queueStmt{kind: QueueXT, base: 0x1234, total: 0x0102, bypass: true, fanout: true}, "target", map[uint16][]byte{
			unix.NFTA_TARGET_NAME: []byte("NFQUEUE\x00"),
			unix.NFTA_TARGET_REV:  binary.BigEndian.AppendUint32(nil, 3),
			unix.NFTA_TARGET_INFO: nfqInfo(0x1234, 0x0102, 3),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, got := captureConn(t)
			tb := ownTable()
			ch := &nftables.Chain{Name: "input", Table: tb}
			c.AddRule(rule{name: RuleQueue, stmts: []stmt{tt.q}}.nft(tb, ch))
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			var rules []netlink.Message
			for _, m := range *got {
				if msgType(m) == unix.NFT_MSG_NEWRULE {
					rules = append(rules, m)
				}
			}
			if len(rules) != 1 {
				t.Fatalf("%d rule messages", len(rules))
			}
			comment, exprs := decodeRule(t, rules[0])
			if comment != RuleQueue || len(exprs) != 1 || exprs[0].name != tt.wantName {
				t.Fatalf("rule %q exprs %+v", comment, exprs)
			}
			for k, want := range tt.wantAttrs {
				if g := exprs[0].attrs[k]; !bytes.Equal(g, want) {
					t.Errorf("attr %d = %x, want %x", k, g, want)
				}
			}
		})
	}
}

// nfqInfo builds struct xt_NFQ_info_v3 by hand, independently of xtInfo:
// three host-order u16 and two bytes of XT_ALIGN padding.
func nfqInfo(num, total, flags uint16) []byte {
	b := make([]byte, 8)
	binary.NativeEndian.PutUint16(b[0:], num)
	binary.NativeEndian.PutUint16(b[2:], total)
	binary.NativeEndian.PutUint16(b[4:], flags)
	return b
}

// TestInstallBatchShape checks the install transaction without a kernel:
// add, delete, add the table (stale-table replacement in one batch), then
// every chain and its rules, with the native queue expression.
func TestInstallBatchShape(t *testing.T) {
	c, got := captureConn(t)
	cfg := DefaultConfig()
	cfg.Hooks = []nf.Hook{nf.HookInput, nf.HookOutput}
	cfg.QueueKind = QueueNative
	tb := &Table{conn: c, table: ownTable(), cfg: cfg, kind: QueueNative}
	if chains, err := tb.queueInstall(); err != nil || len(chains) != 2 {
		t.Fatalf("%d chains queued, err %v", len(chains), err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	var types []uint16
	var lastExprs []string
	for _, m := range *got {
		if typ := msgType(m); typ < unix.NFT_MSG_MAX && m.Header.Type>>8 == unix.NFNL_SUBSYS_NFTABLES {
			types = append(types, typ)
			if typ == unix.NFT_MSG_NEWRULE {
				_, ex := decodeRule(t, m)
				lastExprs = lastExprs[:0]
				for _, e := range ex {
					lastExprs = append(lastExprs, e.name)
				}
			}
		}
	}
	nIn, nOut := len(chainRules(cfg, nf.HookInput, QueueNative)), len(chainRules(cfg, nf.HookOutput, QueueNative))
	want := []uint16{unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE, unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_NEWCHAIN}
	for range nIn {
		want = append(want, unix.NFT_MSG_NEWRULE)
	}
	want = append(want, unix.NFT_MSG_NEWCHAIN)
	for range nOut {
		want = append(want, unix.NFT_MSG_NEWRULE)
	}
	if !slices.Equal(types, want) {
		t.Fatalf("batch message types %v, want %v", types, want)
	}
	if !slices.Equal(lastExprs, []string{"queue"}) {
		t.Fatalf("last rule exprs %v, want the native queue", lastExprs)
	}
}

// TestChainRules pins the order and presence of the rules per hook and flag.
func TestChainRules(t *testing.T) {
	marks := []string{RuleOffload, RuleOffloadReply, RuleOffloadStale, RuleDropLog, RuleRejectTCP, RuleReject, RuleRejectLogTCP, RuleRejectLog, RuleAcceptLog, RuleWouldDrop, RuleWouldReject, RuleOffloadSet, RuleOffloadSetRep, RuleLooped}
	tail := []string{RuleEstablished, RuleRelated, RuleInvalid, RuleQueue}
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }
	tests := []struct {
		hook          nf.Hook
		loopback, nd6 bool
		want          []string
	}{
		{nf.HookInput, true, true, cat(marks, []string{RuleLoopback, RuleICMPv6ND}, tail)},
		{nf.HookOutput, true, true, cat(marks, []string{RuleLoopback, RuleICMPv6ND}, tail)},
		{nf.HookForward, true, true, cat(marks, []string{RuleICMPv6ND}, tail)},
		{nf.HookInput, false, true, cat(marks, []string{RuleICMPv6ND}, tail)},
		{nf.HookInput, true, false, cat(marks, []string{RuleLoopback}, tail)},
		{nf.HookOutput, false, false, cat(marks, tail)},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.AcceptLoopback, cfg.AcceptICMPv6ND = tt.loopback, tt.nd6
		var got []string
		for _, r := range chainRules(cfg, tt.hook, QueueXT) {
			got = append(got, r.name)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s loopback=%v nd=%v: %v, want %v", tt.hook, tt.loopback, tt.nd6, got, tt.want)
		}
	}
}

func TestRenderText(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(*Config)
		want, not []string
	}{
		{"defaults", func(*Config) {}, []string{
			"add table inet fwagent\ndelete table inet fwagent\ntable inet fwagent {\n",
			"chain input {\n\t\ttype filter hook input priority 0; policy accept;\n",
			`meta mark & 0x00070000 == 0x00010000 log prefix "fwagent:drop" group 100 drop comment "droplog"`,
			`meta mark & 0x00070000 == 0x00030000 meta l4proto tcp log prefix "fwagent:reject" group 100 reject with tcp reset comment "rejectlog-tcp"`,
			`meta mark & 0xffff0000 == 0x00070000 ct direction original ct mark set ct mark & 0x003effff | 0x00010000 meta mark set meta mark & 0x0000ffff accept comment "offload-set"`,
			`meta mark & 0xffff0000 == 0x00070000 ct direction reply ct mark set ct mark & 0x003dffff | 0x00020000 meta mark set meta mark & 0x0000ffff accept comment "offload-set-reply"`,
			`ct mark & 0xffc10000 == 0x00010000 ct direction original ct state new,established accept comment "offload"`,
			`ct mark & 0xffc20000 == 0x00020000 ct direction reply ct state new,established accept comment "offload-reply"`,
			`ct mark & 0x003f0000 != 0x00000000 ct mark & 0xffc00000 != 0x00000000 ct mark set ct mark & 0x0000ffff comment "offload-stale"`,
			`meta mark & 0x00070000 != 0x00000000 meta mark set meta mark & 0x0000ffff accept comment "looped"`,
			`ct state invalid meta mark set meta mark | 0x00200000 comment "invalid"`,
			`iif lo accept comment "loopback"`,
			`meta l4proto ipv6-icmp icmpv6 type 133-137 accept comment "icmpv6-nd"`,
			`ct state established meta mark set meta mark | 0x00080000 comment "established"`,
			`queue flags bypass to 0 comment "queue"`,
		}, []string{"forward", "output", "xt target"}},
		{"generation and log group", func(c *Config) { c.Generation, c.LogGroup = 5, 7 }, []string{
			`meta mark & 0xffff0000 == 0x002f0000 ct direction original ct mark set ct mark & 0x003effff | 0x01410000`,
			`ct mark & 0xffc10000 == 0x01410000 ct direction original`,
			`group 7 drop`,
		}, []string{"group 100"}},
		{"generation wraps at MaxGen", func(c *Config) { c.Generation = 1024 + 5 }, []string{`ct mark & 0xffc10000 == 0x01410000 ct direction original ct state new,established accept comment "offload"`}, nil},
		{"output bits", func(c *Config) { c.Hooks = []nf.Hook{nf.HookOutput} }, []string{
			`ct mark & 0xffd00000 == 0x00100000 ct direction original`,
			`ct mark & 0xffe00000 == 0x00200000 ct direction reply`,
		}, nil},
		{"fail closed fanout", func(c *Config) { c.Bypass, c.QueueBase, c.Queues, c.CPUFanout = false, 8, 2, true }, []string{`queue flags fanout to 8-9 comment "queue"`}, []string{"bypass"}},
		{"fanout needs two queues", func(c *Config) { c.CPUFanout = true }, []string{`queue flags bypass to 0 comment`}, []string{"fanout"}},
		{"xt as comment", func(c *Config) { c.QueueKind = QueueXT }, []string{"\t\t# xt target NFQUEUE (nft syntax cannot express it), equivalent to: queue flags bypass to 0"}, []string{"\t\tqueue"}},
		{"output and forward", func(c *Config) {
			c.Hooks = []nf.Hook{nf.HookOutput, nf.HookForward}
			c.Priority = -150
		}, []string{"type filter hook output priority -150;", "type filter hook forward priority -150;", `oif lo accept`}, []string{"iif lo", "chain input"}},
		{"invalid", func(c *Config) { c.Hooks = nil }, []string{"# fwagent: cannot render the table: rules: no hooks configured\n"}, []string{"table inet"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			out := Render(cfg)
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("missing %q in\n%s", w, out)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out, n) {
					t.Errorf("unexpected %q in\n%s", n, out)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		errSub string
	}{
		{"defaults", func(*Config) {}, ""},
		{"no hooks", func(c *Config) { c.Hooks = nil }, "no hooks"},
		{"duplicate hook", func(c *Config) { c.Hooks = []nf.Hook{nf.HookInput, nf.HookInput} }, "twice"},
		{"unknown hook", func(c *Config) { c.Hooks = []nf.Hook{nf.NumHooks} }, "unknown hook"},
		{"no marks", func(c *Config) { c.Marks = nf.Marks{} }, "mark layout"},
		{"queue overflow", func(c *Config) { c.QueueBase, c.Queues = 65535, 2 }, "65535"},
		{"last queue", func(c *Config) { c.QueueBase, c.Queues = 65534, 2 }, ""},
		{"zero queues means one", func(c *Config) { c.QueueBase, c.Queues = 65535, 0 }, ""},
		{"bad kind", func(c *Config) { c.QueueKind = 9 }, "queue kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if (err == nil) != (tt.errSub == "") || err != nil && !strings.Contains(err.Error(), tt.errSub) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.errSub)
			}
		})
	}
}

func BenchmarkRender(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Hooks = allHooks
	b.ReportAllocs()
	for b.Loop() {
		_ = Render(cfg)
	}
}
