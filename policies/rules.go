package policies

import (
	"fmt"

	"github.com/fwagent/fwagent/internal/nf"
)

// DefaultRuleName and OnErrorRuleName stand for the hook's default and for
// on_error where a rule name is expected (events, eval, tests' rule:); no
// rule may take them.
const (
	DefaultRuleName = "default"
	OnErrorRuleName = "on_error"
)

// PerPacketReason names the first field of r that can change between the
// packets of one flow, or "" if there is none. It decides offload.
func (r *Rule) PerPacketReason() string {
	m := &r.Match
	switch {
	case m.Payload != nil:
		return "payload"
	case len(m.DNSQName) > 0:
		return "dns_qname"
	case len(m.TLSSNI) > 0:
		return "tls_sni"
	case len(m.HTTPHost) > 0:
		return "http_host"
	case m.TCPFlags != nil:
		return "tcp_flags"
	case len(m.Length) > 0:
		return "length"
	case r.Limit != nil:
		return "limit"
	case m.States&(1<<nf.StateInvalid) != 0:
		return "state invalid"
	}
	return ""
}

func (r *Rule) String() string { return fmt.Sprintf("rule %q", r.Name) }
