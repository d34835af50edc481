package policyload

import (
	"math"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/policies"
)

var ruleKeys = []string{"name", "hook", "match", "action", "log", "limit", "mark", "offload", "audit"}

const allHooks uint8 = 1<<nf.HookInput | 1<<nf.HookForward | 1<<nf.HookOutput

// sectionItems returns the resolved entries of a top-level list section
// (rules:, tests:). An empty section yields nothing; anything but a list is
// recorded as an error and yields nothing, so the caller only walks items.
func (l *loader) sectionItems(n *yaml.Node, section string) []*yaml.Node {
	n = resolve(n)
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		l.record(n, l.errorf(n, "%s must be a list, got %s", section, describe(n)))
		return nil
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, item := range n.Content {
		items[i] = resolve(item)
	}
	return items
}

func (l *loader) rules(n *yaml.Node) {
	// "rules:" with nothing yields no items: the defaults decide.
	l.p.Rules = append(l.p.Rules, loadItems(l, n, "rules", l.rule)...)
}

// loadItems loads every item of the list section n with load, records each
// item's error and goes on, so that one bad rule or test hides no other.
func loadItems[T any](l *loader, n *yaml.Node, section string, load func(*yaml.Node) (T, *policies.Error)) []T {
	var out []T
	for _, item := range l.sectionItems(n, section) {
		v, err := load(item)
		if err != nil {
			l.record(item, err)
			continue
		}
		out = append(out, v)
	}
	return out
}

// itemFields reads the mapping of one item (a rule, a test, a match, a test
// packet). A mapping with unknown keys still yields its good fields, its
// error first in errs, so that each bad field of the item is reported too;
// err is set only when the item is no mapping at all.
func (l *loader) itemFields(n *yaml.Node, what string, keys []string) (fields []field, errs []*policies.Error, err *policies.Error) {
	fields, err = l.mapping(n, what, keys)
	if err != nil && fields == nil {
		return nil, nil, err
	}
	if err != nil {
		errs = append(errs, err)
	}
	return fields, errs, nil
}

