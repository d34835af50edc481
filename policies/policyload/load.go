package policyload

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	goccyyaml "github.com/goccy/go-yaml"
	goccyparser "github.com/goccy/go-yaml/parser"
	"go.yaml.in/yaml/v3"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/policies"
)

// LoadFile reads, parses and validates the policy at path; set files are
// read relative to its directory.
func LoadFile(path string) (*policies.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policies: read policy: %w", err)
	}
	return Load(path, data, os.ReadFile)
}

// Load parses and validates a policy held in data. name is used in error
// positions and to resolve set files relative to it; readFile reads set
// files (nil: set files are an error). Every error is an *Error pointing at
// the node at fault; on error nothing is returned.
func Load(name string, data []byte, readFile func(string) ([]byte, error)) (*policies.Policy, error) {
	return LoadWithNames(name, data, readFile, nil)
}

// LoadWithNames is Load with user and group names (uid, gid) resolved by
// names instead of the host's user database (nil: the host's).
func LoadWithNames(name string, data []byte, readFile func(string) ([]byte, error), names NameResolver) (*policies.Policy, error) {
	l := &loader{
		file:         name,
		readFile:     readFile,
		nameResolver: names,
		p: &policies.Policy{
			File: name,
			Sets: map[string]*policies.Set{},
		},
		brokenSets:    map[string]bool{},
		brokenRules:   map[string]bool{},
		ruleByName:    map[string]*policies.Rule{},
		usedSets:      map[*policies.Set]bool{},
		mixedSets:     map[*policies.Set]bool{},
		impliedProtos: map[*policies.Match]bool{},
	}
	if err := l.load(data); err != nil {
		return nil, err
	}
	return l.p, nil
}

type orderedErr struct {
	order pos // where in the policy file the error belongs, for ordering
	err   *policies.Error
}

type loader struct {
	file         string
	readFile     func(string) ([]byte, error)
	nameResolver NameResolver
	p            *policies.Policy

	errs        []orderedErr
	brokenSets  map[string]bool
	brokenRules map[string]bool
	ruleByName  map[string]*policies.Rule
	setNames    []string
	warns       []warning
	// usedSets are the sets some rule or test refers to; mixedSets those
	// whose mixed kinds were reported (once per set).
	usedSets, mixedSets map[*policies.Set]bool
	// impliedProtos holds the matches whose Protos came from a field such
	// as tcp_flags, not from proto, so later fields may narrow them.
	impliedProtos map[*policies.Match]bool
}

// pos is a place in a policy or set file.
type pos = policies.Position

func nodePos(file string, n *yaml.Node) pos {
	if n == nil {
		return pos{File: file, Line: 1, Col: 1}
	}
	return pos{File: file, Line: n.Line, Col: n.Column}
}

func (l *loader) pos(n *yaml.Node) pos { return nodePos(l.file, n) }

func (l *loader) errorf(n *yaml.Node, format string, args ...any) *policies.Error {
	return l.pos(n).Errorf(format, args...)
}

// record keeps an error found while processing the item at order.
func (l *loader) record(order *yaml.Node, err *policies.Error) {
	if err == errSkip {
		return
	}
	l.errs = append(l.errs, orderedErr{order: l.pos(order), err: err})
}

// also keeps an error found alongside another in the same item (a second
// bad key of one rule), ordered by its own place.
func (l *loader) also(err *policies.Error) {
	if err == errSkip || err == nil {
		return
	}
	at := pos{File: err.File, Line: err.Line, Col: err.Col}
	l.errs = append(l.errs, orderedErr{order: at, err: err})
}

// firstOf keeps every error of errs but the first, which it returns for the
// caller to report as its own: independent errors of one item (fields of
// one rule) are all reported, and the item still fails.
func (l *loader) firstOf(errs []*policies.Error) *policies.Error {
	if len(errs) == 0 {
		return nil
	}
	// The item's error is the earliest in the file, so that the item's
	// place orders it before the others.
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		if a.File != b.File {
			return false
		}
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
	for _, e := range errs[1:] {
		l.also(e)
	}
	return errs[0]
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError turns a YAML syntax error into a positioned Error. yaml.v3
// reports syntax errors by line only, and often a line or two early (the
// line of the construct it was parsing, not of the offending character), so
// the position comes from a second parser, goccy/go-yaml, which points at
// the offending token; this runs only for files that failed to parse.
func (l *loader) yamlError(data []byte, err error) *policies.Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	at := pos{File: l.file, Line: 1, Col: 1}
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		at.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if _, perr := goccyparser.ParseBytes(data, 0); perr != nil {
		var ge goccyyaml.Error
		if errors.As(perr, &ge) && ge.GetToken() != nil && ge.GetToken().Position != nil {
			if p := ge.GetToken().Position; p.Line > 0 {
				at.Line, at.Col = p.Line, max(p.Column, 1)
			}
		}
	}
	return at.Errorf("invalid YAML: %s", strings.ReplaceAll(msg, "\n", " "))
}

