package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fwagent/fwagent/internal/testing/testnet"
)

// cdp speaks the Chrome DevTools Protocol over --remote-debugging-pipe:
// JSON messages ended by a NUL byte, written to the browser's fd 3 and
// read from its fd 4. One browser serves every page of a test, since a
// headless Chromium takes seconds to start on a small machine.
type cdp struct {
	w *os.File

	mu      sync.Mutex
	next    int
	waiting map[int]chan cdpReply
	closed  error
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func (c *cdp) readLoop(r io.Reader) {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			c.mu.Lock()
			c.closed = fmt.Errorf("cdp: browser pipe: %w", err)
			for id, ch := range c.waiting {
				close(ch)
				delete(c.waiting, id)
			}
			c.mu.Unlock()
			return
		}
		var m struct {
			ID int `json:"id"`
			cdpReply
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
			continue // an event; nothing here waits for events
		}
		c.mu.Lock()
		if ch, ok := c.waiting[m.ID]; ok {
			ch <- m.cdpReply
			delete(c.waiting, m.ID)
		}
		c.mu.Unlock()
	}
}

// call sends method with params (to the page session, if any) and decodes
// the result into out.
func (c *cdp) call(ctx context.Context, session, method string, params, out any) error {
	ch := make(chan cdpReply, 1)
	c.mu.Lock()
	if c.closed != nil {
		c.mu.Unlock()
		return c.closed
	}
	c.next++
	id := c.next
	c.waiting[id] = ch
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	b, err := json.Marshal(msg)
	if err == nil {
		_, err = c.w.Write(append(b, 0))
	}
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("cdp: send %s: %w", method, err)
	}
	select {
	case r, ok := <-ch:
		switch {
		case !ok:
			return fmt.Errorf("cdp: %s: browser gone", method)
		case r.Error != nil:
			return fmt.Errorf("cdp: %s: %s", method, r.Error.Message)
		case out != nil:
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.waiting, id)
		c.mu.Unlock()
		return fmt.Errorf("cdp: %s: %w", method, ctx.Err())
	}
}

// startChromium runs headless Chromium inside ns with a throw-away profile,
// every name resolved to server, QUIC forced for origins (host:443), and
// the test server's self-signed certificate accepted by its key hash spki.
// It is killed, with its child processes, at test end.
func startChromium(t *testing.T, ns *testnet.NS, server string, origins []string, spki string) *cdp {
	t.Helper()
	toBrowser, ourEnd, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromBrowser, theirEnd, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-extensions",
		"--user-data-dir=" + t.TempDir(),
		"--remote-debugging-pipe",
		"--enable-quic",
		"--origin-to-force-quic-on=" + strings.Join(origins, ","),
		"--ignore-certificate-errors-spki-list=" + spki,
		"--host-resolver-rules=MAP * " + server,
		"about:blank",
	}
	cmd := ns.Command(context.Background(), "chromium", args...)
	cmd.ExtraFiles = []*os.File{toBrowser, theirEnd} // fd 3: it reads, fd 4: it writes
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	toBrowser.Close()
	theirEnd.Close()
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// The browser's renderer and utility processes share its
		// process group, which it leads: end them all by its id.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
		ourEnd.Close()
		fromBrowser.Close()
		if t.Failed() {
			t.Logf("chromium stderr:\n%s", stderr.String())
		}
	})
	t.Logf("started chromium in %s (pid %d)", ns.Name(), pid)
	c := &cdp{w: ourEnd, waiting: make(map[int]chan cdpReply)}
	go c.readLoop(fromBrowser)
	return c
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// loadPage opens url in a new tab and reports whether the page loaded with
// the title want; why says what happened otherwise.
func (c *cdp) loadPage(ctx context.Context, url, want string) (ok bool, why string) {
	var tgt struct {
		TargetID string `json:"targetId"`
	}
	if err := c.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &tgt); err != nil {
		return false, err.Error()
	}
	defer func() {
		_ = c.call(context.Background(), "", "Target.closeTarget", map[string]any{"targetId": tgt.TargetID}, nil)
	}()
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := c.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": tgt.TargetID, "flatten": true}, &att); err != nil {
		return false, err.Error()
	}
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	if err := c.call(ctx, att.SessionID, "Page.navigate", map[string]any{"url": url}, &nav); err != nil {
		return false, err.Error()
	}
	if nav.ErrorText != "" {
		return false, nav.ErrorText
	}
	const title = `new Promise(r => document.readyState === "complete" ? r(document.title) : addEventListener("load", () => r(document.title)))`
	var ev struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
	}
	if err := c.call(ctx, att.SessionID, "Runtime.evaluate", map[string]any{"expression": title, "awaitPromise": true, "returnByValue": true}, &ev); err != nil {
		return false, err.Error()
	}
	got := fmt.Sprint(ev.Result.Value)
	return got == want, "title " + got
}

