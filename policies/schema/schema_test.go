package schema

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/fwagent/fwagent/internal/testing/examplepolicy"
	"github.com/fwagent/fwagent/policies/policyload"
)

var update = flag.Bool("update", false, "rewrite docs/policy.schema.json from Generate")

const committed = "../../docs/policy.schema.json"

// TestCommitted: the shipped schema is the generated one.
func TestCommitted(t *testing.T) {
	got, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(committed, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the generated schema; regenerate it with\n\tgo test ./policies/schema -run TestCommitted -update", committed)
	}
}

// TestSectionsMatchLoader: each mapping of the schema has exactly the keys
// the loader accepts there, read back from the generated JSON.
func TestSectionsMatchLoader(t *testing.T) {
	raw, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties  map[string]json.RawMessage `json:"properties"`
		Definitions map[string]struct {
			Properties           map[string]json.RawMessage `json:"properties"`
			AdditionalProperties *bool                      `json:"additionalProperties"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	voc := policyload.FormatVocabulary()
	if len(voc.Sections) != len(s.Definitions) {
		t.Errorf("schema has %d definitions, the loader %d sections", len(s.Definitions), len(voc.Sections))
	}
	for section, keys := range voc.Sections {
		d, ok := s.Definitions[section]
		if !ok {
			t.Errorf("no definition for %s", section)
			continue
		}
		var got []string
		for k := range d.Properties {
			got = append(got, k)
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(keys))
		if !slices.Equal(got, want) {
			t.Errorf("%s: schema keys %v, loader keys %v", section, got, want)
		}
		if d.AdditionalProperties == nil || *d.AdditionalProperties {
			t.Errorf("%s admits unknown keys", section)
		}
	}
	if len(s.Properties) != len(voc.Sections["policy"]) {
		t.Errorf("top level has %d properties, the loader %d", len(s.Properties), len(voc.Sections["policy"]))
	}
}

func compile(t *testing.T) *jsonschema.Schema {
	t.Helper()
	raw, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(ID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(ID)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// instance turns a policy's YAML into the JSON value an editor's schema
// check sees: YAML 1.2 core types, a local tag (`src: !10.0.0.0/8`, which
// the loader reads as a negation) as text.
func instance(t *testing.T, data []byte) any {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	v, err := toJSON(doc.Content[0])
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func toJSON(n *yaml.Node) (any, error) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			v, err := toJSON(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[n.Content[i].Value] = v
		}
		return m, nil
	case yaml.SequenceNode:
		l := []any{}
		for _, c := range n.Content {
			v, err := toJSON(c)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	}
	switch n.Tag {
	case "!!null":
		return nil, nil
	case "!!bool":
		return n.Value == "true" || n.Value == "True" || n.Value == "TRUE", nil
	case "!!int":
		v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		return v, err
	case "!!float":
		return strconv.ParseFloat(n.Value, 64)
	case "!!str", "":
		return n.Value, nil
	}
	if n.Value == "" {
		return n.Tag, nil
	}
	return n.Tag + " " + n.Value, nil
}

// TestExamplesValidate: every shipped example validates.
func TestExamplesValidate(t *testing.T) {
	sch := compile(t)
	for _, f := range examplepolicy.Paths(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(instance(t, data)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// formatMaps lists, in document order, the mappings below root whose keys
// are the format's: a set's entries are walked, its name is not.
func formatMaps(root *yaml.Node) []*yaml.Node {
	var maps []*yaml.Node
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			maps = append(maps, n)
		}
		for i, c := range n.Content {
			// Set names are the user's own keys, not the format's.
			if n.Kind == yaml.MappingNode && i%2 == 1 && n.Content[i-1].Value == "sets" {
				for j := 1; j < len(c.Content); j += 2 {
					walk(c.Content[j])
				}
				continue
			}
			walk(c)
		}
	}
	walk(root)
	return maps
}

// TestUnknownKeyFails: an unknown key added to any mapping of any example
// fails both the schema and the loader.
func TestUnknownKeyFails(t *testing.T) {
	sch := compile(t)
	tried := 0
	for _, f := range examplepolicy.Paths(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		maps := formatMaps(doc.Content[0])
		for i := range maps {
			// Mutate the i-th mapping of a fresh copy.
			var cp yaml.Node
			if err := yaml.Unmarshal(data, &cp); err != nil {
				t.Fatal(err)
			}
			m := formatMaps(cp.Content[0])
			target := m[i]
			target.Content = append(target.Content,
				&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "zz_unknown"},
				&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: "1"})
			out, err := yaml.Marshal(&cp)
			if err != nil {
				t.Fatal(err)
			}
			where := fmt.Sprintf("%s, mapping at line %d", f, target.Line)
			if err := sch.Validate(instance(t, out)); err == nil {
				t.Errorf("%s: the schema takes an unknown key", where)
			}
			_, lerr := policyload.Load(f, out, os.ReadFile)
			if lerr == nil || !strings.Contains(lerr.Error(), `unknown key "zz_unknown"`) {
				t.Errorf("%s: the loader says %v, want an unknown key error", where, lerr)
			}
			tried++
		}
	}
	t.Logf("%d mappings mutated", tried)
	if tried < 50 {
		t.Errorf("only %d mappings mutated", tried)
	}
}

// TestAgreesWithLoader: shape errors the loader refuses, the schema
// refuses too, and forms the loader takes it takes.
func TestAgreesWithLoader(t *testing.T) {
	sch := compile(t)
	const head = "version: 1\n"
	cases := []struct {
		name, policy string
		ok           bool
	}{
		{"minimal", head, true},
		{"empty sections", head + "sets:\nrules:\ntests:\n", true},
		{"default action", head + "default: reject\non_error: accept\n", true},
		{"on_error reject", head + "on_error: reject\n", false},
		{"no version", "mode: audit\n", false},
		{"version 2", "version: 2\n", false},
		{"bad mode", head + "mode: enforcing\n", false},
		{"log yes", head + "rules:\n  - name: a\n    action: accept\n    log: yes\n", false},
		{"default log on", head + "default: {log: on}\n", false},
		{"bad action", head + "rules:\n  - name: a\n    action: allow\n", false},
		{"bad hook", head + "rules:\n  - name: a\n    hook: inbound\n    action: accept\n", false},
		{"hook list", head + "rules:\n  - name: a\n    hook: [input, output]\n    action: accept\n", true},
		{"bad state", head + "rules:\n  - name: a\n    match: {state: open}\n    action: accept\n", false},
		{"proto upper", head + "rules:\n  - name: a\n    match: {proto: TCP}\n    action: accept\n", true},
		{"proto number", head + "rules:\n  - name: a\n    match: {proto: [tcp, 132]}\n    action: accept\n", true},
		{"bad proto", head + "rules:\n  - name: a\n    match: {proto: tcpp}\n    action: accept\n", false},
		{"ports", head + "rules:\n  - name: a\n    match: {proto: tcp, dport: [22, 8000-8099, \"!8080\"], sport: \"1024-65535\"}\n    action: accept\n", true},
		{"unquoted negation", head + "rules:\n  - name: a\n    match:\n      src: !10.0.0.0/8\n    action: drop\n", true},
		{"mark hex", head + "rules:\n  - name: a\n    action: accept\n    mark: 0x10\n", true},
		{"limit", head + "rules:\n  - name: a\n    action: accept\n    limit: {rate: 6/m, per: flow, over: true, burst: 3}\n", true},
		{"limit per bad", head + "rules:\n  - name: a\n    action: accept\n    limit: {rate: 6/m, per: source}\n", false},
		{"reserved name", head + "rules:\n  - name: default\n    action: accept\n", false},
		{"test rule default", head + "tests:\n  - packet: {dport: 80}\n    expect: drop\n    rule: default\n", true},
		{"test bad key", head + "tests:\n  - packet: {dprot: 80}\n    expect: drop\n", false},
		{"null match", head + "rules:\n  - name: a\n    match:\n    action: accept\n", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, lerr := policyload.Load("p.yaml", []byte(c.policy), nil)
			if (lerr == nil) != c.ok {
				t.Fatalf("the loader says %v, want ok=%v", lerr, c.ok)
			}
			serr := sch.Validate(instance(t, []byte(c.policy)))
			if (serr == nil) != c.ok {
				t.Errorf("the schema says %v, the loader %v", serr, lerr)
			}
		})
	}
}
