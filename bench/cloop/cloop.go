// Package cloop carries the C reference loop's source, so that a harness
// run from an installed binary, with no checkout, can still build it with
// gcc.
package cloop

import _ "embed"

// Source is src/cloop.c: a libnetfilter_queue accept loop, one verdict per
// packet.
//
//go:embed src/cloop.c
var Source []byte