func (l *loader) load(data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return l.yamlError(data, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return pos{File: l.file, Line: 1, Col: 1}.Errorf("empty policy: expected a mapping with version: 1")
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return l.errorf(root, "policy must be a mapping, got %s", describe(root))
	}
	// An unknown top-level key is reported with the errors of the keys
	// that are known, which are still read.
	fields, err := l.mapping(root, "policy", policyKeys)
	if err != nil {
		l.record(root, err)
	}
	byKey := map[string]field{}
	for _, f := range fields {
		byKey[f.name] = f
	}
	if _, ok := byKey["version"]; !ok {
		l.record(root, l.errorf(root, "missing version: 1"))
	}

	// Defaults before the sections that may override them.
	l.p.Default = [nf.NumHooks]policies.Action{policies.ActionDrop, policies.ActionDrop, policies.ActionAccept}
	l.p.OnError = [nf.NumHooks]policies.Action{policies.ActionDrop, policies.ActionDrop, policies.ActionAccept}

	// Sets come first whatever their place in the file, because rules and
	// tests refer to them; errors are still reported in file order.
	for _, f := range fields {
		var e *policies.Error
		switch f.name {
		case "version":
			e = l.version(f.val)
		case "mode":
			e = l.mode(f.val)
		case "default":
			e = l.defaults(f.val)
		case "on_error":
			e = l.onError(f.val)
		case "sets":
			l.sets(f.val)
		}
		if e != nil {
			l.record(f.key, e)
		}
	}
	if f, ok := byKey["rules"]; ok {
		l.rules(f.val)
	}
	if f, ok := byKey["tests"]; ok {
		l.tests(f.val)
	}
	if len(l.errs) > 0 {
		sort.SliceStable(l.errs, func(i, j int) bool {
			a, b := l.errs[i].order, l.errs[j].order
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Col < b.Col
		})
		if len(l.errs) == 1 {
			return l.errs[0].err
		}
		list := &policies.ErrorList{}
		for _, e := range l.errs {
			if len(list.Errs) == policies.MaxErrors {
				list.More++
				continue
			}
			list.Errs = append(list.Errs, e.err)
		}
		return list
	}
	l.warnings()
	return nil
}

// isNull reports a key written with no value.
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// resolve follows aliases, so anchors work as users of YAML expect.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	return n
}

type field struct {
	name     string
	key, val *yaml.Node
}

// mapping checks that n is a mapping whose keys are all in allowed, without
// duplicates, and returns its fields in file order. Every bad key is an
// error: the first is returned, the others kept (l.also), and the fields
// with good keys are returned either way, for a caller that reads on.
func (l *loader) mapping(n *yaml.Node, what string, allowed []string) ([]field, *policies.Error) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, l.errorf(n, "%s must be a mapping, got %s", what, describe(n))
	}
	seen := map[string]*yaml.Node{}
	out := make([]field, 0, len(n.Content)/2)
	var errs []*policies.Error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, l.errorf(k, "%s keys must be plain names", what))
			continue
		}
		if k.Value == "<<" {
			errs = append(errs, l.errorf(k, "merge keys (<<) are not supported in %s", what))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			errs = append(errs, l.errorf(k, "duplicate key %q in %s (first at line %d)", k.Value, what, first.Line))
			continue
		}
		seen[k.Value] = k
		if allowed != nil && !contains(allowed, k.Value) {
			errs = append(errs, l.errorf(k, "unknown key %q in %s%s", k.Value, what, quotedDidYouMean(k.Value, allowed)))
			continue
		}
		out = append(out, field{name: k.Value, key: k, val: v})
	}
	return out, l.firstOf(errs)
}

func quotedDidYouMean(s string, candidates []string) string {
	if c, ok := suggest(s, candidates); ok {
		return fmt.Sprintf(", did you mean %q?", c)
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func describe(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "an empty value"
		}
		return fmt.Sprintf("%q", scalarText(n))
	}
	return "nothing"
}

// scalarText is a scalar's text. An unquoted YAML value starting with '!'
// is a tag to YAML, so `src: !10.0.0.0/8` arrives as a tag with an empty
// value; a policy means the negation, so the tag is taken as the text.
func scalarText(n *yaml.Node) string {
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		if n.Value == "" {
			return n.Tag
		}
		return n.Tag + " " + n.Value
	}
	return n.Value
}

// scalar returns n's text, or an error if n is not a non-empty scalar.
func (l *loader) scalar(n *yaml.Node, what string) (string, *policies.Error) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", l.errorf(n, "%s must be a value, got %s", what, describe(n))
	}
	s := scalarText(n)
	if strings.TrimSpace(s) == "" {
		return "", l.errorf(n, "%s is empty", what)
	}
	return s, nil
}

func (l *loader) boolean(n *yaml.Node, what string) (bool, *policies.Error) {
	s, err := l.scalar(n, what)
	if err != nil {
		return false, err
	}
	switch s {
	case "true", "True", "TRUE":
		return true, nil
	case "false", "False", "FALSE":
		return false, nil
	}
	return false, l.errorf(n, "%s must be true or false, got %q%s", what, s, yaml11Hint(s))
}

