package rules

import (
	"fmt"
	"strings"
)

// Render returns the table Install would build, in `nft -f` syntax, without
// touching the kernel (for `fwagent rules`). The file starts by adding and
// deleting the table, so loading it replaces an existing fwagent table in one
// transaction, as Install does.
//
// Callers should check cfg.Validate first: for a configuration Install would
// refuse, Render returns only a comment saying why, which changes nothing when
// loaded.
//
// QueueAuto renders as QueueNative. nft syntax has no way to write the xt
// NFQUEUE target, so with QueueXT the queue rule appears as a comment giving
// its native equivalent: the rest of the file still loads, but the loaded
// table does not queue.
func Render(cfg Config) string {
	if err := cfg.Validate(); err != nil {
		return fmt.Sprintf("# fwagent: cannot render the table: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	kind := cfg.QueueKind
	if kind == QueueAuto {
		kind = QueueNative
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# fwagent table: policy generation %d, mark mask 0x%08x, queue kind %s\n", cfg.generation(), cfg.Marks.Mask, kind)
	fmt.Fprintf(&b, "add table inet %s\n", TableName)
	fmt.Fprintf(&b, "delete table inet %s\n", TableName)
	fmt.Fprintf(&b, "table inet %s {\n", TableName)
	if cfg.Plan != nil {
		for _, name := range sortedKeys(cfg.Plan.counters()) {
			fmt.Fprintf(&b, "\tcounter %s {\n\t}\n\n", name)
		}
	}
	for i, h := range cfg.Hooks {
		if i > 0 {
			b.WriteByte('\n')
		}
		// The policy chain first, as Install adds it: before the base
		// chain that jumps to it.
		if cfg.Plan != nil {
			l := policyLayout(cfg, h, kind, policyChain(h))
			chains := append(append([]blockChain(nil), l.blocks...), blockChain{name: policyChain(h), rules: l.main})
			for _, c := range chains {
				fmt.Fprintf(&b, "\tchain %s {\n", c.name)
				for _, r := range c.rules {
					if kind == QueueXT && r.isQueue() {
						fmt.Fprintf(&b, "\t\t# xt target NFQUEUE (nft syntax cannot express it), equivalent to: %s\n", r.text())
						continue
					}
					fmt.Fprintf(&b, "\t\t%s\n", r.text())
				}
				b.WriteString("\t}\n\n")
			}
		}
		if cfg.stateless() {
			fmt.Fprintf(&b, "\tchain %s {\n", verdictsChain(h))
			for _, r := range statelessAnswers(cfg) {
				fmt.Fprintf(&b, "\t\t%s\n", r.text())
			}
			b.WriteString("\t}\n\n")
		}
		fmt.Fprintf(&b, "\tchain %s {\n", h)
		fmt.Fprintf(&b, "\t\ttype filter hook %s priority %d; policy accept;\n", h, cfg.Priority)
		for _, r := range chainRules(cfg, h, kind) {
			if r.name == RuleQueue && kind == QueueXT {
				fmt.Fprintf(&b, "\t\t# xt target NFQUEUE (nft syntax cannot express it), equivalent to: %s\n", r.text())
				continue
			}
			fmt.Fprintf(&b, "\t\t%s\n", r.text())
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func (r rule) isQueue() bool {
	for _, s := range r.stmts {
		if _, ok := s.(queueStmt); ok {
			return true
		}
	}
	return false
}
