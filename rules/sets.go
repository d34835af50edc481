package rules

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// SetAdder buffers a set and its elements in the batch of the rule being
// built (*nftables.Conn). A rule's anonymous set must be added first, in the
// same batch.
type SetAdder interface {
	AddSet(s *nftables.Set, vals []nftables.SetElement) error
	SetAddElements(s *nftables.Set, vals []nftables.SetElement) error
}

// maxElemListBytes bounds the elements of one NEWSETELEM message. The list
// is a netlink attribute, whose length field has 16 bits; neither
// google/nftables nor mdlayher/netlink checks it, so a longer list wraps
// the length and the kernel parses a few elements and then garbage: a
// 1,150-entry verdict map failed with ENOENT, and a long enough address set
// could parse as a different, valid one. The margin covers the message's
// other attributes and elemBytes rounding.
const maxElemListBytes = 60 << 10

// addSet buffers set with elems on c, in as many NEWSETELEM messages as
// maxElemListBytes needs, all before the rule that binds the set (the
// kernel refuses elements for an anonymous set only once a rule uses it).
// nft splits large sets the same way.
func addSet(c SetAdder, set *nftables.Set, elems []nftables.SetElement) error {
	chunks := elemChunks(elems)
	var first []nftables.SetElement
	if len(chunks) > 0 {
		first = chunks[0]
	}
	if len(chunks) > 1 {
		// A constant set's size is the number of elements AddSet is given
		// (nft's descriptor); the kernel refuses elements beyond it
		// (ENFILE). Size adds a second descriptor, which the kernel reads
		// last and so takes.
		set.Size = uint32(len(elems))
	}
	if err := c.AddSet(set, first); err != nil {
		return err
	}
	if len(chunks) < 2 {
		return nil
	}
	// google/nftables refuses to add elements to an anonymous set after
	// AddSet; the kernel does not. The copy names the same set (its
	// placeholder name and transaction ID, set by AddSet) and encodes
	// elements the same way; only that refusal looks at Anonymous.
	named := *set
	named.Anonymous = false
	for i, ch := range chunks[1:] {
		if err := c.SetAddElements(&named, ch); err != nil {
			return fmt.Errorf("elements part %d of %d: %w", i+2, len(chunks), err)
		}
	}
	return nil
}

// elemChunks splits elems into runs whose encoding stays under
// maxElemListBytes, in order.
func elemChunks(elems []nftables.SetElement) [][]nftables.SetElement {
	var out [][]nftables.SetElement
	start, size := 0, 0
	for i, e := range elems {
		n := elemBytes(e)
		if size+n > maxElemListBytes && i > start {
			out = append(out, elems[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(elems) {
		out = append(out, elems[start:])
	}
	return out
}

// elemBytes is an upper bound on the netlink encoding of e as
// google/nftables writes it: each attribute is a 4-byte header and a value
// padded to 4 bytes, nested once or twice.
func elemBytes(e nftables.SetElement) int {
	n := 4                      // the element's own nest
	n += 8                      // interval-end flags
	n += 8 + pad(len(e.Key))    // key nest and value
	n += 8 + pad(len(e.KeyEnd)) // key-end nest and value
	n += 12                     // timeout
	n += 8 + pad(len(e.Val))    // map data nest and value
	if e.VerdictData != nil {
		n += 16 + 4 + 4 + pad(len(e.VerdictData.Chain)+1) // two nests, verdict code, chain name
	}
	n += 8 + pad(len(e.Comment)) // user data: type, length, text
	return n
}

// maxRuleExprBytes bounds a rule's expression list, which is one netlink
// attribute too, with the same 16-bit length and the same silence about it
// (maxElemListBytes). No rule the compiler writes comes near it (lists of
// values go into sets); the check turns a rule that would, one day, into an
// error instead of a table the kernel reads differently from what was sent.
const maxRuleExprBytes = 60 << 10

// checkRuleBytes returns an error when rule name's expressions encode to
// more than maxRuleExprBytes.
func checkRuleBytes(name string, exprs []expr.Any) error {
	n := 0
	for _, e := range exprs {
		b, err := expr.Marshal(unix.NFPROTO_INET, e)
		if err != nil {
			return fmt.Errorf("rules: rule %q: encode %T: %w", name, e, err)
		}
		n += 4 + pad(len(b)) // the list element's header, the expression
	}
	if n > maxRuleExprBytes {
		return fmt.Errorf("rules: rule %q: its %d expressions encode to %d bytes, more than one netlink attribute holds (%d); split the rule", name, len(exprs), n, maxRuleExprBytes)
	}
	return nil
}

// pad is n rounded up to netlink's 4-byte attribute alignment.
func pad(n int) int { return (n + 3) &^ 3 }