// loadAll loads every host's page at once, each in its own tab, and
// returns which loaded.
func (c *cdp) loadAll(t *testing.T, hosts []string, wait time.Duration) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var mu sync.Mutex
	loaded := make(map[string]bool)
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			start := time.Now()
			ok, why := c.loadPage(ctx, "https://"+h+"/", pageTitle(h))
			t.Logf("%s: loaded %v after %v (%s)", h, ok, time.Since(start).Round(time.Millisecond), why)
			mu.Lock()
			loaded[h] = ok
			mu.Unlock()
		})
	}
	wg.Wait()
	return loaded
}

func hostNames(prefix, domain string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d.%s", prefix, i, domain)
	}
	return out
}

// requireChromium skips without a chromium binary, and fails in CI
// (scripts/deps.sh installs it).
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("chromium"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("e2e: chromium not installed (scripts/deps.sh installs it): %v", err)
		}
		t.Skipf("e2e: chromium not installed: %v", err)
	}
}

// TestChromiumQUIC: headless Chromium, with QUIC forced and no TCP server to
// fall back to, loads 10 of 10 pages whose names an allowlist allows and 0
// of 10 others, then, under a denylist, 0 of 10 denied names and 10 of 10
// others. Its ClientHello spreads over two or more Initial packets, CRYPTO
// frames out of order.
func TestChromiumQUIC(t *testing.T) {
	requireKernelTools(t)
	requireChromium(t)
	n := testnet.New(t)
	allowed, others := hostNames("a", "allowed.example", 10), hostNames("o", "other.example", 10)
	denied, fine := hostNames("d", "denied.example", 10), hostNames("f", "fine.example", 10)
	var all, origins []string
	for _, set := range [][]string{allowed, others, denied, fine} {
		all = append(all, set...)
	}
	for _, h := range all {
		origins = append(origins, h+":443")
	}
	cert := selfSigned(t, all)
	serveHTTP3(t, n.Server, cert)
	browser := startChromium(t, n.Client, n.Server.Addr4().String(), origins, spkiHash(t, cert))

	for _, phase := range []struct {
		name        string
		policy      string
		pass, block []string
	}{
		{"allowlist", quicAllowPolicy, allowed, others},
		{"denylist", quicDenyPolicy, fine, denied},
	} {
		a := startAgent(t, n.Client, writePolicy(t, phase.policy), "--hooks", "output")
		loaded := browser.loadAll(t, append(append([]string(nil), phase.pass...), phase.block...), 90*time.Second)
		passed, blocked := 0, 0
		for _, h := range phase.pass {
			if loaded[h] {
				passed++
			}
		}
		for _, h := range phase.block {
			if loaded[h] {
				blocked++
			}
		}
		t.Logf("%s: %d of %d pages that should load loaded, %d of %d that should not", phase.name, passed, len(phase.pass), blocked, len(phase.block))
		if passed != len(phase.pass) || blocked != 0 {
			t.Errorf("%s: %d of %d pages that should load loaded, %d of %d that should not", phase.name, passed, len(phase.pass), blocked, len(phase.block))
		}
		if phase.name == "denylist" {
			// Every denied connection was dropped by the QUIC rule
			// (logged), not by anything else.
			if evs := a.waitEvents(t, len(phase.block), func(e event) bool { return e.str("rule") == "deny-quic" }); len(evs) < len(phase.block) {
				t.Errorf("%d drop events from deny-quic, want at least %d", len(evs), len(phase.block))
			}
		}
		if code := a.stop(t, syscall.SIGTERM); code != 0 {
			t.Errorf("agent exit code %d", code)
		}
	}
}
