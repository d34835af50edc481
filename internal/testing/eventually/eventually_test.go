package eventually

import (
	"testing"
	"time"
)

func TestTrueWhenCondHolds(t *testing.T) {
	calls := 0
	if !True(time.Second, time.Millisecond, func() bool { calls++; return calls == 3 }) {
		t.Fatal("True = false, want true once cond holds")
	}
	if calls != 3 {
		t.Errorf("cond called %d times, want 3 (it stops at the first true)", calls)
	}
}

func TestTrueGivesUpAfterBound(t *testing.T) {
	start := time.Now()
	calls := 0
	if True(30*time.Millisecond, 5*time.Millisecond, func() bool { calls++; return false }) {
		t.Fatal("True = true for a cond that never holds")
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("gave up after %v, want at least the 30ms bound", d)
	}
	if calls < 2 {
		t.Errorf("cond called %d times, want it polled more than once", calls)
	}
}

func TestTrueCallsCondOnceWithZeroBound(t *testing.T) {
	calls := 0
	if True(0, time.Hour, func() bool { calls++; return false }) {
		t.Fatal("True = true for a false cond")
	}
	if calls != 1 {
		t.Errorf("cond called %d times, want exactly 1", calls)
	}
}
