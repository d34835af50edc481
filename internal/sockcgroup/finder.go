package sockcgroup

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/packet"
	"github.com/fwagent/fwagent/policies"
)

// Mount finds the cgroup2 mount point in mounts (the text of
// /proc/self/mounts): on a hybrid host it is not /sys/fs/cgroup.
func Mount(mounts string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(mounts))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 && f[2] == "cgroup2" {
			return unescapeMount(f[1]), nil
		}
	}
	return "", errors.New("sockcgroup: no cgroup2 file system is mounted")
}

// unescapeMount undoes the octal escapes (\040 for a space) of
// /proc/self/mounts.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// HostMount reads this process's mounts for the cgroup2 mount point.
func HostMount() (string, error) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "", fmt.Errorf("sockcgroup: %w", err)
	}
	return Mount(string(b))
}

// maxCached bounds the id to path cache; when full it starts over.
const maxCached = 4096

// Finder implements policies.CgroupFinder for the packets of the network
// namespace it was opened in. It is safe for concurrent use.
type Finder struct {
	mount string
	log   *slog.Logger
	diag  *diag

	mu    sync.Mutex
	paths map[uint64]string
	// handles is false once open_by_handle_at failed for lack of support
	// or permission: ids are then found by walking the mount.
	noHandles bool
	mountFD   int
}

// Open makes a finder on the cgroup2 file system mounted at mount.
func Open(mount string, log *slog.Logger) (*Finder, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fd, err := unix.Open(mount, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sockcgroup: open cgroup2 mount %s: %w", mount, err)
	}
	d, err := openDiag()
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Finder{mount: filepath.Clean(mount), log: log, diag: d, paths: map[uint64]string{}, mountFD: fd}, nil
}

// Close releases the finder's sockets.
func (f *Finder) Close() error {
	unix.Close(f.mountFD)
	return f.diag.close()
}

// Mount is the cgroup2 mount point the finder resolves paths under.
func (f *Finder) Mount() string { return f.mount }

// Cgroup implements policies.CgroupFinder: the local socket of an output
// packet is at its source, of an input packet at its destination. Only TCP
// and UDP packets can be looked up.
func (f *Finder) Cgroup(pkt *packet.Packet, hook nf.Hook) (string, bool) {
	if !pkt.HasL4 || pkt.NonFirstFragment || (pkt.Proto != packet.ProtoTCP && pkt.Proto != packet.ProtoUDP) {
		return "", false
	}
	s := Socket{Proto: pkt.Proto}
	src, dst := netip.AddrPortFrom(pkt.Src, pkt.SrcPort), netip.AddrPortFrom(pkt.Dst, pkt.DstPort)
	switch hook {
	case nf.HookOutput:
		s.Local, s.Remote = src, dst
	case nf.HookInput:
		s.Local, s.Remote = dst, src
	default:
		return "", false
	}
	id, err := f.SocketCgroup(s)
	if err != nil {
		return "", false
	}
	p, err := f.Path(id)
	if err != nil {
		return "", false
	}
	return p, true
}

// SocketCgroup is the cgroup id of socket s. A connection still in its
// handshake is a request socket, which has no cgroup of its own; its
// listener's is asked for instead.
func (f *Finder) SocketCgroup(s Socket) (uint64, error) {
	id, err := f.diag.lookup(s)
	if err == nil || s.Proto != packet.ProtoTCP || !errors.Is(err, errNoCgroupAttr) {
		return id, err
	}
	// A wildcard remote end matches no connection, only the listener.
	unspec := netip.IPv6Unspecified()
	if s.Local.Addr().Is4() {
		unspec = netip.IPv4Unspecified()
	}
	s.Remote = netip.AddrPortFrom(unspec, 0)
	return f.diag.lookup(s)
}

// Path is the path below the mount of the cgroup with id ("" for the root).
func (f *Finder) Path(id uint64) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.paths[id]; ok {
		return p, nil
	}
	p, err := f.resolve(id)
	if err != nil {
		return "", err
	}
	if len(f.paths) >= maxCached {
		clear(f.paths)
	}
	f.paths[id] = p
	return p, nil
}