func (l *loader) rule(n *yaml.Node) (r *policies.Rule, err *policies.Error) {
	r = &policies.Rule{Hooks: allHooks}
	r.SetPosition(l.pos(n))
	// Every field of a rule is checked, and each bad one reported: a rule
	// with a bad key and a bad action gives two errors.
	fields, errs, err := l.itemFields(n, "rule", ruleKeys)
	if err != nil {
		return nil, err
	}
	badKeys := len(errs) > 0
	by := map[string]field{}
	for _, f := range fields {
		by[f.name] = f
	}
	// The name first, so that later errors can name the rule and a broken
	// rule's name is still known to tests.
	nf, ok := by["name"]
	if !ok {
		return nil, l.firstOf(append(errs, l.errorf(n, "rule has no name")))
	}
	name, err := l.ruleName(nf.val)
	if err != nil {
		return nil, l.firstOf(append(errs, err))
	}
	if first, dup := l.ruleByName[name]; dup {
		return nil, l.firstOf(append(errs, l.errorf(nf.val, "duplicate rule name %q (first at line %d)", name, first.Position().Line)))
	}
	r.Name = name
	l.ruleByName[name] = r
	defer func() {
		if err != nil {
			l.brokenRules[name] = true
		}
	}()

	var nodes ruleNodes
	for _, f := range fields {
		if e := l.ruleField(r, f, &nodes); e != nil {
			errs = append(errs, e)
		}
	}
	// A misspelt key is most likely the missing action: say only the one.
	if nodes.action == nil && !badKeys {
		errs = append(errs, l.errorf(n, "rule %q has no action (accept, drop or reject)", name))
	}
	// The match is read even when other fields failed: its errors are
	// independent of theirs (hook narrowing aside, which reads r.Hooks as
	// far as it was understood).
	if nodes.match != nil {
		if e := l.match(r, nodes.match, nodes.hook); e != nil {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, l.firstOf(errs)
	}
	// Checks across fields, only once each field is known good.
	if err := l.ruleAcross(r, &nodes); err != nil {
		return nil, err
	}
	return r, nil
}

// ruleNodes are the nodes of a rule's fields that later steps read or
// point errors at (nil: the rule does not have the field).
type ruleNodes struct {
	match, action, mark, offload *yaml.Node
	// hook is the hook key, where narrowing the hooks is reported.
	hook *yaml.Node
}

// ruleField reads one field of rule r other than its name (the match is
// only noted in nodes, and read once the hooks are known).
func (l *loader) ruleField(r *policies.Rule, f field, nodes *ruleNodes) *policies.Error {
	var e *policies.Error
	switch f.name {
	case "hook":
		nodes.hook = f.key
		r.Hooks, e = l.hooks(f.val)
	case "match":
		if !isNull(f.val) { // "match:" with nothing matches everything
			nodes.match = f.val
		}
	case "action":
		nodes.action = f.val
		r.Action, e = l.action(f.val, "action", true)
	case "log":
		e = l.ruleLog(r, f.val)
	case "limit":
		r.Limit, e = l.limit(f.val)
	case "mark":
		nodes.mark = f.val
		v, ie := l.integer(f.val, "mark", 0, math.MaxUint32)
		r.HasMark, r.Mark, e = true, uint32(v), ie
	case "offload":
		nodes.offload = f.val
		b, be := l.boolean(f.val, "offload")
		r.Offload, e = &b, be
	case "audit":
		r.Audit, e = l.boolean(f.val, "audit")
	}
	return e
}

// ruleAcross rejects a rule whose fields, each fine alone, cannot go
// together: a mark or an offload on a rule that does not accept, or an
// offload on a rule whose match changes inside a flow.
func (l *loader) ruleAcross(r *policies.Rule, nodes *ruleNodes) *policies.Error {
	if nodes.mark != nil && r.Action != policies.ActionAccept {
		return l.errorf(nodes.mark, "rule %q: mark needs action accept, the rule says %s", r.Name, r.Action)
	}
	if nodes.offload != nil && *r.Offload && r.Action != policies.ActionAccept {
		return l.errorf(nodes.offload, "rule %q: offload needs action accept, the rule says %s", r.Name, r.Action)
	}
	if nodes.offload != nil && *r.Offload {
		if why := r.PerPacketReason(); why != "" {
			return l.errorf(nodes.offload, "rule %q cannot offload: it matches %s, which changes inside a flow", r.Name, why)
		}
	}
	return nil
}

func (l *loader) ruleName(n *yaml.Node) (string, *policies.Error) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", l.errorf(n, "rule name must be a value, got %s", describe(n))
	}
	name := scalarText(n)
	if strings.TrimSpace(name) == "" {
		return "", l.errorf(n, "empty rule name")
	}
	if name != strings.TrimSpace(name) {
		return "", l.errorf(n, "rule name %q has leading or trailing spaces", name)
	}
	if name == policies.DefaultRuleName || name == policies.OnErrorRuleName {
		return "", l.errorf(n, "rule name %q is reserved: events and tests use it for packets no rule decides", name)
	}
	if len(name) > 64 {
		return "", l.errorf(n, "rule name %q is longer than 64 characters", name)
	}
	for _, c := range name {
		if !unicode.IsPrint(c) || c == '"' || c == '\\' {
			return "", l.errorf(n, "rule name %q contains %q, which log prefixes cannot carry", name, c)
		}
	}
	return name, nil
}

func (l *loader) hooks(n *yaml.Node) (uint8, *policies.Error) {
	items, err := l.list(n, "hook")
	if err != nil {
		return 0, err
	}
	var mask uint8
	for _, it := range items {
		h, s, err := l.hookName(it)
		if err != nil {
			return 0, err
		}
		if mask&(1<<h) != 0 {
			return 0, l.errorf(it, "hook %s listed twice", s)
		}
		mask |= 1 << h
	}
	return mask, nil
}

