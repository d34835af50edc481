// Package secure refuses to read a policy or set file that someone other
// than root or the agent's own user could have changed.
//
// A firewall policy is as trusted as the least trusted account that can
// write it: a group- or world-writable policy lets any local user open the
// firewall. The check is made on the open file descriptor (fstat), not on
// the path, so a file swapped between the check and the read cannot slip
// through.
package secure
