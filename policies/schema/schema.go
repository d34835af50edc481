// Package schema generates the JSON Schema of the policy format, for
// editors (yaml-language-server) and CI linters.
//
// The schema is built from the loader's own vocabulary
// (policyload.FormatVocabulary): every mapping's keys, protocol, state and
// ICMP type names come from the tables the loader reads with, and every key
// must have a description here or Generate fails. A new key in the loader
// therefore fails this package's tests until it is described, and the
// committed docs/policy.schema.json is compared with Generate's output.
//
// The schema describes shapes, not meaning: it cannot know that a set is
// of the wrong kind or that a rule can never match; `fwagent check` does.
// Where it is unsure it accepts, so that an editor never flags a policy the
// loader takes.
package schema

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
)

// ID is the schema's $id.
const ID = "https://github.com/fwagent/fwagent/docs/policy.schema.json"

type obj = map[string]any

// Generate returns the policy format's JSON Schema (draft-07, the newest
// draft yaml-language-server fully supports), indented, with a trailing
// newline.
func Generate() ([]byte, error) {
	s, err := build(policyload.FormatVocabulary())
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return append(b, '\n'), nil
}

func ref(name string) obj { return obj{"$ref": "#/definitions/" + name} }

func enum(desc string, vals ...string) obj {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = v
	}
	return obj{"description": desc, "enum": out}
}

// oneOrList is a value or a non-empty list of such values, as the loader's
// list() reads them.
func oneOrList(desc string, item obj) obj {
	return obj{"description": desc, "anyOf": []any{item, obj{"type": "array", "minItems": 1, "items": item}}}
}

func str(desc string) obj { return obj{"description": desc, "type": "string", "minLength": 1} }

func boolean(desc string) obj {
	return obj{"description": desc + " (true or false; yes/no/on/off are refused)", "type": "boolean"}
}

// intOrText is a whole number, written bare or quoted.
func intOrText(desc string, lo, hi int64, pattern string) obj {
	return obj{"description": desc, "anyOf": []any{
		obj{"type": "integer", "minimum": lo, "maximum": hi},
		obj{"type": "string", "pattern": pattern},
	}}
}

// caseless is a pattern matching s in any letter case, for names the loader
// lower-cases (protocols).
func caseless(s string) string {
	var b strings.Builder
	for _, c := range s {
		lo, up := strings.ToLower(string(c)), strings.ToUpper(string(c))
		if lo == up {
			if strings.ContainsRune(`\.+*?()|[]{}^$-`, c) {
				b.WriteByte('\\')
			}
			b.WriteRune(c)
			continue
		}
		b.WriteString("[" + lo + up + "]")
	}
	return b.String()
}

// object is a mapping with exactly keys, each described by props. A key
// without a description is an error: the loader learnt a key the schema
// does not know.
func object(section string, keys []string, props map[string]obj, desc string) (obj, error) {
	p := obj{}
	for _, k := range keys {
		s, ok := props[k]
		if !ok {
			return nil, fmt.Errorf("schema: the loader accepts key %q in %s, which the schema does not describe", k, section)
		}
		p[k] = s
	}
	for k := range props {
		if !slices.Contains(keys, k) {
			return nil, fmt.Errorf("schema: the schema describes key %q in %s, which the loader does not accept", k, section)
		}
	}
	return obj{"description": desc, "type": "object", "properties": p, "additionalProperties": false}, nil
}

const (
	addrPattern  = `^!?\s*(\$[A-Za-z0-9_.-]+|[0-9A-Fa-f:.]+(/[0-9]{1,3})?)$`
	portPattern  = `^!?\s*(\$[A-Za-z0-9_.-]+|[0-9]{1,5}(\s*-\s*[0-9]{1,5})?)$`
	rangePattern = `^[0-9]{1,5}(\s*-\s*[0-9]{1,5})?$`
	setRef       = `^\$[A-Za-z0-9_.-]+$`
	ratePattern  = `^\s*[0-9.]+(e[0-9]+)?\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$`
)

// fragments are the value schemas several sections share.
type fragments struct {
	hook, action, errAction, icmpType, proto       obj
	addr, port, length, name, iface, owner, cgroup obj
	// flags is the tcp_flags pattern.
	flags string
}

