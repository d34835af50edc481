// Package format lays a policy file out in one canonical form, for
// `fwagent fmt`: reviews then show what changed, not how it was typed.
//
// The canonical form:
//   - keys in one order (version, mode, default, on_error, sets, rules,
//     tests at the top; name, hook, match, limit, action, log, mark,
//     offload, audit in a rule; family, proto, iif, oif, src, dst, sport,
//     dport, state, ... in a match); keys the format does not know stay,
//     after the known ones, in their order (check reports them);
//   - two-space indentation, list items indented under their key;
//   - flow style ({a: 1, b: [x, y]}) for a match, a test packet, a limit,
//     a payload and any list of values when it fits in MaxWidth columns and
//     holds no comment, block style otherwise; the top level, default,
//     on_error, sets, rules, tests and each rule and test are always block;
//   - one blank line before sets, rules and tests, and no other;
//   - `src: !10.0.0.0/8` (a YAML tag to YAML) written "!10.0.0.0/8", which
//     the loader reads the same.
//
// Set names, rule and test order and scalar quoting are the author's and
// are kept. Every comment is kept: Format compares the comments of its
// output with those of its input, and the data the two describe, and fails
// rather than return a file that lost either.
package format

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/token"
	"go.yaml.in/yaml/v3"

	"github.com/fwagent/fwagent/policies/policyload"
)

// MaxWidth is the widest line flow style may make.
const MaxWidth = 120

// Format returns src in canonical form. name is used in errors only.
//
// The result is a fixed point: formatting it again changes nothing. The
// YAML emitter places some comments differently on a second pass (a
// comment between a key and its block value), so Format formats its own
// output until it stops changing, and fails if it does not settle.
func Format(name string, src []byte) ([]byte, error) {
	out, err := formatOnce(name, src)
	for range 3 {
		if err != nil {
			return nil, err
		}
		again, err2 := formatOnce(name, out)
		if err2 == nil && bytes.Equal(again, out) {
			return out, nil
		}
		out, err = again, err2
	}
	return nil, fmt.Errorf("%s: the layout does not settle (a bug); file left alone", name)
}

func formatOnce(name string, src []byte) ([]byte, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty policy", name)
		}
		return nil, fmt.Errorf("%s: invalid YAML: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, fmt.Errorf("%s: empty policy", name)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: a policy is one YAML document", name)
	}
	if n := complexKey(doc.Content[0]); n != nil {
		return nil, fmt.Errorf("%s:%d:%d: keys must be plain names", name, n.Line, n.Column)
	}
	before, err := dataOf(doc.Content[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	f := formatter{voc: policyload.FormatVocabulary()}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d:%d: policy must be a mapping", name, root.Line, root.Column)
	}
	f.policy(root)

	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	out := spaceSections(b.Bytes())

	// The guarantees, checked rather than hoped for: the emitter moves
	// comments it cannot place, and a formatter must never change meaning.
	var again yaml.Node
	if err := yaml.Unmarshal(out, &again); err != nil {
		return nil, fmt.Errorf("%s: formatting produced invalid YAML (a bug): %w", name, err)
	}
	after, err := dataOf(again.Content[0])
	if err != nil || !reflect.DeepEqual(before, after) {
		return nil, fmt.Errorf("%s: formatting would change the policy's data (a bug); file left alone", name)
	}
	if a, b := comments(src), comments(out); !slices.Equal(a, b) {
		return nil, fmt.Errorf("%s: formatting would lose or move a comment (%s); move it next to a key and retry", name, firstDiff(a, b))
	}
	return out, nil
}

// complexKey returns a mapping key under n that is not a scalar (`? [a]:`),
// which no policy has and the emitter cannot lay out stably, or nil.
func complexKey(n *yaml.Node) *yaml.Node {
	seen := 0
	var walk func(*yaml.Node) *yaml.Node
	walk = func(n *yaml.Node) *yaml.Node {
		if seen++; seen > maxDataNodes {
			return nil // dataOf reports the size
		}
		for i, c := range n.Content {
			if n.Kind == yaml.MappingNode && i%2 == 0 && c.Kind != yaml.ScalarNode {
				return c
			}
			if k := walk(c); k != nil {
				return k
			}
		}
		return nil
	}
	return walk(n)
}

type formatter struct {
	voc policyload.Vocabulary
}

// Columns where the values of each level start, for the width of flow
// style: "  - name: " puts a rule's keys at column 4.
const (
	colTop     = 0
	colSection = 2
	colItem    = 4
)

