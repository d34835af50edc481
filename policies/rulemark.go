package policies

// RuleMark is the packet mark rule i sets on accept, if it sets one. The
// agent uses it to refuse marks that collide with its own mark bits.
func (p *Program) RuleMark(i int32) (uint32, bool) {
	if i < 0 || int(i) >= len(p.rules) || !p.rules[i].setMark {
		return 0, false
	}
	return p.rules[i].mark, true
}
