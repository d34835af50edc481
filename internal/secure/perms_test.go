package secure_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwagent/fwagent/internal/secure"
	"github.com/fwagent/fwagent/internal/testing/testpolicy"
	"github.com/fwagent/fwagent/policies/policyload"
)

func TestReadFileMode(t *testing.T) {
	uid := os.Geteuid()
	for _, tc := range []struct {
		mode    os.FileMode
		allow   bool
		wantErr string // "" for success
	}{
		{0o600, false, ""},
		{0o644, false, ""},
		{0o444, false, ""},
		{0o640, false, ""},
		{0o664, false, "lets group write"},
		{0o646, false, "lets others write"},
		{0o666, false, "lets group and others write"},
		{0o777, false, "lets group and others write"},
		{0o620, false, "lets group write"},
		{0o666, true, ""},
		{0o602, true, ""},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			p := testpolicy.WriteFile(t, t.TempDir(), "policy.yaml", "content", tc.mode)
			b, err := secure.New(uid, tc.allow).ReadFile(p)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ReadFile(%v) = %v, want success", tc.mode, err)
				}
				if string(b) != "content" {
					t.Fatalf("ReadFile = %q, want %q", b, "content")
				}
				return
			}
			var ie *secure.InsecureError
			if !errors.As(err, &ie) {
				t.Fatalf("ReadFile(%v) = %v (%T), want *InsecureError", tc.mode, err, err)
			}
			if b != nil {
				t.Errorf("content returned with the error")
			}
			for _, want := range []string{p, tc.wantErr, "chmod go-w " + p, "--allow-insecure-policy-perms"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if err := secure.New(uid, tc.allow).Check(p); err == nil {
				t.Errorf("Check(%v) passed, ReadFile refused", tc.mode)
			}
		})
	}
}

func TestReadFileOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	const other = 54321
	for _, tc := range []struct {
		name     string
		owner    int
		agentUID int
		allow    bool
		ok       bool
	}{
		{"root's file, root agent", 0, 0, false, true},
		{"root's file, unprivileged agent", 0, 65534, false, true},
		{"agent's own file", other, other, false, true},
		{"another user's file", other, 65534, false, false},
		{"another user's file, root agent", other, 0, false, false},
		{"another user's file, allowed", other, 65534, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testpolicy.WriteFile(t, t.TempDir(), "set.txt", "10.0.0.0/8\n", 0o644)
			if err := os.Chown(p, tc.owner, tc.owner); err != nil {
				t.Fatal(err)
			}
			_, err := secure.New(tc.agentUID, tc.allow).ReadFile(p)
			if (err == nil) != tc.ok {
				t.Fatalf("ReadFile = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "uid 54321") {
				t.Errorf("error %q does not name the owner", err)
			}
		})
	}
}

func TestReadFileNotRegular(t *testing.T) {
	dir := t.TempDir()
	if _, err := secure.New(os.Geteuid(), false).ReadFile(dir); err == nil {
		t.Fatal("a directory was read as a policy")
	}
	if _, err := secure.New(os.Geteuid(), false).ReadFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v, want ErrNotExist", err)
	}
}

// TestSymlinkChecksTarget: the check is on what is opened, so a safe link
// to an unsafe file is refused.
func TestSymlinkChecksTarget(t *testing.T) {
	dir := t.TempDir()
	target := testpolicy.WriteFile(t, dir, "real.yaml", "x", 0o666)
	link := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := secure.New(os.Geteuid(), false).ReadFile(link); err == nil {
		t.Fatal("a link to a world-writable file was read")
	}
}

// TestPolicySetFile: read through the checker, the loader refuses a policy
// whose set file is writable by others, naming the set file.
func TestPolicySetFile(t *testing.T) {
	const policy = "version: 1\nsets:\n  bad: {file: bad.txt}\nrules:\n  - {name: a, match: {src: $bad}, action: drop}\n"
	for _, tc := range []struct {
		name    string
		setMode os.FileMode
		polMode os.FileMode
		bad     string // file named in the error, "" for success
	}{
		{"both safe", 0o644, 0o644, ""},
		{"set file world-writable", 0o666, 0o644, "bad.txt"},
		{"set file group-writable", 0o664, 0o600, "bad.txt"},
		{"policy world-writable", 0o644, 0o646, "policy.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			testpolicy.WriteFile(t, dir, "bad.txt", "192.0.2.0/24\n", tc.setMode)
			p := testpolicy.WriteFile(t, dir, "policy.yaml", policy, tc.polMode)
			c := secure.New(os.Geteuid(), false)
			var err error
			if data, rerr := c.ReadFile(p); rerr != nil {
				err = rerr
			} else {
				_, err = policyload.Load(p, data, c.ReadFile)
			}
			if tc.bad == "" {
				if err != nil {
					t.Fatalf("load: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("loaded with %s insecure", tc.bad)
			}
			if !strings.Contains(err.Error(), "chmod go-w "+filepath.Join(dir, tc.bad)) {
				t.Errorf("error %q does not give the fix for %s", err, tc.bad)
			}
		})
	}
}
