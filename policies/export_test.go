package policies

// Internals the tests of package policies_test check directly.
var GlobMatch = globMatch

// BytesNeeded is m.bytesNeeded.
func BytesNeeded(m *Match) int { return m.bytesNeeded() }
