package sensor

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
)

// TestLayout compares the exec record layout decode assumes with the
// struct compiled into the BPF object (its BTF, which has exec_event as a
// part of the per-CPU buffer's type), so that a change to one side only
// fails here. The fork and exit records are not in the BTF; the live tests
// TestFork and TestExit check each of their fields.
func TestLayout(t *testing.T) {
	spec, err := loadProcess()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		size    int
		offsets map[string]uint32
	}{
		{"exec_event", execHeaderSize, map[string]uint32{
			"time": 0, "kind": 8, "pid": 12, "tid": 16, "old_tid": 20, "ppid": 24, "uid": 28, "euid": 32,
			"gid": 36, "egid": 40, "loginuid": 44, "tty_major": 48, "tty_minor": 52, "pidns": 56,
			"mntns": 60, "nspid": 64, "flags": 68, "start": 72, "cgroup": 80, "path_len": 88,
			"cwd_len": 90, "filename_len": 92, "args_len": 94, "args_total": 96, "pad": 100,
			"exe_ino": 104, "exe_size": 112, "exe_mtime_sec": 120, "exe_mtime_nsec": 128, "exe_dev": 132,
			"vm_pages": 136, "rss_pages": 144,
		}},
	} {
		var st *btf.Struct
		if err := spec.Types.TypeByName(tc.name, &st); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if int(st.Size) != tc.size {
			t.Errorf("%s: %d bytes in the object, %d in decode", tc.name, st.Size, tc.size)
		}
		got := map[string]uint32{}
		for _, m := range st.Members {
			got[m.Name] = uint32(m.Offset.Bytes())
		}
		for name, off := range tc.offsets {
			if g, ok := got[name]; !ok || g != off {
				t.Errorf("%s.%s: at %d (present %v) in the object, %d in decode", tc.name, name, g, ok, off)
			}
		}
		if len(got) != len(tc.offsets) {
			t.Errorf("%s: members %v, decode knows %v", tc.name, got, tc.offsets)
		}
	}
}

// execRecord builds an exec record as the BPF program writes it.
type execRecord struct {
	time, start, cgroup                           uint64
	pid, tid, oldTID, ppid                        uint32
	uid, euid, gid, egid, loginUID                uint32
	ttyMajor, ttyMinor, pidNS, mntNS, nsPID       uint32
	flags, argsTotal                              uint32
	exeIno, exeSize, vmPages, rssPages            uint64
	exeMtimeSec                                   int64
	exeMtimeNsec, exeDev                          uint32
	path, cwd                                     []string // leaf first
	filename                                      string
	args                                          string // raw, NULs included
	pathLen, cwdLen, filenameLen, argsLen, extend int    // overrides when set
}

func (r execRecord) bytes() []byte {
	b := make([]byte, execHeaderSize)
	put32 := func(off int, v uint32) { ne.PutUint32(b[off:], v) }
	ne.PutUint64(b[0:], r.time)
	put32(8, uint32(KindExec))
	put32(12, r.pid)
	put32(16, r.tid)
	put32(20, r.oldTID)
	put32(24, r.ppid)
	put32(28, r.uid)
	put32(32, r.euid)
	put32(36, r.gid)
	put32(40, r.egid)
	put32(44, r.loginUID)
	put32(48, r.ttyMajor)
	put32(52, r.ttyMinor)
	put32(56, r.pidNS)
	put32(60, r.mntNS)
	put32(64, r.nsPID)
	put32(68, r.flags)
	ne.PutUint64(b[72:], r.start)
	ne.PutUint64(b[80:], r.cgroup)
	put32(96, r.argsTotal)
	ne.PutUint64(b[104:], r.exeIno)
	ne.PutUint64(b[112:], r.exeSize)
	ne.PutUint64(b[120:], uint64(r.exeMtimeSec))
	put32(128, r.exeMtimeNsec)
	put32(132, r.exeDev)
	ne.PutUint64(b[136:], r.vmPages)
	ne.PutUint64(b[144:], r.rssPages)
	section := func(parts []string) []byte {
		var s []byte
		for _, p := range parts {
			s = append(append(s, p...), 0)
		}
		return s
	}
	path, cwd := section(r.path), section(r.cwd)
	fn := []byte(r.filename + "\x00")
	lens := []int{len(path), len(cwd), len(fn), len(r.args)}
	for i, o := range []int{r.pathLen, r.cwdLen, r.filenameLen, r.argsLen} {
		if o != 0 {
			lens[i] = o
		}
	}
	for i, l := range lens {
		ne.PutUint16(b[88+2*i:], uint16(l))
	}
	b = append(append(append(append(b, path...), cwd...), fn...), r.args...)
	return b[:len(b)-r.extend]
}

