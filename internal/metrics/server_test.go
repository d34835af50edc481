package metrics

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		addr          string
		network, path string
		on, wantErr   bool
	}{
		{addr: "", on: false},
		{addr: "off", on: false},
		{addr: DefaultAddr, network: "tcp", path: DefaultAddr, on: true},
		{addr: "[::1]:9109", network: "tcp", path: "[::1]:9109", on: true},
		{addr: "unix:/run/fwagent.sock", network: "unix", path: "/run/fwagent.sock", on: true},
		{addr: "/run/fwagent.sock", network: "unix", path: "/run/fwagent.sock", on: true},
		{addr: "unix:", wantErr: true},
		{addr: "localhost", wantErr: true},
	}
	for _, tt := range tests {
		network, path, on, err := ParseAddr(tt.addr)
		if (err != nil) != tt.wantErr || network != tt.network || path != tt.path || on != tt.on {
			t.Errorf("ParseAddr(%q) = %q %q %v %v, want %q %q %v err=%v", tt.addr, network, path, on, err, tt.network, tt.path, tt.on, tt.wantErr)
		}
	}
}

func get(t *testing.T, c *Client, path string) (int, string) {
	t.Helper()
	code, b, err := c.Get(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return code, string(b)
}

func TestServeOnUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "fwagent.sock")
	// A stale socket from a crashed run is replaced.
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	ln, err := Listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	var readersLive atomic.Int32
	readersLive.Store(1)
	h := NewHealth(Check{Name: "queues", Fn: func() error {
		if readersLive.Load() < 1 {
			return errors.New("0 of 1 readers live")
		}
		return nil
	}})
	shared := testShared(t)
	send(t, shared.NewWorker(), 22, 4)
	reg := NewRegistry(NewCollector(Sources{Pipeline: shared, Reloads: &Reloads{}}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, Handler(reg, h, nil)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("socket left behind: %v", err)
		}
	})
	c := NewClient("unix", sock, 10*time.Second)
	defer c.Close()

	code, body := get(t, c, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	if f := fams["fwagent_rule_hits_total"]; f == nil || len(f.Metric) != 2 {
		t.Fatalf("rule hits missing from the scrape: %v", f)
	}
	if fams["go_goroutines"] == nil {
		t.Fatal("go runtime metrics missing")
	}

	if code, body := get(t, c, "/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz: %d %q, want 200 ok", code, body)
	}
	if code, _ := get(t, c, "/readyz"); code != 503 {
		t.Fatalf("/readyz before SetReady: %d, want 503", code)
	}
	h.SetReady(true)
	if code, _ := get(t, c, "/readyz"); code != 200 {
		t.Fatalf("/readyz when ready: %d, want 200", code)
	}
	readersLive.Store(0) // a reader died
	code, body = get(t, c, "/healthz")
	if code != 503 || !strings.Contains(body, "queues: 0 of 1 readers live") {
		t.Fatalf("/healthz with a dead reader: %d %q, want 503 naming it", code, body)
	}
	if code, _ := get(t, c, "/readyz"); code != 503 {
		t.Fatalf("/readyz with a dead reader: %d, want 503", code)
	}
}

func TestListenRefusesNonSocket(t *testing.T) {
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if ln, err := Listen(p); err == nil {
		ln.Close()
		t.Fatal("listened over a regular file")
	}
	if ln, err := Listen("off"); ln != nil || err != nil {
		t.Fatalf("off: %v %v, want no listener", ln, err)
	}
}

// A live agent's address is never taken over: a unix socket someone serves
// is left alone (not unlinked), a TCP port in use is refused, both with
// ErrInUse once the patience runs out; once the holder lets go, the address
// is free again.
func TestListenInUse(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "live.sock")
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"unix:" + sock, tcp.Addr().String()} {
		var holder net.Listener
		if strings.HasPrefix(addr, "unix:") {
			if holder, err = Listen(addr); err != nil {
				t.Fatal(err)
			}
			go func() {
				for {
					c, err := holder.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		} else {
			holder = tcp
		}
		ln, err := listen(addr, 300*time.Millisecond)
		if !errors.Is(err, ErrInUse) {
			if ln != nil {
				ln.Close()
			}
			t.Fatalf("%s: second listener: %v, want ErrInUse", addr, err)
		}
		if strings.HasPrefix(addr, "unix:") {
			if _, err := os.Stat(sock); err != nil {
				t.Fatalf("the live agent's socket was removed: %v", err)
			}
		}
		holder.Close()
		ln, err = listen(addr, 300*time.Millisecond)
		if err != nil {
			t.Fatalf("%s after the holder closed: %v", addr, err)
		}
		ln.Close()
	}
}
