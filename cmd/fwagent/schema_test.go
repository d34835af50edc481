package main

import (
	"encoding/json"
	"os"
	"testing"
)

func TestSchemaPrintsTheCommittedFile(t *testing.T) {
	code, out, errOut := fwagent(t, "schema")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want, err := os.ReadFile("../../docs/policy.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Errorf("fwagent schema differs from docs/policy.schema.json")
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil || v["$schema"] == nil {
		t.Errorf("not a JSON Schema: %v", err)
	}
	if code, _, _ := fwagent(t, "schema", "extra"); code != exitUsage {
		t.Errorf("schema with an argument: exit %d, want %d", code, exitUsage)
	}
}