// fileidKernfs is FILEID_KERNFS (include/linux/exportfs.h): a kernfs file
// handle is the node's 64-bit id.
const fileidKernfs = 0xfe

func (f *Finder) resolve(id uint64) (string, error) {
	if !f.noHandles {
		p, err := f.byHandle(id)
		if err == nil || !isUnsupported(err) {
			return p, err
		}
		f.log.Info("cgroup paths found by walking the cgroup2 mount (open_by_handle_at unavailable)", "err", err)
		f.noHandles = true
	}
	return f.byWalk(id)
}

func isUnsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL)
}

func (f *Finder) byHandle(id uint64) (string, error) {
	h := unix.NewFileHandle(fileidKernfs, binary.NativeEndian.AppendUint64(nil, id))
	fd, err := unix.OpenByHandleAt(f.mountFD, h, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_PATH)
	if err != nil {
		if errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT) {
			return "", fmt.Errorf("sockcgroup: cgroup %d is gone: %w", id, err)
		}
		return "", fmt.Errorf("sockcgroup: open cgroup %d: %w", id, err)
	}
	defer unix.Close(fd)
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", fmt.Errorf("sockcgroup: name cgroup %d: %w", id, err)
	}
	return f.relative(target)
}

func (f *Finder) relative(abs string) (string, error) {
	if abs == f.mount {
		return "", nil
	}
	rel, ok := strings.CutPrefix(abs, f.mount+"/")
	if !ok || strings.HasSuffix(rel, " (deleted)") {
		return "", fmt.Errorf("sockcgroup: cgroup at %q is outside %s", abs, f.mount)
	}
	return rel, nil
}

// byWalk finds the directory whose inode number is id.
func (f *Finder) byWalk(id uint64) (string, error) {
	found := ""
	err := filepath.WalkDir(f.mount, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil && st.Ino == id {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("sockcgroup: walk %s: %w", f.mount, err)
	}
	if found == "" {
		return "", fmt.Errorf("sockcgroup: no cgroup with id %d under %s", id, f.mount)
	}
	return f.relative(found)
}

// ID is the id of the cgroup at path below mount: its directory's inode
// number, what nft's `socket cgroupv2` compares.
func ID(mount, path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(mount, path), &st); err != nil {
		return 0, fmt.Errorf("sockcgroup: cgroup %s: %w", path, err)
	}
	return st.Ino, nil
}

// Resolve lists the ids of the cgroups under mount that pattern names
// (policies.CgroupMatch semantics: one component per level, '*' within a
// component): the cgroups at depth policies.CgroupDepth(pattern) whose path
// matches, for nft's `socket cgroupv2 level N`. A pattern naming no
// existing cgroup yields none, and no error.
func Resolve(mount, pattern string) ([]uint64, error) {
	depth := strings.Count(pattern, "/") + 1
	var ids []uint64
	root := filepath.Clean(mount)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || p == root {
			return nil
		}
		rel := strings.TrimPrefix(p, root+"/")
		n := strings.Count(rel, "/") + 1
		if n == depth {
			if policies.CgroupMatch(pattern, rel) {
				var st syscall.Stat_t
				if syscall.Stat(p, &st) == nil {
					ids = append(ids, st.Ino)
				}
			}
			return filepath.SkipDir
		}
		// Deeper levels only under directories that can still match.
		if !policies.CgroupMatch(prefixComponents(pattern, n), rel) {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sockcgroup: resolve %s: %w", pattern, err)
	}
	return ids, nil
}

// prefixComponents is the first n components of a pattern.
func prefixComponents(pattern string, n int) string {
	i := 0
	for k := 0; k < n; k++ {
		j := strings.IndexByte(pattern[i:], '/')
		if j < 0 {
			return pattern
		}
		i += j + 1
	}
	return pattern[:i-1]
}
