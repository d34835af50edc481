// Package eventually is the one poll loop of the tests: what they wait for
// (a log line, an event, a socket, a metric) arrives asynchronously, so a
// test asks for it until it holds or the test's own bound passes, and keeps
// its own failure message.
package eventually

import "time"

// True calls cond every interval until it returns true or within has
// passed, and reports whether it did. cond runs at least once and the bound
// is checked only after a call, so false means a call that ended after the
// bound still saw cond false.
func True(within, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}
