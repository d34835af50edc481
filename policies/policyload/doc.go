// Package policyload reads a user's YAML policy into a validated
// policies.Policy: Load, LoadFile and LoadWithNames.
//
// The format is the contract in docs/policy.md. Loading walks yaml.Node trees
// rather than unmarshalling into structs, so every complaint names the
// file, line and column of the node at fault (a *policies.Error); set files
// report their own positions. Validation rejects what cannot be meant
// (unknown keys and sets, host bits in CIDRs, rules that can never match)
// and warns about what is merely suspicious (shadowed rules, unused sets).
// The policy's tests: are read here too, into Policy.Tests, for
// policies/policytest to run. FormatVocabulary gives the keys and names the
// loader reads, for the schema and the formatter.
package policyload