func (f *formatter) policy(n *yaml.Node) {
	// The comment above the file's first key is the file's header, which
	// stays on top whatever key comes first.
	var header string
	if len(n.Content) > 0 {
		header, n.Content[0].HeadComment = n.Content[0].HeadComment, ""
	}
	f.order(n, "policy")
	if header != "" {
		if c := n.Content[0].HeadComment; c != "" {
			header += "\n" + c
		}
		n.Content[0].HeadComment = header
	}
	n.Style = 0
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "default", "on_error":
			if v.Kind == yaml.MappingNode {
				f.order(v, k.Value)
				f.block(v, colSection)
			}
		case "sets":
			if v.Kind == yaml.MappingNode {
				v.Style = 0
				for j := 0; j+1 < len(v.Content); j += 2 {
					f.value(v.Content[j], v.Content[j+1], colSection, "set")
				}
			}
		case "rules", "tests":
			section := strings.TrimSuffix(k.Value, "s")
			if v.Kind == yaml.SequenceNode {
				v.Style = 0
				for _, item := range v.Content {
					if item.Kind == yaml.MappingNode {
						f.item(item, section)
					}
				}
			}
		default:
			f.scalars(v)
		}
	}
}

// item lays out one rule or test: block, its keys in order, its values
// flow where they fit.
func (f *formatter) item(n *yaml.Node, section string) {
	f.order(n, section)
	n.Style = 0
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		sub := ""
		switch {
		case section == "rule" && k.Value == "match":
			sub = "match"
		case section == "rule" && (k.Value == "log" || k.Value == "limit"):
			sub = k.Value
		case section == "test" && k.Value == "packet":
			sub = "packet"
		}
		f.value(k, v, colItem, sub)
	}
}

// value lays out the value v of key k, whose line starts at col: a mapping
// of section (its keys put in order) or a list, flow if it fits.
func (f *formatter) value(k, v *yaml.Node, col int, section string) {
	switch v.Kind {
	case yaml.MappingNode:
		if section != "" {
			f.order(v, section)
		}
		for i := 0; i+1 < len(v.Content); i += 2 {
			sub := ""
			switch {
			case section == "match" && v.Content[i].Value == "payload":
				sub = "payload"
			case section == "packet" && v.Content[i].Value == "payload":
				sub = "test_payload"
			}
			f.value(v.Content[i], v.Content[i+1], col+2, sub)
		}
		f.flowIfFits(k, v, col)
	case yaml.SequenceNode:
		for _, c := range v.Content {
			if c.Kind == yaml.MappingNode || c.Kind == yaml.SequenceNode {
				f.value(&yaml.Node{Kind: yaml.ScalarNode, Value: "-"}, c, col+2, "")
			} else {
				f.scalars(c)
			}
		}
		f.flowIfFits(k, v, col)
	default:
		f.scalars(v)
	}
}

// block makes n and everything under it block style, scalars aside.
func (f *formatter) block(n *yaml.Node, col int) {
	n.Style = 0
	for i := 0; i+1 < len(n.Content); i += 2 {
		f.value(n.Content[i], n.Content[i+1], col, "")
	}
}

// flowIfFits writes v in flow style if it holds no comment and the line
// "k: v" starting at col fits in MaxWidth, else in block style (whose
// children have already been laid out).
func (f *formatter) flowIfFits(k, v *yaml.Node, col int) {
	if len(v.Content) == 0 || innerComments(v) {
		if len(v.Content) == 0 {
			v.Style = yaml.FlowStyle
		} else {
			v.Style = 0
		}
		return
	}
	saved := styles(v)
	setFlow(v)
	line, ok := flowText(v)
	if ok && col+len(k.Value)+2+len(line) <= MaxWidth {
		return
	}
	restore(v, saved)
	v.Style = 0
}

func styles(n *yaml.Node) []yaml.Style {
	var out []yaml.Style
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		out = append(out, n.Style)
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	return out
}

func restore(n *yaml.Node, s []yaml.Style) {
	i := 0
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		n.Style = s[i]
		i++
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
}

func setFlow(n *yaml.Node) {
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		n.Style = yaml.FlowStyle
		for _, c := range n.Content {
			setFlow(c)
		}
	}
}

// flowText is n written alone in flow style, if that is one line.
func flowText(n *yaml.Node) (string, bool) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return "", false
	}
	_ = enc.Close()
	s := strings.TrimSuffix(b.String(), "\n")
	return s, !strings.Contains(s, "\n")
}

// innerComments reports a comment on anything under n, which flow style
// cannot place.
func innerComments(n *yaml.Node) bool {
	for _, c := range n.Content {
		if c.HeadComment != "" || c.LineComment != "" || c.FootComment != "" || innerComments(c) {
			return true
		}
	}
	return n.FootComment != ""
}

// scalars rewrites a value with a local tag (`!10.0.0.0/8`, which YAML
// reads as a tag and the loader as a negation) as the quoted text the
// loader reads it as, in n and below.
func (f *formatter) scalars(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		text := n.Tag
		if n.Value != "" {
			text += " " + n.Value
		}
		n.Tag, n.Value, n.Style = "!!str", text, yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		f.scalars(c)
	}
}

