package e2e

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/eventually"
)

const copyRangeHeaders = `version: 1
default: {input: drop}
rules:
  - name: web
    match: {proto: tcp, dport: 8080}
    action: accept
    offload: false
`

const copyRangePayload = `version: 1
default: {input: drop}
rules:
  - name: no-secret
    match: {proto: tcp, dport: 8080, payload: {contains: FWSECRET}}
    action: drop
  - name: web
    match: {proto: tcp, dport: 8080}
    action: accept
    offload: false
`

// TestCopyRangeFollowsPolicy: a policy that reads only headers has the
// queue copy 256 bytes of each packet (and queues GSO aggregates whole);
// a reload to a policy with a payload rule raises the copy range before the
// new policy decides, so a needle thousands of bytes into a segment is seen.
// Before the reload the same bytes pass: no rule looked for them.
func TestCopyRangeFollowsPolicy(t *testing.T) {
	n := agentNet(t, 8080)
	policy := writePolicy(t, copyRangeHeaders)
	a := startAgent(t, n.Server, policy)
	if s := a.stderr.String(); !strings.Contains(s, "copy_range=256") || !strings.Contains(s, "gso=true") {
		t.Fatalf("queue bound without copy_range=256 gso=true:\n%s", s)
	}
	dst := netip.AddrPortFrom(n.Server.Addr4(), 8080)
	block := bytes.Repeat([]byte("x"), 4000)
	copy(block[3000:], "FWSECRET")
	send := func() error {
		c, err := dialTCP(n.Client, dst, 0, answerWait)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(block); err != nil {
			return err
		}
		got := make([]byte, len(block))
		_, err = io.ReadFull(c, got)
		return err
	}
	if err := send(); err != nil {
		t.Fatalf("headers-only policy: the block did not come back: %v", err)
	}

	if err := os.WriteFile(policy, []byte(copyRangePayload), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !eventually.True(10*time.Second, 20*time.Millisecond, func() bool { return strings.Contains(a.stderrAfterReady(), `msg="policy reloaded"`) }) {
		t.Fatalf("no reload 10s after SIGHUP:\n%s", a.stderrAfterReady())
	}
	if s := a.stderrAfterReady(); !strings.Contains(s, "queue copy range changed") || !strings.Contains(s, "bytes=65531") {
		t.Fatalf("reload to a payload rule did not raise the copy range to whole packets:\n%s", s)
	}
	if err := send(); err == nil {
		t.Fatal("payload policy: a block with the needle at byte 3000 came back; the rule did not see it")
	} else if !isTimeout(err) {
		t.Fatalf("payload policy: %v, want the segment silently dropped (timeout)", err)
	}
}
