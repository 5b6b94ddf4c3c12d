//go:build linux

package sensor

import (
	"bufio"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ident is the kernel map key of a file or directory (struct ident).
type ident struct {
	Ino uint64
	Dev uint32
	_   uint32
}

// nameKey is the kernel map key of a name in a directory (struct name_key).
type nameKey struct {
	Ino  uint64
	Dev  uint32
	_    uint32
	Name [MaxNameBytes + 1]byte
}

// lpmKey is the kernel map key of a path prefix (struct lpm_key).
type lpmKey struct {
	Prefixlen uint32 // bits
	Data      [lpmBytes]byte
}

// lpmBytes is LPM_BYTES: how much of an absolute path the prefix trie sees.
const lpmBytes = 256

// plan is what the kernel maps should hold.
type plan struct {
	watched  map[ident]uint32
	names    map[nameKey]uint32
	prefixes map[lpmKey]uint32
	devs     map[uint32]uint32
}

// addPrefixes watches p (as written and with symlinks resolved) as a
// string: p itself ("p\x00") and, for a directory, everything below it
// ("p/").
func (pl *plan) addPrefixes(p string, dir bool, f WatchFlags) {
	paths := []string{p}
	if r, err := filepath.EvalSymlinks(p); err == nil && r != p {
		paths = append(paths, r)
	}
	for _, q := range paths {
		for _, s := range []string{q + "\x00", q + "/"} {
			if len(s) > lpmBytes {
				continue
			}
			var k lpmKey
			k.Prefixlen = uint32(len(s)) * 8
			copy(k.Data[:], s)
			pl.prefixes[k] |= uint32(f)
			if !dir {
				break
			}
		}
	}
}

// kdev converts a stat(2) device number to the kernel's dev_t.
func kdev(d uint64) uint32 { return unix.Major(d)<<20 | unix.Minor(d)&(1<<20-1) }

func statIdent(p string) (ident, os.FileMode, bool) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return ident{}, 0, false
	}
	mode := os.FileMode(0)
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		mode = fs.ModeDir
	}
	return ident{Ino: st.Ino, Dev: kdev(st.Dev)}, mode, true
}

// resolvePlan turns the watches into map contents. mounts are the mount
// points of the process's mount namespace.
func resolvePlan(watches []Watch, mounts []string) (plan, error) {
	p := plan{watched: map[ident]uint32{}, names: map[nameKey]uint32{}, prefixes: map[lpmKey]uint32{}, devs: map[uint32]uint32{}}
	add := func(id ident, f WatchFlags) {
		p.watched[id] |= uint32(f)
		p.devs[id.Dev] |= uint32(f)
	}
	addTree := func(target string, id ident, isDir bool, f WatchFlags) {
		add(id, f)
		p.addPrefixes(target, isDir, f)
		if !isDir {
			return
		}
		prefix := strings.TrimSuffix(target, "/") + "/"
		for _, m := range mounts {
			if strings.HasPrefix(m, prefix) {
				if mid, _, ok := statIdent(m); ok {
					add(mid, f)
				}
			}
		}
	}
	for _, w := range watches {
		dir, last, err := w.validate()
		if err != nil {
			return plan{}, err
		}
		if hasMeta(last) {
			matches, _ := filepath.Glob(w.Path) // the pattern was validated
			for _, m := range matches {
				if id, mode, ok := statIdent(m); ok {
					addTree(m, id, mode.IsDir(), w.Flags)
				}
			}
			continue
		}
		parents := []string{dir}
		if hasMeta(dir) {
			parents, _ = filepath.Glob(dir)
		}
		for _, parent := range parents {
			pid, pmode, ok := statIdent(parent)
			if !ok || !pmode.IsDir() {
				continue
			}
			target := path.Join(parent, last)
			id, mode, exists := statIdent(target)
			switch {
			case exists && mode.IsDir():
				addTree(target, id, true, w.Flags)
			case parent == "/":
				if exists {
					add(id, w.Flags)
					p.addPrefixes(target, false, w.Flags)
				}
			default:
				add(pid, watchNames)
				var k nameKey
				k.Ino, k.Dev = pid.Ino, pid.Dev
				copy(k.Name[:MaxNameBytes], last)
				p.names[k] |= uint32(w.Flags)
				p.devs[pid.Dev] |= uint32(w.Flags)
				// The name may become a directory (~/.ssh): below it too.
				p.addPrefixes(target, true, w.Flags)
			}
		}
	}
	return p, nil
}

// mountPoints returns the mount points of the process's mount namespace
// (/proc/self/mountinfo), or nil when it cannot be read.
func mountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		out = append(out, unescapeMount(fields[4]))
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