func TestDecodeExec(t *testing.T) {
	base := execRecord{
		time: 5e9, start: 4e9, cgroup: 77, pid: 100, tid: 100, oldTID: 101, ppid: 1,
		uid: 1000, euid: 0, gid: 1001, egid: 1002, loginUID: 1000, ttyMajor: 136, ttyMinor: 3,
		pidNS: 11, mntNS: 12, nsPID: 7, argsTotal: 13,
		path: []string{"true", "bin", "usr"}, cwd: []string{"x", "home"}, filename: "/bin/true",
		args: "/bin/true\x00a\x00",
	}
	d := decoder{maxArgs: 3, wallOffset: 1e9}
	for _, tc := range []struct {
		name  string
		mod   func(*execRecord)
		check func(t *testing.T, e *Event)
		err   bool
	}{{
		name: "fields",
		check: func(t *testing.T, e *Event) {
			want := Event{Kind: KindExec, Time: time.Unix(6, 0), PID: 100, TID: 100, Exec: Exec{
				PPID: 1, OldTID: 101, Path: "/usr/bin/true", Filename: "/bin/true", Cwd: "/home/x",
				Args: []string{"/bin/true", "a"}, ArgsBytes: 13, UID: 1000, EUID: 0, GID: 1001, EGID: 1002,
				LoginUID: 1000, TTY: 136<<20 | 3, Start: 4 * time.Second, CgroupID: 77, PidNS: 11, MntNS: 12, NSPID: 7,
			}}
			if !equalEvents(*e, want) {
				t.Errorf("got  %+v\nwant %+v", *e, want)
			}
			if e.Exec.TTYMajor() != 136 || e.Exec.TTYMinor() != 3 {
				t.Errorf("tty %d:%d", e.Exec.TTYMajor(), e.Exec.TTYMinor())
			}
		},
	}, {
		name: "file identity and memory",
		mod: func(r *execRecord) {
			r.exeIno, r.exeSize, r.exeMtimeSec, r.exeMtimeNsec, r.exeDev = 42, 1234, 1700000000, 5, 8<<20|3
			r.vmPages, r.rssPages, r.flags = 10, 3, kMemory
		},
		check: func(t *testing.T, e *Event) {
			x := &e.Exec
			want := FileID{Dev: 8<<20 | 3, Ino: 42, Size: 1234, ModTime: 1700000000*1e9 + 5}
			if x.File != want || x.File.StatDev() != 0x803 {
				t.Errorf("file %+v (stat dev %#x), want %+v", x.File, x.File.StatDev(), want)
			}
			if !x.HasMemory || x.VMBytes != 10*pageSize || x.RSSBytes != 3*pageSize || x.Flags != 0 {
				t.Errorf("memory %v %d %d flags %v", x.HasMemory, x.VMBytes, x.RSSBytes, x.Flags)
			}
		},
	}, {
		name: "no memory read",
		check: func(t *testing.T, e *Event) {
			if e.Exec.HasMemory || e.Exec.VMBytes != 0 {
				t.Errorf("memory %v %d", e.Exec.HasMemory, e.Exec.VMBytes)
			}
		},
	}, {
		name: "root and no tty",
		mod:  func(r *execRecord) { r.cwd = nil; r.ttyMajor, r.ttyMinor = 0, 5 },
		check: func(t *testing.T, e *Event) {
			if e.Exec.Cwd != "/" || e.Exec.TTY != 0 || e.Exec.Path != "/usr/bin/true" {
				t.Errorf("cwd %q tty %d path %q", e.Exec.Cwd, e.Exec.TTY, e.Exec.Path)
			}
		},
	}, {
		name: "memfd",
		mod:  func(r *execRecord) { r.path = []string{"memfd:x"}; r.flags = kPathDetached },
		check: func(t *testing.T, e *Event) {
			if e.Exec.Path != "/memfd:x" || e.Exec.Flags != MemFD|Detached {
				t.Errorf("path %q flags %v", e.Exec.Path, e.Exec.Flags)
			}
		},
	}, {
		name: "memfd-like name in a directory is no memfd",
		mod:  func(r *execRecord) { r.path = []string{"memfd:x", "tmp"}; r.flags = kPathDetached | kPathUnlinked },
		check: func(t *testing.T, e *Event) {
			if e.Exec.Path != "/tmp/memfd:x" || e.Exec.Flags != Detached|Deleted {
				t.Errorf("path %q flags %v", e.Exec.Path, e.Exec.Flags)
			}
		},
	}, {
		name: "all kernel flags",
		mod: func(r *execRecord) {
			r.flags = kArgsTrunc | kPathTrunc | kCwdTrunc | kPathUnlinked | kCwdUnlinked | kFilenameTrunc | kImageReplaced
		},
		check: func(t *testing.T, e *Event) {
			want := ArgsTruncated | PathTruncated | CwdTruncated | Deleted | CwdDeleted | FilenameTruncated | ImageReplaced
			if e.Exec.Flags != want {
				t.Errorf("flags %v, want %v", e.Exec.Flags, want)
			}
		},
	}, {
		name: "argv cut in the kernel",
		mod:  func(r *execRecord) { r.args = "/bin/true\x00\x00abc"; r.flags = kArgsTrunc },
		check: func(t *testing.T, e *Event) {
			if !slices.Equal(e.Exec.Args, []string{"/bin/true", "", "abc"}) || e.Exec.Flags != ArgsTruncated {
				t.Errorf("args %q flags %v", e.Exec.Args, e.Exec.Flags)
			}
		},
	}, {
		name: "more args than MaxArgs",
		mod:  func(r *execRecord) { r.args = "a\x00b\x00c\x00d\x00" },
		check: func(t *testing.T, e *Event) {
			if !slices.Equal(e.Exec.Args, []string{"a", "b", "c"}) || e.Exec.Flags != ArgsTruncated {
				t.Errorf("args %q flags %v", e.Exec.Args, e.Exec.Flags)
			}
		},
	}, {
		name: "exactly MaxArgs",
		mod:  func(r *execRecord) { r.args = "a\x00b\x00c\x00" },
		check: func(t *testing.T, e *Event) {
			if !slices.Equal(e.Exec.Args, []string{"a", "b", "c"}) || e.Exec.Flags != 0 {
				t.Errorf("args %q flags %v", e.Exec.Args, e.Exec.Flags)
			}
		},
	}, {
		name: "no argv",
		mod:  func(r *execRecord) { r.args = "" },
		check: func(t *testing.T, e *Event) {
			if e.Exec.Args != nil {
				t.Errorf("args %q", e.Exec.Args)
			}
		},
	}, {
		name: "sections longer than the record",
		mod:  func(r *execRecord) { r.extend = 1 },
		err:  true,
	}, {
		name: "path section without its NUL",
		mod:  func(r *execRecord) { r.pathLen = 4 },
		err:  true,
	}, {
		name: "cwd section without its NUL",
		mod:  func(r *execRecord) { r.cwdLen = 1 },
		err:  true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := base
			if tc.mod != nil {
				tc.mod(&r)
			}
			var e Event
			err := d.decode(r.bytes(), &e)
			if tc.err {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("decode: %v, want errMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, &e)
		})
	}
}

func equalEvents(a, b Event) bool {
	if !slices.Equal(a.Exec.Args, b.Exec.Args) || !a.Time.Equal(b.Time) {
		return false
	}
	a.Exec.Args, b.Exec.Args = nil, nil
	a.Time, b.Time = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func forkRecord() []byte {
	b := make([]byte, forkSize)
	ne.PutUint64(b[0:], 2e9)
	ne.PutUint32(b[8:], uint32(KindFork))
	ne.PutUint32(b[12:], 10)
	ne.PutUint32(b[16:], 11)
	ne.PutUint32(b[20:], 12)
	ne.PutUint64(b[24:], 3e9)
	return b
}

func exitRecord(status uint32) []byte {
	b := make([]byte, exitSize)
	ne.PutUint64(b[0:], 2e9)
	ne.PutUint32(b[8:], uint32(KindExit))
	ne.PutUint32(b[12:], 10)
	ne.PutUint32(b[16:], 10)
	ne.PutUint32(b[20:], status)
	ne.PutUint64(b[24:], 3e9)
	return b
}

func TestDecodeForkExit(t *testing.T) {
	d := decoder{maxArgs: 1}
	var e Event
	e.Exec.Path = "stale" // decode must clear what the previous event left
	if err := d.decode(forkRecord(), &e); err != nil {
		t.Fatal(err)
	}
	want := Event{Kind: KindFork, Time: time.Unix(2, 0), PID: 10, TID: 11, Fork: Fork{ChildPID: 12, ChildStart: 3 * time.Second}}
	if !equalEvents(e, want) {
		t.Errorf("fork: got %+v, want %+v", e, want)
	}
	for _, tc := range []struct {
		status       uint32
		code, signal int
		core         bool
	}{
		{0, 0, 0, false},
		{7 << 8, 7, 0, false},
		{255 << 8, 255, 0, false},
		{9, 0, 9, false},
		{11 | 0x80, 0, 11, true},
	} {
		if err := d.decode(exitRecord(tc.status), &e); err != nil {
			t.Fatal(err)
		}
		x := e.Exit
		if e.Kind != KindExit || e.PID != 10 || x.Start != 3*time.Second || x.Status != tc.status ||
			x.Code() != tc.code || x.Signal() != tc.signal || x.CoreDumped() != tc.core {
			t.Errorf("exit %#x: %+v code %d signal %d core %v", tc.status, e, x.Code(), x.Signal(), x.CoreDumped())
		}
	}
	for _, raw := range [][]byte{nil, make([]byte, 19), forkRecord()[:forkSize-1], exitRecord(0)[:exitSize-1],
		execRecord{}.bytes()[:execHeaderSize-1], func() []byte { b := forkRecord(); b[8] = 9; return b }()} {
		if err := d.decode(raw, &e); !errors.Is(err, errMalformed) {
			t.Errorf("decode(%d bytes): %v, want errMalformed", len(raw), err)
		}
	}
}

func TestFlagsString(t *testing.T) {
	for f, want := range map[Flags]string{
		0:                                 "0",
		Deleted:                           "Deleted",
		MemFD | Detached:                  "MemFD|Detached",
		ArgsTruncated | FilenameTruncated: "ArgsTruncated|FilenameTruncated",
		CwdDeleted | 1<<10:                "CwdDeleted|0x400",
		ImageReplaced | MemFD:             "MemFD|ImageReplaced",
	} {
		if got := f.String(); got != want {
			t.Errorf("%#x: %q, want %q", uint32(f), got, want)
		}
	}
}

func TestKindString(t *testing.T) {
	got := []string{KindExec.String(), KindFork.String(), KindExit.String(), Kind(9).String()}
	if !slices.Equal(got, []string{"exec", "fork", "exit", "kind(9)"}) {
		t.Errorf("%q", got)
	}
}

// BenchmarkDecode decodes records as Run does. An exec allocates its one
// string and its Args; fork and exit allocate nothing.
func BenchmarkDecode(b *testing.B) {
	exe := execRecord{
		path: []string{"true", "bin", "usr"}, cwd: []string{"sensor", "process", "collector", "daemoneye", "work"},
		filename: "/bin/true", args: "/bin/true\x00--flag\x00" + strings.Repeat("x", 40) + "\x00",
	}.bytes()
	d := decoder{maxArgs: DefaultMaxArgs}
	for _, bc := range []struct {
		name string
		raw  []byte
	}{{"exec", exe}, {"fork", forkRecord()}, {"exit", exitRecord(7 << 8)}} {
		b.Run(bc.name, func(b *testing.B) {
			var e Event
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.raw)))
			for b.Loop() {
				if err := d.decode(bc.raw, &e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
