package rules

import "fmt"

func hex32(v uint32) string { return fmt.Sprintf("0x%08x", v) }