// yaml11Hint explains a YAML 1.1 boolean (yes, on, ...): YAML 1.2, which
// the policy format follows, reads it as a string, and tools disagree on
// it, so the policy refuses it rather than guess.
func yaml11Hint(s string) string {
	switch strings.ToLower(s) {
	case "yes", "y", "on":
		return " (a YAML 1.1 boolean: write true)"
	case "no", "n", "off":
		return " (a YAML 1.1 boolean: write false)"
	}
	return ""
}

func (l *loader) integer(n *yaml.Node, what string, lo, hi int64) (int64, *policies.Error) {
	s, err := l.scalar(n, what)
	if err != nil {
		return 0, err
	}
	// Decimal, or hexadecimal with 0x (marks); a leading zero is not octal.
	base, digits := 10, strings.ReplaceAll(s, "_", "")
	if strings.HasPrefix(digits, "0x") || strings.HasPrefix(digits, "0X") {
		base, digits = 16, digits[2:]
	}
	v, perr := strconv.ParseInt(digits, base, 64)
	if perr != nil {
		return 0, l.errorf(n, "%s must be a whole number, got %q", what, s)
	}
	if v < lo || v > hi {
		return 0, l.errorf(n, "%s %d out of range %d-%d", what, v, lo, hi)
	}
	return v, nil
}

// list returns the items of a sequence, or n itself as a one-item list.
func (l *loader) list(n *yaml.Node, what string) ([]*yaml.Node, *policies.Error) {
	n = resolve(n)
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return nil, l.errorf(n, "%s is empty", what)
	}
	if n.Kind == yaml.SequenceNode {
		if len(n.Content) == 0 {
			return nil, l.errorf(n, "%s is an empty list", what)
		}
		out := make([]*yaml.Node, len(n.Content))
		for i, c := range n.Content {
			out[i] = resolve(c)
		}
		return out, nil
	}
	return []*yaml.Node{n}, nil
}

func (l *loader) version(n *yaml.Node) *policies.Error {
	v, err := l.scalar(n, "version")
	if err != nil {
		return err
	}
	if v != "1" {
		return l.errorf(n, "unsupported version %q: this agent reads version 1", v)
	}
	return nil
}

func (l *loader) mode(n *yaml.Node) *policies.Error {
	v, err := l.scalar(n, "mode")
	if err != nil {
		return err
	}
	switch v {
	case "enforce":
		l.p.Audit = false
	case "audit":
		l.p.Audit = true
	default:
		return l.errorf(n, "mode must be enforce or audit, got %q%s", v, quotedDidYouMean(v, []string{"enforce", "audit"}))
	}
	return nil
}

func (l *loader) action(n *yaml.Node, what string, allowReject bool) (policies.Action, *policies.Error) {
	v, err := l.scalar(n, what)
	if err != nil {
		return 0, err
	}
	if a, ok := actionNames[v]; ok && (allowReject || a != policies.ActionReject) {
		return a, nil
	}
	valid := []string{"accept", "drop", "reject"}
	if !allowReject {
		valid = valid[:2]
	}
	return 0, l.errorf(n, "%s must be %s, got %q%s", what, strings.Join(valid, ", "), v, quotedDidYouMean(v, valid))
}

func (l *loader) defaults(n *yaml.Node) *policies.Error {
	return l.hookActions(n, "default", defaultKeys, true, &l.p.Default, func(f field) (bool, *policies.Error) {
		if f.name != "log" {
			return false, nil
		}
		b, err := l.boolean(f.val, "default log")
		if err != nil {
			return true, err
		}
		l.p.DefaultLog = b
		return true, nil
	})
}

// hookActions reads a section that gives one action for every hook (a
// scalar) or one per hook (a mapping keyed by hook name) into dst:
// default and on_error. other, when set, reads a mapping key that is no
// hook and reports that it did.
func (l *loader) hookActions(n *yaml.Node, what string, keys []string, allowReject bool, dst *[nf.NumHooks]policies.Action, other func(f field) (bool, *policies.Error)) *policies.Error {
	n = resolve(n)
	if n != nil && n.Kind == yaml.ScalarNode {
		a, err := l.action(n, what, allowReject)
		if err != nil {
			return err
		}
		for h := range dst {
			dst[h] = a
		}
		return nil
	}
	fields, err := l.mapping(n, what, keys)
	if err != nil {
		return err
	}
	for _, f := range fields {
		if other != nil {
			done, err := other(f)
			if err != nil {
				return err
			}
			if done {
				continue
			}
		}
		h, _ := nf.ParseHook(f.name)
		a, err := l.action(f.val, what+" "+f.name, allowReject)
		if err != nil {
			return err
		}
		dst[h] = a
	}
	return nil
}

func (l *loader) onError(n *yaml.Node) *policies.Error {
	return l.hookActions(n, "on_error", onErrorKeys, false, &l.p.OnError, nil)
}
