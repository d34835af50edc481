package main

import "github.com/fwagent/fwagent/internal/evalreport"

// The eval tests decode the report's JSON lines into its own types.
type (
	evalLine     = evalreport.Line
	summaryRow   = evalreport.SummaryRow
	frameSummary = evalreport.FrameSummary
)
