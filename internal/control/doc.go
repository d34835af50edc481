// Package control is the agent's control socket: a unix socket (mode 0600)
// on which a local client (`fwagent confirm`) sends one command per
// connection and reads one reply.
//
// The protocol is one line each way: the client writes the command name
// and a newline; the server answers "ok MESSAGE" or "error MESSAGE" and a
// newline, then closes. Text, so an operator can also talk to it with
// `socat - UNIX-CONNECT:/run/fwagent/control.sock`.
package control
