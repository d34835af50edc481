package l7

import "bytes"

// PayloadMatcher looks for a fixed byte string in a window of a transport
// payload. It is read-only and safe for concurrent use.
type PayloadMatcher struct {
	needle []byte
	offset int
	depth  int
}

// NewPayloadMatcher returns a matcher for needle within
// payload[offset:offset+depth], as nft's and snort's offset and depth: the
// whole occurrence must lie inside the window, so a depth shorter than the
// needle never matches. depth 0 means to the end of the payload. Negative
// offset or depth count as 0. An empty needle matches every payload of at
// least offset bytes. The matcher keeps its own copy of needle.
func NewPayloadMatcher(needle []byte, offset, depth int) *PayloadMatcher {
	return &PayloadMatcher{
		needle: bytes.Clone(needle),
		offset: max(offset, 0),
		depth:  max(depth, 0),
	}
}

// Match reports whether the needle occurs inside the window of payload. It
// does not allocate.
func (m *PayloadMatcher) Match(payload []byte) bool {
	if m.offset > len(payload) {
		return false
	}
	window := payload[m.offset:]
	if m.depth > 0 && m.depth < len(window) {
		window = window[:m.depth]
	}
	return bytes.Contains(window, m.needle)
}