// hookName reads one hook name, returning the hook and the text.
func (l *loader) hookName(n *yaml.Node) (nf.Hook, string, *policies.Error) {
	s, err := l.scalar(n, "hook")
	if err != nil {
		return 0, "", err
	}
	h, ok := nf.ParseHook(s)
	if !ok {
		return 0, s, l.errorf(n, "unknown hook %q: use input, forward or output%s", s, quotedDidYouMean(s, []string{"input", "forward", "output"}))
	}
	return h, s, nil
}

func (l *loader) ruleLog(r *policies.Rule, n *yaml.Node) *policies.Error {
	n = resolve(n)
	if n != nil && n.Kind == yaml.MappingNode {
		fields, err := l.mapping(n, "log", logKeys)
		if err != nil {
			return err
		}
		r.Log = true
		for _, f := range fields {
			p, err := l.scalar(f.val, "log prefix")
			if err != nil {
				return err
			}
			if len(p) > 64 {
				return l.errorf(f.val, "log prefix %q is longer than 64 characters", p)
			}
			for _, c := range p {
				if !unicode.IsPrint(c) || c == '"' || c == '\\' {
					return l.errorf(f.val, "log prefix %q contains %q", p, c)
				}
			}
			r.LogPrefix = p
		}
		return nil
	}
	b, err := l.boolean(n, "log")
	if err != nil {
		hint := ""
		if n != nil && n.Kind == yaml.ScalarNode {
			hint = yaml11Hint(n.Value)
		}
		return l.errorf(n, "log must be true, false or {prefix: TEXT}, got %s%s", describe(n), hint)
	}
	r.Log = b
	return nil
}

func (l *loader) limit(n *yaml.Node) (*policies.Limit, *policies.Error) {
	fields, err := l.mapping(n, "limit", limitKeys)
	if err != nil {
		return nil, err
	}
	lim := &policies.Limit{}
	var perUnit float64
	hasRate := false
	for _, f := range fields {
		switch f.name {
		case "rate":
			s, err := l.scalar(f.val, "limit rate")
			if err != nil {
				return nil, err
			}
			num, unit, ok := strings.Cut(s, "/")
			v, perr := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if !ok || perr != nil || math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
				return nil, l.errorf(f.val, "limit rate must look like 10/s, 5/m or 100/h, got %q", s)
			}
			var secs float64
			switch strings.TrimSpace(unit) {
			case "s", "sec", "second":
				secs = 1
			case "m", "min", "minute":
				secs = 60
			case "h", "hour":
				secs = 3600
			default:
				return nil, l.errorf(f.val, "limit rate unit must be s, m or h, got %q", unit)
			}
			lim.RatePerSec = v / secs
			perUnit = v
			hasRate = true
		case "burst":
			v, err := l.integer(f.val, "limit burst", 1, 1<<30)
			if err != nil {
				return nil, err
			}
			lim.Burst = int(v)
		case "per":
			s, err := l.scalar(f.val, "limit per")
			if err != nil {
				return nil, err
			}
			per, ok := limitPerNames[s]
			if !ok {
				return nil, l.errorf(f.val, "limit per must be src, dst or flow, got %q%s", s, quotedDidYouMean(s, []string{"src", "dst", "flow"}))
			}
			lim.Per = per
		case "over":
			b, err := l.boolean(f.val, "limit over")
			if err != nil {
				return nil, err
			}
			lim.Over = b
		}
	}
	if !hasRate {
		return nil, l.errorf(n, "limit needs a rate (e.g. rate: 10/s)")
	}
	if lim.Burst == 0 {
		lim.Burst = max(1, int(math.Ceil(perUnit)))
	}
	return lim, nil
}
