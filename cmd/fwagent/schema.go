package main

import (
	"github.com/spf13/cobra"

	"github.com/fwagent/fwagent/policies/schema"
)

func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the policy format",
		Long: `Print the JSON Schema (draft-07) of the policy format, for editors and
linters; docs/policy.schema.json is the same text. It checks shapes (keys,
value types, names); fwagent check checks meaning.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := schema.Generate()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}