func newFragments(v policyload.Vocabulary) fragments {
	var f fragments
	f.hook = enum("a netfilter hook", v.Hooks...)
	f.action = enum("accept lets the packet through, drop discards it, reject discards it and answers", v.Actions...)
	f.errAction = enum("verdict for packets that cannot be decoded", v.OnErrorActions...)
	icmpName := enum("an ICMP or ICMPv6 type name", v.ICMPTypes...)
	f.icmpType = obj{"anyOf": []any{icmpName, obj{"type": "integer", "minimum": 0, "maximum": 255}, obj{"type": "string", "pattern": `^[0-9]{1,3}$`}}}
	protoPatterns := make([]string, len(v.Protos))
	for i, p := range v.Protos {
		protoPatterns[i] = caseless(p)
	}
	f.proto = obj{"anyOf": []any{
		enum("a protocol name", v.Protos...),
		obj{"type": "string", "pattern": "^(" + strings.Join(protoPatterns, "|") + ")$"},
		obj{"type": "integer", "minimum": 0, "maximum": 255},
		obj{"type": "string", "pattern": `^[0-9]{1,3}$`},
	}}
	f.addr = obj{"type": "string", "pattern": addrPattern}
	f.port = obj{"anyOf": []any{obj{"type": "integer", "minimum": 0, "maximum": 65535}, obj{"type": "string", "pattern": portPattern}}}
	f.length = obj{"anyOf": []any{obj{"type": "integer", "minimum": 0, "maximum": 65535}, obj{"type": "string", "pattern": rangePattern}}}
	f.name = obj{"type": "string", "pattern": `^[^!\s]`}
	f.iface = obj{"type": "string", "pattern": `^[!-~]{1,31}$`}
	f.flags = "^[" + v.TCPFlags + strings.ToLower(v.TCPFlags) + "]*(/[" + v.TCPFlags + strings.ToLower(v.TCPFlags) + "]+)?$"
	f.owner = obj{"anyOf": []any{obj{"type": "integer", "minimum": 0, "maximum": 1<<32 - 1}, obj{"type": "string", "minLength": 1}}}
	f.cgroup = obj{"type": "string", "pattern": `^[^!\s]`}
	return f
}

// section is one definition of the schema: one mapping the loader reads.
type section struct {
	name  string
	props map[string]obj
	desc  string
}

func nullable(s obj) obj { return obj{"anyOf": []any{obj{"type": "null"}, s}} }

// policySections describe the policy's top level and its rules.
func policySections(v policyload.Vocabulary, f fragments) []section {
	return []section{
		{"policy", map[string]obj{
			"version":  {"description": "the format version, always 1", "enum": []any{1, "1"}},
			"mode":     enum("enforce carries out every verdict; audit decides and logs but accepts every packet", v.Modes...),
			"default":  {"description": "the verdict per hook when no rule matches", "anyOf": []any{f.action, ref("default")}},
			"on_error": {"description": "the verdict per hook for packets that cannot be decoded", "anyOf": []any{f.errAction, ref("on_error")}},
			"sets": nullable(obj{"description": "named sets, referenced as $name", "type": "object",
				"propertyNames": obj{"pattern": `^[A-Za-z0-9_.-]+$`},
				"additionalProperties": obj{"anyOf": []any{
					ref("set"),
					obj{"type": "array", "items": obj{"anyOf": []any{obj{"type": "string", "minLength": 1}, obj{"type": "integer", "minimum": 0}}}},
				}}}),
			"rules": nullable(obj{"description": "rules in order; the first whose match holds decides", "type": "array", "items": ref("rule")}),
			"tests": nullable(obj{"description": "the policy's own tests, run by fwagent check", "type": "array", "items": ref("test")}),
		}, "a fwagent policy"},
		{"default", map[string]obj{
			"input": f.action, "forward": f.action, "output": f.action,
			"log": boolean("log packets the defaults drop or reject"),
		}, "the verdict per hook when no rule matches"},
		{"on_error", map[string]obj{"input": f.errAction, "forward": f.errAction, "output": f.errAction}, "the verdict per hook for undecodable packets"},
		{"set", map[string]obj{"file": str("a file of entries, one a line, relative to the policy")}, "a set read from a file"},
		{"rule", map[string]obj{
			"name":    obj{"description": "unique; names the rule in logs and metrics", "type": "string", "minLength": 1, "maxLength": 64, "not": obj{"enum": []any{policies.DefaultRuleName, policies.OnErrorRuleName}}},
			"hook":    oneOrList("the hook(s) the rule applies to; default all", f.hook),
			"match":   nullable(ref("match")),
			"action":  f.action,
			"log":     obj{"description": "log the packets this rule decides", "anyOf": []any{boolean("log"), ref("log")}},
			"limit":   ref("limit"),
			"mark":    intOrText("a packet mark to set on accepted packets", 0, 1<<32-1, `^(0[xX][0-9A-Fa-f_]+|[0-9_]+)$`),
			"offload": boolean("let the kernel accept the rest of the flow"),
			"audit":   boolean("make this rule audit-only"),
		}, "a rule"},
		{"log", map[string]obj{"prefix": obj{"description": "the event's prefix field", "type": "string", "minLength": 1, "maxLength": 64}}, "log with a prefix"},
		{"limit", map[string]obj{
			"rate":  obj{"description": "N/s, N/m or N/h", "type": "string", "pattern": ratePattern},
			"burst": intOrText("bucket size; default the rate's count", 1, 1<<30, `^[0-9_]+$`),
			"per":   enum("count per source, destination or flow instead of for the rule", v.LimitPer...),
			"over":  boolean("match only once over the rate"),
		}, "a token bucket"},
	}
}

