package sockcgroup

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

func answer(typ uint16, seq uint32, body []byte) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(nlmsgHdrLen+len(body)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	return append(b, body...)
}

func attr(typ uint16, v []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(4+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestParseAnswer(t *testing.T) {
	msg := make([]byte, msgLen)
	withID := append(append(append([]byte{}, msg...), attr(5, []byte{1})...), attr(attrCgroupID, binary.NativeEndian.AppendUint64(nil, 4242))...)
	enoent := -int32(unix.ENOENT)
	errno := binary.NativeEndian.AppendUint32(nil, uint32(enoent))
	for _, tc := range []struct {
		name string
		in   []byte
		id   uint64
		err  error
	}{
		{"cgroup id after another attribute", answer(sockDiagByFamily, 7, withID), 4242, nil},
		{"no cgroup id", answer(sockDiagByFamily, 7, msg), 0, errNoCgroupAttr},
		{"no such socket", answer(nlmsgError, 7, append(errno, make([]byte, 16)...)), 0, ErrNoSocket},
	} {
		id, seq, err := parseAnswer(tc.in)
		if id != tc.id || seq != 7 || !errors.Is(err, tc.err) && !(tc.err == nil && err == nil) {
			t.Errorf("%s: id %d seq %d err %v, want %d 7 %v", tc.name, id, seq, err, tc.id, tc.err)
		}
	}
	for _, bad := range [][]byte{nil, {1, 2, 3}, answer(sockDiagByFamily, 1, msg[:10]), answer(99, 1, nil)} {
		if _, _, err := parseAnswer(bad); err == nil {
			t.Errorf("%x parsed", bad)
		}
	}
}

func TestRequest(t *testing.T) {
	s := Socket{Proto: unix.IPPROTO_TCP, Local: netip.MustParseAddrPort("10.0.0.1:1000"), Remote: netip.MustParseAddrPort("10.0.0.2:80")}
	b := appendRequest(nil, 3, s)
	if len(b) != nlmsgHdrLen+reqLen || b[16] != unix.AF_INET || b[17] != unix.IPPROTO_TCP {
		t.Fatalf("request %x", b)
	}
	id := b[nlmsgHdrLen+8:]
	if binary.BigEndian.Uint16(id[0:2]) != 1000 || binary.BigEndian.Uint16(id[2:4]) != 80 || id[4] != 10 || id[7] != 1 || id[23] != 2 {
		t.Errorf("TCP sockid %x: want the local end first", id[:40])
	}
	s.Proto = unix.IPPROTO_UDP
	id = appendRequest(nil, 3, s)[nlmsgHdrLen+8:]
	if binary.BigEndian.Uint16(id[0:2]) != 80 || id[7] != 2 {
		t.Errorf("UDP sockid %x: want the remote end first", id[:40])
	}
}

func TestMount(t *testing.T) {
	m, err := Mount("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\ncgroup2 /sys/fs/cgroup/my\\040unified cgroup2 rw 0 0\n")
	if err != nil || m != "/sys/fs/cgroup/my unified" {
		t.Errorf("Mount = %q, %v", m, err)
	}
	if _, err := Mount("proc /proc proc rw 0 0\n"); err == nil {
		t.Error("no cgroup2: no error")
	}
}

// FuzzParseAnswer: whatever the socket returns, parsing neither panics nor
// reads past the datagram.
func FuzzParseAnswer(f *testing.F) {
	f.Add(answer(sockDiagByFamily, 1, append(make([]byte, msgLen), attr(attrCgroupID, make([]byte, 8))...)))
	f.Add(answer(nlmsgError, 1, make([]byte, 4)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, _, err := parseAnswer(b)
		if err != nil && id != 0 {
			t.Fatalf("id %d with error %v", id, err)
		}
	})
}
