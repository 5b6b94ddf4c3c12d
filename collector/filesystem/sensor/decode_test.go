package sensor

import (
	"bytes"
	"path"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// TestLayout compares the record layout decode assumes with the struct
// compiled into the BPF object (its BTF).
func TestLayout(t *testing.T) {
	spec, err := loadFs()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{"time": 0, "start": 8, "cgroup": 16, "ino": 24, "size": 32, "op": 40, "pid": 44,
		"tid": 48, "ppid": 52, "uid": 56, "euid": 60, "dev": 64, "mode": 68, "owner_uid": 72, "owner_gid": 76,
		"new_mode": 80, "new_uid": 84, "new_gid": 88, "open_flags": 92, "flags": 96, "match": 100,
		"path_len": 104, "rel_len": 106, "old_len": 108, "old_rel_len": 110, "target_len": 112, "exe_len": 114,
		"comm": 116, "pad": 132}
	var st *btf.Struct
	if err := spec.Types.TypeByName("fs_event", &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != headerSize {
		t.Errorf("fs_event: %d bytes in the object, %d in decode", st.Size, headerSize)
	}
	got := map[string]uint32{}
	for _, m := range st.Members {
		got[m.Name] = uint32(m.Offset.Bytes())
	}
	for name, off := range want {
		if g, ok := got[name]; !ok || g != off {
			t.Errorf("fs_event.%s: at %d (present %v) in the object, %d in decode", name, g, ok, off)
		}
	}
	if len(got) != len(want) {
		t.Errorf("members %v, decode knows %v", got, want)
	}
}

// record builds a record as the BPF program writes it.
type record struct {
	op                         Op
	pid, newMode, match, flags uint32
	path, old, exe             []string // leaf first
	rel, oldRel, target, comm  string
	noNUL                      bool // drop the path section's NUL
	truncate                   int  // bytes cut off the end
}

func section(parts []string) []byte {
	var s []byte
	for _, p := range parts {
		s = append(append(s, p...), 0)
	}
	return s
}

func str(s string) []byte {
	if s == "" {
		return nil
	}
	return append([]byte(s), 0)
}

func (r record) bytes() []byte {
	b := make([]byte, headerSize)
	ne.PutUint32(b[40:], uint32(r.op))
	ne.PutUint32(b[44:], r.pid)
	ne.PutUint32(b[80:], r.newMode)
	ne.PutUint32(b[96:], r.flags)
	ne.PutUint32(b[100:], r.match)
	copy(b[116:132], r.comm)
	p := section(r.path)
	if r.noNUL && len(p) > 0 {
		p = p[:len(p)-1]
	}
	secs := [][]byte{p, str(r.rel), section(r.old), str(r.oldRel), str(r.target), section(r.exe)}
	for i, s := range secs {
		ne.PutUint16(b[104+2*i:], uint16(len(s)))
		b = append(b, s...)
	}
	return b[:len(b)-r.truncate]
}

// join is the naive oracle of a path: the base's components reversed,
// joined with rel, cleaned by path.Clean.
func join(base []string, rel string) string {
	if strings.HasPrefix(rel, "/") {
		return path.Clean(rel)
	}
	parts := []string{""}
	for i := len(base) - 1; i >= 0; i-- {
		parts = append(parts, base[i])
	}
	return path.Clean("/" + strings.Join(parts, "/") + "/" + rel)
}

func TestDecode(t *testing.T) {
	d := decoder{}
	for _, tc := range []struct {
		name                   string
		r                      record
		path, old, exe, target string
		bad                    bool
	}{
		{name: "open", r: record{op: OpCreate, path: []string{"x", "tmp"}, exe: []string{"sh", "bin"}, comm: "sh"},
			path: "/tmp/x", exe: "/bin/sh"},
		{name: "absolute", r: record{op: OpUnlink, rel: "/etc//cron.d/../cron.d/./evil"}, path: "/etc/cron.d/evil"},
		{name: "relative", r: record{op: OpUnlink, path: []string{"etc"}, rel: "cron.d/x"}, path: "/etc/cron.d/x"},
		{name: "above root", r: record{op: OpUnlink, path: []string{"etc"}, rel: "../../../x"}, path: "/x"},
		{name: "rename", r: record{op: OpRename, path: []string{"home"}, rel: "b", old: []string{"tmp"}, oldRel: "a"},
			path: "/home/b", old: "/tmp/a"},
		{name: "symlink", r: record{op: OpSymlink, rel: "/etc/l", target: "/root/x"}, path: "/etc/l", target: "/root/x"},
		{name: "root", r: record{op: OpChmod, newMode: 0o4755}, path: "/"},
		{name: "no NUL", r: record{op: OpCreate, path: []string{"x"}, noNUL: true}, bad: true},
		{name: "short", r: record{op: OpCreate, path: []string{"x"}, truncate: 1}, bad: true},
		{name: "header", r: record{op: OpCreate, truncate: headerSize - 10}, bad: true},
		{name: "op", r: record{op: 11}, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e Event
			err := d.decode(tc.r.bytes(), &e)
			if tc.bad {
				if err == nil {
					t.Fatalf("decoded %+v", e)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(e.Path) != tc.path || string(e.OldPath) != tc.old || string(e.Exe) != tc.exe || string(e.Target) != tc.target {
				t.Errorf("path %q old %q exe %q target %q", e.Path, e.OldPath, e.Exe, e.Target)
			}
			if e.Op != tc.r.op || string(e.Comm) != tc.r.comm || e.NewMode != tc.r.newMode {
				t.Errorf("%+v", e)
			}
		})
	}
}

// FuzzDecode checks decode against the naive oracle (join) for any base
// components and path arguments, and that no input makes it panic.
func FuzzDecode(f *testing.F) {
	f.Add("etc\x00cron.d", "x/../y", "a", "/b//c", []byte(nil))
	f.Add("", "/", "", "", []byte{1, 2, 3})
	f.Add("a\x00b", "../../..", ".", "./", []byte(nil))
	f.Fuzz(func(t *testing.T, base, rel, obase, orel string, raw []byte) {
		var d decoder
		var e Event
		_ = d.decode(raw, &e) // any bytes: an error or an event, no panic
		split := func(s string) []string {
			var out []string
			for _, p := range strings.Split(s, "\x00") {
				if p != "" && !strings.Contains(p, "/") {
					out = append(out, p)
				}
			}
			return out
		}
		if strings.Contains(rel, "\x00") || strings.Contains(orel, "\x00") {
			return
		}
		b, ob := split(base), split(obase)
		r := record{op: OpRename, path: b, rel: rel, old: ob, oldRel: orel}
		if err := d.decode(r.bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if want := join(b, rel); string(e.Path) != want {
			t.Errorf("path %q, want %q (base %q rel %q)", e.Path, want, b, rel)
		}
		wantOld := ""
		if len(ob) > 0 || orel != "" {
			wantOld = join(ob, orel)
		}
		if string(e.OldPath) != wantOld {
			t.Errorf("old path %q, want %q", e.OldPath, wantOld)
		}
		if bytes.Contains(e.Path, []byte("//")) {
			t.Errorf("uncleaned %q", e.Path)
		}
	})
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{OpOpenWrite.String(), "open_write"}, {OpRead.String(), "read"}, {Op(0).String(), "op(0)"},
		{(PathTruncated | RenameExchange).String(), "PathTruncated|RenameExchange"}, {Flags(0).String(), "0"},
		{Flags(1 << 12).String(), "0x1000"}, {(WatchWrites | WatchReads).String(), "writes|reads"},
	} {
		if tc.got != tc.want {
			t.Errorf("%q, want %q", tc.got, tc.want)
		}
	}
}

// BenchmarkDecode decodes a rename with two relative paths and an
// executable: no allocation.
func BenchmarkDecode(b *testing.B) {
	raw := record{op: OpRename, path: []string{"cron.d", "etc"}, rel: "job", old: []string{"tmp"}, oldRel: "../tmp/x",
		exe: []string{"bash", "bin", "usr"}, comm: "bash"}.bytes()
	d := decoder{}
	var e Event
	b.ReportAllocs()
	for b.Loop() {
		if err := d.decode(raw, &e); err != nil {
			b.Fatal(err)
		}
	}
}
