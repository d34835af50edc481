package policies

import "github.com/fwagent/fwagent/internal/nf"

// This file is what the kernel compiler (rules/) reads from a compiled
// Program. Everything here is read-only: a Program is shared by every
// worker, so callers must not modify what they are given.

// SourceRules returns copies of the rules the program was compiled from, in
// policy order. The copies share their slices with the program: treat them
// as read-only.
func (p *Program) SourceRules() []Rule {
	out := make([]Rule, len(p.source))
	for i, r := range p.source {
		out[i] = *r
	}
	return out
}

// StaticDecision is the decision rule i (NoRule: the default of hook h)
// gives a packet it matches, as Decide would return it, apart from Offload
// and Cacheable, which depend on the flow and do not concern a kernel rule.
// The kernel compiler builds a rule's verdict, log and mark from it, so the
// two paths cannot disagree on what a matching rule does.
func (p *Program) StaticDecision(i int32, h nf.Hook) Decision {
	if i == NoRule || i < 0 || int(i) >= len(p.rules) {
		a := p.Default(h)
		return Decision{
			Action: a,
			Rule:   NoRule,
			Log:    p.defaultLog && a != ActionAccept,
			Audit:  p.audit && a != ActionAccept,
		}
	}
	e := &p.rules[i]
	d := p.ruleDecision(int(i), e, nil, 0)
	d.Offload, d.Cacheable = false, false
	return d
}

// CompileRules compiles a policy made of the given rules and this program's
// defaults, mode and on_error: the kernel compiler's model of its own
// chain, evaluated with the same engine as the real policy.
func (p *Program) CompileRules(rules []*Rule) (*Program, error) {
	pol := &Policy{
		Audit:      p.audit,
		Default:    p.defaults,
		DefaultLog: p.defaultLog,
		OnError:    p.onError,
		Rules:      rules,
	}
	return Compile(pol)
}
