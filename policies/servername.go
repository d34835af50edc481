package policies

// ReassemblesQUIC reports whether a tls_sni rule can match UDP: only then
// is it worth following QUIC Initial packets per flow to find their server
// name (see Input.ServerName).
func (p *Program) ReassemblesQUIC() bool { return p.quicSNI }
