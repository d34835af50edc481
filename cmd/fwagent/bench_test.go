package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestBenchFlags: fwagent bench hands its arguments to the harness's own
// flags: a bad one is a usage error, -h prints them and succeeds, and
// neither builds a namespace.
func TestBenchFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "-configs", "nope"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), `unknown configuration "nope"`) {
		t.Errorf("bench -configs nope: exit %d, stderr %q; want a usage error naming the configuration", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"bench", "-duration", "10ms"}, &out, &errb); code != exitUsage {
		t.Errorf("bench -duration 10ms: exit %d (%s), want %d", code, errb.String(), exitUsage)
	}
	if code := run([]string{"bench", "-h"}, &out, &errb); code != exitOK {
		t.Errorf("bench -h: exit %d, want 0", code)
	}
}
