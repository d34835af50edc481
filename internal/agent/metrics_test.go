package agent

import "testing"

func TestQueuesCheck(t *testing.T) {
	tests := []struct {
		live, want int
		healthy    bool
	}{
		{1, 1, true},
		{4, 4, true},
		{0, 1, false}, // the only reader died
		{3, 4, false}, // one of several died
	}
	for _, tt := range tests {
		if err := queuesCheck(tt.live, tt.want); (err == nil) != tt.healthy {
			t.Errorf("queuesCheck(%d, %d) = %v, want healthy=%v", tt.live, tt.want, err, tt.healthy)
		}
	}
}
