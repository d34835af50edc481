package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fwagent/fwagent/policies"
	"github.com/fwagent/fwagent/policies/policyload"
	"github.com/fwagent/fwagent/policies/policytest"
)

// yamlDocs parses every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// get walks a parsed YAML value by map keys and list indices.
func get(t *testing.T, v any, path ...any) any {
	t.Helper()
	for i, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: not a map: %v", path[:i], v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at %v: no item %d in %v", path[:i], k, v)
			}
			v = l[k]
		}
	}
	return v
}

func TestEveryYAMLFileParses(t *testing.T) {
	var n int
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(path); ext == ".yaml" || ext == ".yml" {
			n++
			if len(yamlDocs(t, path)) == 0 {
				t.Errorf("%s: no YAML document", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("found %d YAML files, want the manifests and rules", n)
	}
}

// kubeObjects indexes the Kubernetes manifests by kind.
func kubeObjects(t *testing.T) map[string]map[string]any {
	t.Helper()
	objs := map[string]map[string]any{}
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		for _, d := range yamlDocs(t, f) {
			kind, _ := d["kind"].(string)
			if kind == "" {
				t.Fatalf("%s: a document without kind", f)
			}
			objs[kind] = d
		}
	}
	return objs
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	k := yamlDocs(t, "kubernetes/kustomization.yaml")[0]
	files, _ := filepath.Glob("kubernetes/*.yaml")
	var want []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			want = append(want, b)
		}
	}
	var got []string
	for _, r := range get(t, k, "resources").([]any) {
		got = append(got, r.(string))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("kustomization resources %v, want %v", got, want)
	}
}