// preferred is the canonical order where it is not the loader's: a rule's
// limit qualifies its match and comes before the action; a match reads
// from the packet's outside in (family, protocol, interfaces, addresses,
// ports, then the finer fields). Keys of a section missing here follow in
// the loader's order, so a key added to the format has a place at once.
var preferred = map[string][]string{
	"rule":   {"name", "hook", "match", "limit", "action", "log", "mark", "offload", "audit"},
	"match":  {"family", "proto", "iif", "oif", "src", "dst", "sport", "dport", "state", "tcp_flags", "icmp_type", "length"},
	"packet": {"hook", "family", "proto", "iif", "oif", "src", "dst", "sport", "dport", "state", "tcp_flags", "icmp_type", "length"},
}

// order sorts the keys of mapping n as the format lists them for section;
// unknown keys keep their order, after the known ones.
func (f *formatter) order(n *yaml.Node, section string) {
	keys := slices.Clone(preferred[section])
	for _, k := range f.voc.Sections[section] {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	type pair struct{ k, v *yaml.Node }
	pairs := make([]pair, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		pairs = append(pairs, pair{n.Content[i], n.Content[i+1]})
	}
	rank := func(p pair) int {
		if i := slices.Index(keys, p.k.Value); i >= 0 {
			return i
		}
		return len(keys)
	}
	slices.SortStableFunc(pairs, func(a, b pair) int { return rank(a) - rank(b) })
	n.Content = n.Content[:0]
	for _, p := range pairs {
		n.Content = append(n.Content, p.k, p.v)
	}
}

// spaceSections puts one blank line before the top-level sets, rules and
// tests keys (and the comment lines heading them), and removes every other
// blank line the emitter wrote.
func spaceSections(src []byte) []byte {
	lines := strings.Split(strings.TrimRight(string(src), "\n"), "\n")
	var out []string
	for i, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if isSectionStart(lines, i) && len(out) > 0 {
			out = append(out, "")
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// isSectionStart: line i is the first of a top-level sets/rules/tests key,
// or of the column-0 comment lines right above one.
func isSectionStart(lines []string, i int) bool {
	if i > 0 && strings.HasPrefix(lines[i-1], "#") {
		return false
	}
	for j := i; j < len(lines); j++ {
		l := lines[j]
		if strings.HasPrefix(l, "#") {
			continue
		}
		if strings.TrimSpace(l) == "" {
			return false
		}
		if l[0] == ' ' || l[0] == '-' {
			return false
		}
		for _, k := range []string{"sets:", "rules:", "tests:"} {
			if strings.HasPrefix(l, k) {
				return true
			}
		}
		return false
	}
	return false
}

// comments lists the text of every comment in src, in order.
func comments(src []byte) []string {
	var out []string
	for _, t := range lexer.Tokenize(string(src)) {
		if t.Type == token.CommentType {
			out = append(out, strings.TrimSpace(t.Value))
		}
	}
	return out
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return strconv.Quote("# " + a[i])
		}
	}
	if len(a) > len(b) {
		return strconv.Quote("# " + a[len(b)])
	}
	if len(b) > len(a) {
		return "a comment appeared"
	}
	return "order"
}

// dataOf is the data a node describes, as the loader sees it: mappings as
// maps (their order is not meaning), scalars as their resolved text, a
// local tag folded into its text.
func dataOf(n *yaml.Node) (any, error) {
	budget := maxDataNodes
	return dataOfBudget(n, &budget)
}

// maxDataNodes bounds the nodes dataOf visits, aliases expanded: a file of
// nested aliases (a "billion laughs") expands exponentially.
const maxDataNodes = 1 << 20

func dataOfBudget(n *yaml.Node, budget *int) (any, error) {
	if *budget--; *budget < 0 {
		return nil, fmt.Errorf("too many nodes once aliases are expanded")
	}
	for i := 0; n.Kind == yaml.AliasNode; i++ {
		if i > 16 || n.Alias == nil {
			return nil, fmt.Errorf("alias chain too deep")
		}
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		var dups []any
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, err := dataOfBudget(n.Content[i], budget)
			if err != nil {
				return nil, err
			}
			v, err := dataOfBudget(n.Content[i+1], budget)
			if err != nil {
				return nil, err
			}
			ks := fmt.Sprint(k)
			if _, dup := m[ks]; dup {
				dups = append(dups, ks, v)
				continue
			}
			m[ks] = v
		}
		if dups != nil {
			m["\x00dups"] = dups
		}
		return m, nil
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := dataOfBudget(c, budget)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	}
	tag := n.ShortTag()
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		text := n.Tag
		if n.Value != "" {
			text += " " + n.Value
		}
		return "!!str:" + text, nil
	}
	return tag + ":" + n.Value, nil
}
