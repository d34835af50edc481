package rules

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// probeChain is a regular (not base) chain, so no packet ever reaches it.
const probeChain = "fwagent-probe"

// Probe finds which queue rule the kernel accepts: the native nft `queue`
// expression, or else the xt NFQUEUE target. Each attempt is one transaction
// inside the fwagent table only: add the table, a throwaway regular chain and
// a queue rule, then delete the chain (and the table if it did not exist
// before). The kernel validates the rule when it is added, so a kernel without
// the expression fails the batch with ENOENT and nothing is left behind;
// a kernel with it ends the batch exactly as it started.
func Probe(c *nftables.Conn) (QueueKind, error) {
	existed, err := tableExists(c)
	if err != nil {
		return QueueAuto, fmt.Errorf("rules: probe queue kind: %w", err)
	}
	var errs error
	for _, kind := range []QueueKind{QueueNative, QueueXT} {
		err := probeKind(c, kind, existed)
		if err == nil {
			return kind, nil
		}
		if !isErrno(err, unix.ENOENT) {
			return QueueAuto, fmt.Errorf("rules: probe %s queue rule: %w", kind, err)
		}
		errs = errors.Join(errs, fmt.Errorf("%s: %w", kind, err))
	}
	return QueueAuto, fmt.Errorf("rules: kernel accepts neither the nft queue expression nor the xt NFQUEUE target: %w", errs)
}

func probeKind(c *nftables.Conn, kind QueueKind, tableExisted bool) error {
	t := ownTable()
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Name: probeChain, Table: t})
	q := queueStmt{kind: kind, base: 0, total: 1, bypass: true}
	c.AddRule(rule{name: RuleQueue, stmts: []stmt{q}}.nft(t, ch))
	c.DelChain(ch)
	if !tableExisted {
		c.DelTable(t)
	}
	return c.Flush()
}

func isErrno(err error, errno unix.Errno) bool { return errors.Is(err, errno) }