func TestDaemonSet(t *testing.T) {
	objs := kubeObjects(t)
	ds := objs["DaemonSet"]
	if ds == nil {
		t.Fatal("no DaemonSet")
	}
	ns := get(t, objs["Namespace"], "metadata", "name")
	if get(t, ds, "metadata", "namespace") != ns || get(t, objs["ConfigMap"], "metadata", "namespace") != ns {
		t.Fatalf("DaemonSet and ConfigMap are not in namespace %v", ns)
	}
	if get(t, objs["Namespace"], "metadata", "labels", "pod-security.kubernetes.io/enforce") != "privileged" {
		t.Error("namespace does not allow hostNetwork and NET_ADMIN (pod-security enforce: privileged)")
	}
	if get(t, ds, "spec", "updateStrategy", "rollingUpdate", "maxSurge") != 0 {
		t.Error("maxSurge is not 0: two agents on one node would share queues")
	}
	pod := get(t, ds, "spec", "template", "spec")
	if get(t, pod, "hostNetwork") != true {
		t.Error("hostNetwork is not true")
	}
	if get(t, pod, "securityContext", "runAsNonRoot") != true || get(t, pod, "securityContext", "runAsUser") != 65532 {
		t.Error("pod does not run as the non-root uid 65532")
	}

	agent := get(t, pod, "containers", 0)
	if get(t, agent, "name") != "fwagent" {
		t.Fatalf("first container is %v, want fwagent", get(t, agent, "name"))
	}
	sc := get(t, agent, "securityContext")
	if add := get(t, sc, "capabilities", "add").([]any); len(add) != 1 || add[0] != "NET_ADMIN" {
		t.Errorf("capabilities add %v, want exactly NET_ADMIN", add)
	}
	if drop := get(t, sc, "capabilities", "drop").([]any); len(drop) != 1 || drop[0] != "ALL" {
		t.Errorf("capabilities drop %v, want ALL", drop)
	}
	// File capabilities, which the non-root agent relies on, need this.
	if get(t, sc, "allowPrivilegeEscalation") != true {
		t.Error("allowPrivilegeEscalation is not true: the binary's file capability would be ignored")
	}
	if get(t, sc, "readOnlyRootFilesystem") != true {
		t.Error("root filesystem is writable")
	}

	var args []string
	for _, a := range get(t, agent, "args").([]any) {
		args = append(args, a.(string))
	}
	flag := func(name string) string {
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				return v
			}
		}
		t.Fatalf("args %v lack --%s=", args, name)
		return ""
	}
	if args[0] != "run" {
		t.Fatalf("args %v do not start with run", args)
	}
	_, port, _ := strings.Cut(flag("metrics-addr"), ":")
	for _, probe := range []struct{ name, path string }{{"livenessProbe", "/healthz"}, {"readinessProbe", "/readyz"}} {
		p := get(t, agent, probe.name, "httpGet")
		if get(t, p, "path") != probe.path {
			t.Errorf("%s path %v, want %s", probe.name, get(t, p, "path"), probe.path)
		}
		if got := get(t, p, "port"); got != 9109 || port != "9109" {
			t.Errorf("%s on port %v, metrics listen on %q: want both 9109", probe.name, got, port)
		}
	}
	for _, r := range []string{"cpu", "memory"} {
		if get(t, agent, "resources", "requests", r) == nil {
			t.Errorf("no %s request", r)
		}
	}
	if get(t, agent, "resources", "limits", "memory") == nil {
		t.Error("no memory limit")
	}

	// The policy file the agent reads is the ConfigMap's key, mounted.
	policy := flag("policy")
	var mounted bool
	for _, m := range get(t, agent, "volumeMounts").([]any) {
		vol := get(t, m, "name")
		for _, v := range get(t, pod, "volumes").([]any) {
			if _, isCM := v.(map[string]any)["configMap"]; !isCM {
				continue // e.g. the /run/fwagent emptyDir
			}
			if get(t, v, "name") == vol && get(t, v, "configMap", "name") == get(t, objs["ConfigMap"], "metadata", "name") &&
				filepath.Dir(policy) == get(t, m, "mountPath") && get(t, objs["ConfigMap"], "data", filepath.Base(policy)) != nil {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("--policy=%s is not a key of the ConfigMap mounted as a directory", policy)
	}
	// Edits reach the agent: it watches the file (the mounted directory is
	// updated by the kubelet; a subPath mount never is).
	// kubectl logs interleaves stdout (events) and stderr (the agent's log):
	// both must be JSON for the README's `| jq .`.
	if !slices.Contains(args, "--log-format=json") {
		t.Error("no --log-format=json: kubectl logs | jq . would fail on the agent's text log")
	}
	if slices.Contains(args, "--watch-policy=false") {
		t.Error("--watch-policy is off: ConfigMap edits would not reload")
	}
	for _, m := range get(t, agent, "volumeMounts").([]any) {
		if sub, _ := get(t, m, "subPath").(string); sub != "" {
			t.Errorf("volume mounted with subPath %q: the kubelet never updates it", sub)
		}
	}
}

// TestConfigMapPolicy loads the shipped policy and runs its tests, as
// `fwagent check` would.
func TestConfigMapPolicy(t *testing.T) {
	cm := kubeObjects(t)["ConfigMap"]
	src, ok := get(t, cm, "data", "policy.yaml").(string)
	if !ok {
		t.Fatal("ConfigMap has no policy.yaml")
	}
	pol, err := policyload.Load("configmap.yaml:policy.yaml", []byte(src), func(string) ([]byte, error) {
		return nil, errors.New("the ConfigMap policy must not name set files")
	})
	if err != nil {
		t.Fatal(err)
	}
	prog, err := policies.Compile(pol)
	if err != nil {
		t.Fatal(err)
	}
	res := policytest.Run(prog)
	if len(res) == 0 {
		t.Fatal("the ConfigMap policy has no tests")
	}
	for _, r := range res {
		if !r.OK {
			t.Errorf("policy test at line %d failed: %s", r.Line, r.Msg)
		}
	}
}

// unitKeys reads a systemd unit into section.key -> values.
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(bytes.ReplaceAll(b, []byte("\\\n"), nil)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not key=value: %q", path, line)
			}
			keys[section+"."+k] = append(keys[section+"."+k], v)
		}
	}
	return keys
}

