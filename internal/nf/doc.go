// Package nf holds the contract between the kernel side and the userspace
// side of the agent: the netfilter hooks, the flow states the policy's
// `state` match sees, and the layout of the agent's bits in the packet and
// conntrack marks. It imports nothing of the project, so the decoder, the
// flow tracker, the policy engine, the rule builder and the drop log can
// share these types without importing one another.
package nf
