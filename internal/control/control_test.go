package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/testing/tempdir"
)

func TestServeAndCall(t *testing.T) {
	path := filepath.Join(tempdir.Short(t, "fwc"), "run", "control.sock")
	n := 0
	srv, err := Listen(path, map[string]Handler{
		"confirm": func() (string, error) { n++; return "confirmed", nil },
		"fail":    func() (string, error) { return "", errors.New("nothing\nto do") },
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %#o, want 0600", perm)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()

	if msg, err := Call(t.Context(), path, "confirm"); err != nil || msg != "confirmed" || n != 1 {
		t.Errorf("confirm = %q, %v (handler ran %d times)", msg, err, n)
	}
	if _, err := Call(t.Context(), path, "fail"); err == nil || err.Error() != "nothing; to do" {
		t.Errorf("fail = %v", err)
	}
	if _, err := Call(t.Context(), path, "bogus"); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("bogus = %v", err)
	}
	// A second server on a live socket is refused, the first keeps it.
	if _, err := Listen(path, nil, nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Listen = %v, want in use", err)
	}
	cancel()
	<-done
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after Serve: %v", err)
	}
	if _, err := Call(t.Context(), path, "confirm"); err == nil || !strings.Contains(err.Error(), "is the agent running") {
		t.Errorf("Call with no server = %v", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(tempdir.Short(t, "fwc"), "control.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // leaves the file, as a killed agent does
	srv, err := Listen(path, nil, nil)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	srv.ln.Close()
}

func TestParseReply(t *testing.T) {
	for _, tt := range []struct {
		in, msg string
		err     bool
	}{
		{"ok done\n", "done", false},
		{"ok\n", "", false},
		{"error bad\n", "", true},
		{"what\n", "", true},
	} {
		msg, err := ParseReply(tt.in)
		if msg != tt.msg || (err != nil) != tt.err {
			t.Errorf("ParseReply(%q) = %q, %v", tt.in, msg, err)
		}
	}
}

func FuzzParseReply(f *testing.F) {
	f.Add("ok confirmed\n")
	f.Add("error x\n")
	f.Fuzz(func(t *testing.T, s string) {
		msg, err := ParseReply(s)
		if err == nil && !strings.HasPrefix(s, "ok") {
			t.Fatalf("ParseReply(%q) = %q without error", s, msg)
		}
	})
}