func TestSystemdUnit(t *testing.T) {
	u := unitKeys(t, "fwagent.service")
	want := map[string]string{
		"Unit.Before":                     "network-pre.target shutdown.target",
		"Unit.Wants":                      "network-pre.target",
		"Service.Restart":                 "on-failure",
		"Service.User":                    "fwagent",
		"Service.CapabilityBoundingSet":   "CAP_NET_ADMIN",
		"Service.AmbientCapabilities":     "CAP_NET_ADMIN",
		"Service.NoNewPrivileges":         "yes",
		"Service.ProtectSystem":           "strict",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.PrivateUsers":            "no",
		"Service.ReadWritePaths":          "/var/log/fwagent",
		"Service.RestrictAddressFamilies": "AF_NETLINK AF_UNIX AF_INET AF_INET6",
		"Service.SystemCallArchitectures": "native",
		"Service.MemoryMax":               "1G",
		"Install.WantedBy":                "multi-user.target",
		"Service.ExecReload":              "/usr/local/bin/fwagent check /etc/fwagent/policy.yaml",
		"Service.ExecStartPre":            "/usr/local/bin/fwagent check /etc/fwagent/policy.yaml",
		"Service.LogsDirectory":           "fwagent",
		"Service.SystemCallFilter":        "@system-service",
		"Service.ProtectKernelModules":    "yes",
		"Service.RestrictNamespaces":      "yes",
		"Service.MemoryDenyWriteExecute":  "yes",
		"Service.ProtectKernelTunables":   "yes",
		"Service.ProtectControlGroups":    "yes",
		"Service.RestrictSUIDSGID":        "yes",
		"Service.LockPersonality":         "yes",
		"Service.EnvironmentFile":         "-/etc/default/fwagent",
		"Service.Type":                    "exec",
		"Unit.DefaultDependencies":        "no",
		"Unit.After":                      "local-fs.target systemd-sysusers.service systemd-modules-load.service",
		"Service.ExecStart":               "",
		"Service.Group":                   "fwagent",
		"Service.RestartSec":              "1s",
		"Service.KillSignal":              "SIGTERM",
		"Service.TimeoutStopSec":          "15s",
		"Service.SystemCallErrorNumber":   "EPERM",
		"Service.PrivateDevices":          "yes",
		"Service.PrivateNetwork":          "no",
		"Service.UMask":                   "0027",
		"Service.LogsDirectoryMode":       "0750",
		"Service.RuntimeDirectory":        "fwagent",
		"Service.RuntimeDirectoryMode":    "0700",
		"Service.ProtectKernelLogs":       "yes",
		"Service.ProtectClock":            "yes",
		"Service.ProtectHostname":         "yes",
		"Service.ProtectProc":             "invisible",
		"Service.RestrictRealtime":        "yes",
		"Service.RemoveIPC":               "yes",
		"Service.TasksMax":                "256",
		"Service.LimitNOFILE":             "65536",
		"Unit.Conflicts":                  "shutdown.target",
		"Unit.Description":                "",
		"Unit.Documentation":              "",
	}
	for k, v := range want {
		got, ok := u[k]
		if !ok {
			t.Errorf("%s is not set", k)
			continue
		}
		if v != "" && !slices.Contains(got, v) {
			t.Errorf("%s = %q, want %q among them", k, got, v)
		}
	}
	for k := range u {
		if _, ok := want[k]; !ok {
			t.Errorf("%s is set but not checked here: add it to the test (and the docs)", k)
		}
	}
	if reload := u["Service.ExecReload"]; len(reload) != 2 || reload[1] != "/bin/kill -HUP $MAINPID" {
		t.Errorf("ExecReload %q: want the policy check, then kill -HUP $MAINPID", reload)
	}
	start := strings.Fields(u["Service.ExecStart"][0])
	if start[0] != "/usr/local/bin/fwagent" || start[1] != "run" || !slices.Contains(start, "/var/log/fwagent/events.json") {
		t.Errorf("ExecStart %q: want fwagent run logging to /var/log/fwagent", start)
	}
}

// TestSystemdAnalyzeVerify runs systemd's own checker where it is
// installed, on a copy whose binary path points at a real executable.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	b, err := os.ReadFile("fwagent.service")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "fwagent.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(b, []byte("/usr/local/bin/fwagent"), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestDockerfileRunsAsNonRootWithFileCapability(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{
		"setcap cap_net_admin+ep /out/fwagent",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER 65532:65532",
		"COPY --from=build /out/fwagent /usr/local/bin/fwagent",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

// metricNames are the metrics internal/metrics exports, read from its
// source so that a renamed metric breaks this test, not a dashboard.
func metricNames(t *testing.T) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob("../internal/metrics/*.go")
	var b []byte
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, src...)
	}
	if len(b) == 0 {
		t.Skip("internal/metrics not present")
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`desc\("(\w+)"`).FindAllStringSubmatch(string(b), -1) {
		names["fwagent_"+m[1]] = true
	}
	if len(names) < 10 {
		t.Fatalf("found only %d metric names in internal/metrics", len(names))
	}
	return names
}

func TestDashboardAndAlertsUseRealMetrics(t *testing.T) {
	names := metricNames(t)
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	b, err := os.ReadFile("grafana/fwagent-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, g := range get(t, yamlDocs(t, "prometheus/fwagent-rules.yaml")[0], "groups").([]any) {
		for _, r := range get(t, g, "rules").([]any) {
			exprs = append(exprs, get(t, r, "expr").(string))
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("only %d expressions found", len(exprs))
	}
	metric := regexp.MustCompile(`fwagent_\w+`)
	for _, e := range exprs {
		for _, m := range metric.FindAllString(e, -1) {
			base := m
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				base = strings.TrimSuffix(base, suf)
			}
			if !names[base] {
				t.Errorf("%q uses %s, which internal/metrics does not export", e, m)
			}
		}
	}
}