// matchSections describe a rule's match.
func matchSections(v policyload.Vocabulary, f fragments) []section {
	return []section{
		{"match", map[string]obj{
			"proto":     oneOrList("protocol name or number", f.proto),
			"family":    enum("address family", "ipv4", "ipv6"),
			"src":       oneOrList("source address, CIDR or $set; ! negates", f.addr),
			"dst":       oneOrList("destination address, CIDR or $set; ! negates", f.addr),
			"sport":     oneOrList("source port, range a-b or $set; ! negates", f.port),
			"dport":     oneOrList("destination port, range a-b or $set; ! negates", f.port),
			"iif":       oneOrList("input interface name, * globs", f.iface),
			"oif":       oneOrList("output interface name, * globs", f.iface),
			"state":     oneOrList("flow state", enum("a flow state", v.States...)),
			"tcp_flags": obj{"description": "pf-style flags/mask, e.g. S/SA", "type": "string", "pattern": f.flags},
			"icmp_type": oneOrList("ICMP or ICMPv6 type, by name or number", f.icmpType),
			"length":    oneOrList("IP packet length or range a-b", f.length),
			"dns_qname": oneOrList("DNS query name, *.suffix or $set", f.name),
			"tls_sni":   oneOrList("TLS server name, *.suffix or $set", f.name),
			"http_host": oneOrList("HTTP/1.x request host, *.suffix or $set", f.name),
			"payload":   ref("payload"),
			"uid":       oneOrList("the local socket's user: number, range a-b, name or $set; ! negates", f.owner),
			"gid":       oneOrList("the local socket's group: number, range a-b, name or $set; ! negates", f.owner),
			"cgroup":    oneOrList("the local socket's cgroup v2 path below the root, * globs", f.cgroup),
		}, "match fields; all must hold"},
		{"payload", map[string]obj{
			"contains": str("text the payload contains"),
			"hex":      obj{"description": "bytes the payload contains, in hex", "type": "string", "pattern": `^[0-9A-Fa-f :\t]+$`},
			"offset":   intOrText("where the search starts", 0, 65535, `^[0-9_]+$`),
			"depth":    intOrText("how far the search reaches", 1, 65535, `^[0-9_]+$`),
		}, "a byte string in the transport payload"},
	}
}

// testSections describe the policy's own tests.
func testSections(v policyload.Vocabulary, f fragments) []section {
	return []section{
		{"test", map[string]obj{
			"packet": ref("packet"),
			"expect": f.action,
			"rule":   obj{"description": "the rule that must decide, or default", "type": "string", "minLength": 1},
		}, "a policy test"},
		{"packet", map[string]obj{
			"hook":      f.hook,
			"proto":     f.proto,
			"family":    enum("address family", "ipv4", "ipv6"),
			"src":       obj{"description": "one address", "type": "string", "pattern": `^[0-9A-Fa-f:.]+$`},
			"dst":       obj{"description": "one address", "type": "string", "pattern": `^[0-9A-Fa-f:.]+$`},
			"sport":     intOrText("source port", 0, 65535, `^[0-9_]+$`),
			"dport":     intOrText("destination port", 0, 65535, `^[0-9_]+$`),
			"iif":       str("input interface"),
			"oif":       str("output interface"),
			"state":     enum("a flow state", v.States...),
			"tcp_flags": obj{"description": "the flags the packet carries, e.g. SA", "type": "string", "pattern": "^[" + v.TCPFlags + strings.ToLower(v.TCPFlags) + "]+$"},
			"icmp_type": f.icmpType,
			"length":    intOrText("IP packet length", 20, 65535, `^[0-9_]+$`),
			"dns_qname": f.name,
			"tls_sni":   f.name,
			"http_host": f.name,
			"payload":   obj{"anyOf": []any{str("payload text"), ref("test_payload")}},
			"uid":       f.owner,
			"gid":       f.owner,
			"cgroup":    str("the local socket's cgroup v2 path"),
		}, "the packet a test describes"},
		{"test_payload", map[string]obj{
			"contains": str("payload text"),
			"hex":      obj{"description": "payload bytes in hex", "type": "string", "pattern": `^[0-9A-Fa-f :]+$`},
		}, "a test packet's payload"},
	}
}

func build(v policyload.Vocabulary) (obj, error) {
	f := newFragments(v)
	defs := obj{}
	for _, group := range [][]section{policySections(v, f), matchSections(v, f), testSections(v, f)} {
		for _, sc := range group {
			o, err := object(sc.name, v.Sections[sc.name], sc.props, sc.desc)
			if err != nil {
				return nil, err
			}
			defs[sc.name] = o
		}
	}
	for s := range v.Sections {
		if _, ok := defs[s]; !ok {
			return nil, fmt.Errorf("schema: the loader has a section %q the schema does not describe", s)
		}
	}
	root := obj{
		"$schema":     "http://json-schema.org/draft-07/schema#",
		"$id":         ID,
		"title":       "fwagent policy",
		"definitions": defs,
	}
	for k, val := range defs["policy"].(obj) {
		root[k] = val
	}
	root["required"] = []any{"version"}
	return root, nil
}
