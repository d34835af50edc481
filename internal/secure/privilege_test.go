package secure_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/fwagent/fwagent/internal/secure"
)

func TestExplainPrivilege(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		hint bool
	}{
		{"nil", nil, false},
		{"wrapped EPERM", fmt.Errorf("agent: drop log: %w", syscall.EPERM), true},
		{"EPERM as text", errors.New("netlink receive: operation not permitted"), true},
		{"file not readable", fmt.Errorf("policy: %w", os.ErrPermission), false},
		{"other", errors.New("policy.yaml:3:1: unknown key"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := secure.ExplainPrivilege(tc.err)
			if tc.err == nil {
				if got != nil {
					t.Fatalf("ExplainPrivilege(nil) = %v", got)
				}
				return
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("the original error is lost: %v", got)
			}
			if hinted := strings.Contains(got.Error(), "CAP_NET_ADMIN"); hinted != tc.hint {
				t.Errorf("ExplainPrivilege(%v) = %v, want hint=%v", tc.err, got, tc.hint)
			}
		})
	}
}
