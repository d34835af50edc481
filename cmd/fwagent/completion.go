package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Shell completion: cobra's built-in `completion` command (bash, zsh, fish,
// powershell) prints the script; this file teaches it the values of flags
// that take a fixed word or a kind of file, on every command that has them.
//
//	fwagent completion bash > /etc/bash_completion.d/fwagent
//	fwagent completion zsh > "${fpath[1]}/_fwagent"
//	fwagent completion fish > ~/.config/fish/completions/fwagent.fish

// flagWords returns the words a flag's value is one of, or nil.
func flagWords(name string) []string {
	switch name {
	case "hooks":
		return []string{"input", "forward", "output"}
	case "hook":
		return []string{"input", "forward", "output", "auto"}
	case "queue-kind":
		return []string{"auto", "native", "xt"}
	case "log-level":
		return []string{"debug", "info", "warn", "error"}
	case "event":
		return []string{"drop", "reject", "accept", "would_drop", "would_reject"}
	}
	return nil
}

// flagFile reports whether a flag names a file, and the extensions to offer
// (none: any file).
func flagFile(name string) (exts []string, ok bool) {
	switch name {
	case "policy":
		return []string{"yaml", "yml"}, true
	case "log-pcap":
		return []string{"pcap"}, true
	case "log-file", "file":
		return nil, true
	}
	return nil, false
}

// addCompletions registers value completions for the flags of cmd and its
// subcommands, and file completion for the positional arguments of the
// commands that read a policy or a capture.
func addCompletions(cmd *cobra.Command) {
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if words := flagWords(f.Name); words != nil {
			_ = cmd.RegisterFlagCompletionFunc(f.Name, cobra.FixedCompletions(words, cobra.ShellCompDirectiveNoFileComp))
		}
		if exts, ok := flagFile(f.Name); ok {
			_ = cmd.MarkFlagFilename(f.Name, exts...)
		}
	})
	switch cmd.Name() {
	case "check", "fmt", "diff":
		cmd.ValidArgsFunction = filesWith("yaml", "yml")
	case "eval":
		cmd.ValidArgsFunction = filesWith("pcap", "pcapng", "cap", "gz")
	}
	if cmd.Flags().Lookup("capture") != nil {
		_ = cmd.MarkFlagFilename("capture", "pcap", "pcapng", "cap", "gz")
	}
	for _, sub := range cmd.Commands() {
		addCompletions(sub)
	}
}

func filesWith(exts ...string) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return exts, cobra.ShellCompDirectiveFilterFileExt
	}
}
