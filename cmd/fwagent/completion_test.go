package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCompletion(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string // lines the output must contain
	}{
		{"bash script", []string{"completion", "bash"}, []string{"complete -o default -F __start_fwagent fwagent"}},
		{"zsh script", []string{"completion", "zsh"}, []string{"#compdef fwagent"}},
		{"subcommands", []string{"__complete", ""}, []string{"run", "check", "eval", "rules", "completion"}},
		{"queue kind", []string{"__complete", "run", "--queue-kind", ""}, []string{"auto", "native", "xt", ":4"}},
		{"hooks on rules too", []string{"__complete", "rules", "--hooks", ""}, []string{"input", "forward", "output"}},
		{"policy files", []string{"__complete", "run", "--policy", ""}, []string{"yaml", "yml", ":8"}},
		{"check takes a policy file", []string{"__complete", "check", ""}, []string{"yaml", ":8"}},
		{"eval hook auto", []string{"__complete", "eval", "--hook", ""}, []string{"input", "forward", "output", "auto"}},
		{"fmt takes policy files", []string{"__complete", "fmt", ""}, []string{"yaml", ":8"}},
		{"diff capture", []string{"__complete", "diff", "--capture", ""}, []string{"pcap", "pcapng"}},
		{"eval takes a capture", []string{"__complete", "eval", "--policy", "p.yaml", ""}, []string{"pcap", "pcapng"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&bytes.Buffer{})
			root.SetArgs(tt.args)
			if err := root.Execute(); err != nil {
				t.Fatalf("%v: %v", tt.args, err)
			}
			lines := map[string]bool{}
			for _, l := range strings.Split(out.String(), "\n") {
				// A completion is the word before its tab-separated help.
				lines[strings.TrimSpace(strings.SplitN(l, "\t", 2)[0])] = true
			}
			for _, w := range tt.want {
				if !lines[w] {
					t.Errorf("%v: output lacks line %q:\n%s", tt.args, w, out.String())
				}
			}
		})
	}
}
