package rules

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

// requireKernel skips a test that needs root and the given tools, or fails
// it when CI=true, where a skipped kernel test would hide a regression.
func requireKernel(t testing.TB, tools ...string) {
	t.Helper()
	skip := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kernel test cannot run under CI=true: %s", why)
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		skip("needs root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			skip(tool + " not installed")
		}
	}
}

// testNS is an anonymous network namespace that lives as long as its file
// descriptor: closing it in Cleanup tears down the namespace and everything
// in it, even when the test fails.
type testNS struct {
	h    netns.NsHandle
	file *os.File
}

func newTestNS(t testing.TB) *testNS {
	t.Helper()
	requireKernel(t, "nft", "nsenter")
	var ns *testNS
	var err error
	func() {
		// The thread switches namespace only inside this function and is
		// switched back before it is unlocked.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, gerr := netns.Get()
		if gerr != nil {
			err = gerr
			return
		}
		defer orig.Close()
		h, nerr := netns.New()
		if serr := netns.Set(orig); serr != nil {
			// The thread is stuck in the new namespace: never hand it back
			// to the scheduler.
			panic(serr)
		}
		if nerr != nil {
			err = nerr
			return
		}
		ns = &testNS{h: h, file: os.NewFile(uintptr(h), "netns")}
	}()
	if err != nil {
		t.Fatalf("create network namespace: %v", err)
	}
	t.Cleanup(func() { ns.file.Close() })
	return ns
}

func (ns *testNS) fd() int { return int(ns.h) }

// conn is an nftables connection bound to the namespace.
func (ns *testNS) conn(t testing.TB) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(ns.fd()), BigBatches())
	if err != nil {
		t.Fatalf("nftables conn: %v", err)
	}
	return c
}

// run runs a command inside the namespace and returns its stdout.
func (ns *testNS) run(t testing.TB, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=/proc/self/fd/3", name}, args...)...)
	cmd.ExtraFiles = []*os.File{ns.file}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), &cmdError{err: err, stderr: errb.String()}
	}
	return out.String(), nil
}

func (ns *testNS) mustRun(t testing.TB, stdin string, name string, args ...string) string {
	t.Helper()
	out, err := ns.run(t, stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// nft runs nft in the namespace.
func (ns *testNS) nft(t testing.TB, args ...string) string {
	t.Helper()
	return ns.mustRun(t, "", "nft", args...)
}

type cmdError struct {
	err    error
	stderr string
}

func (e *cmdError) Error() string { return e.err.Error() + ": " + e.stderr }

var handleRE = regexp.MustCompile(` # handle \d+`)

// listing is `nft list table` output with handles stripped, one line per rule.
func (ns *testNS) listing(t testing.TB, family, table string) []string {
	t.Helper()
	out := ns.nft(t, "list", "table", family, table)
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(handleRE.ReplaceAllString(l, ""))
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}
