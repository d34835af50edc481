// Package testnet builds throw-away network namespaces joined by veth pairs
// for tests that need real kernel networking, and always tears them down.
//
// Namespaces are created as named namespaces, bind-mounted under
// /var/run/netns exactly as `ip netns add` does, so that `ip netns exec NAME`
// and `ip netns list` see them; (*NS).Command relies on that. Names carry a
// random suffix because other tests create namespaces on the same machine at
// the same time. The veth pair is created inside the namespaces and never
// appears in the host's root namespace, so a test cannot collide with or
// leave behind a host interface.
//
// Code that must run inside a namespace (listening, dialing, netlink calls)
// goes through (*NS).Do, which runs it on a locked OS thread switched into the
// namespace. Sockets keep the namespace they were created in, so a listener
// opened inside Do can be served from any goroutine afterwards; goroutines
// started inside Do do not inherit the namespace.
package testnet
