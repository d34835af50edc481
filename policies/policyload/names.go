package policyload

import (
	"sort"
	"strconv"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

// protoNames are the protocol names a policy may use.
var protoNames = map[string]uint8{
	"icmp":   packet.ProtoICMP,
	"tcp":    packet.ProtoTCP,
	"udp":    packet.ProtoUDP,
	"gre":    packet.ProtoGRE,
	"esp":    packet.ProtoESP,
	"ah":     51,
	"icmpv6": packet.ProtoICMPv6,
	"sctp":   packet.ProtoSCTP,
}

func protoName(p uint8) string {
	for n, v := range protoNames {
		if v == p {
			return n
		}
	}
	return strconv.Itoa(int(p))
}

// icmp4Names and icmp6Names follow nftables' spelling, plus the RFC 4861
// long forms for neighbour discovery.
var icmp4Names = map[string]uint8{
	"echo-reply":              0,
	"destination-unreachable": 3,
	"source-quench":           4,
	"redirect":                5,
	"echo-request":            8,
	"router-advertisement":    9,
	"router-solicitation":     10,
	"time-exceeded":           11,
	"parameter-problem":       12,
	"timestamp-request":       13,
	"timestamp-reply":         14,
	"info-request":            15,
	"info-reply":              16,
	"address-mask-request":    17,
	"address-mask-reply":      18,
}

var icmp6Names = map[string]uint8{
	"destination-unreachable": 1,
	"packet-too-big":          2,
	"time-exceeded":           3,
	"parameter-problem":       4,
	"echo-request":            128,
	"echo-reply":              129,
	"mld-listener-query":      130,
	"mld-listener-report":     131,
	"mld-listener-done":       132,
	"mld-listener-reduction":  132,
	"nd-router-solicit":       133,
	"router-solicitation":     133,
	"nd-router-advert":        134,
	"router-advertisement":    134,
	"nd-neighbor-solicit":     135,
	"neighbor-solicitation":   135,
	"nd-neighbor-advert":      136,
	"neighbor-advertisement":  136,
	"nd-redirect":             137,
	"redirect":                137,
	"router-renumbering":      138,
	"ind-neighbor-solicit":    141,
	"ind-neighbor-advert":     142,
	"mld2-listener-report":    143,
}

var limitPerNames = map[string]policies.LimitPer{
	"src":  policies.LimitSrc,
	"dst":  policies.LimitDst,
	"flow": policies.LimitFlow,
}

var actionNames = map[string]policies.Action{
	"accept": policies.ActionAccept,
	"drop":   policies.ActionDrop,
	"reject": policies.ActionReject,
}

var stateNames = map[string]nf.State{
	"new":         nf.StateNew,
	"established": nf.StateEstablished,
	"related":     nf.StateRelated,
	"invalid":     nf.StateInvalid,
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func icmpNames() []string {
	seen := map[string]bool{}
	for k := range icmp4Names {
		seen[k] = true
	}
	for k := range icmp6Names {
		seen[k] = true
	}
	return keys(seen)
}

// tcpFlagLetters are pf's flag letters in header bit order.
const tcpFlagLetters = "FSRPAUEC"
