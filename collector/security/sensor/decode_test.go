package sensor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// TestLayout compares the record layouts decode assumes with the structs
// compiled into the BPF object (its BTF has those the scratch map's value
// holds), so that a change to one side only fails here. The other records
// (ptrace, bpf, namespace, procmem) are not in the BTF; the live tests
// check each of their fields.
func TestLayout(t *testing.T) {
	spec, err := loadSecurity()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		size    int
		offsets map[string]uint32
	}{
		{"header", headerSize, map[string]uint32{"time": 0, "kind": 8, "pid": 12, "tid": 16, "uid": 20, "euid": 24,
			"flags": 28, "cgroup": 32, "start": 40, "comm": commOffset, "ret": 64}},
		{"module_event", moduleSize, map[string]uint32{"h": 0, "op": 72, "fd": 76, "name_len": 80, "pad": 84, "name": moduleName}},
		{"creds_event", credsSize, map[string]uint32{"h": 0, "op": 72, "pad": 76, "old": 80, "new": 112}},
		{"cred_ids", 32, map[string]uint32{"uid": 0, "euid": 4, "gid": 8, "egid": 12, "cap_eff": 16, "cap_prm": 24}},
		{"memfd_event", memfdSize, map[string]uint32{"h": 0, "mfd_flags": 72, "name_len": 76, "name": memfdName}},
		{"mount_event", mountSize, map[string]uint32{"h": 0, "op": 72, "pad": 76, "mnt_flags": 80, "source_len": 88,
			"fstype_len": 90, "target_len": 92, "pad2": 94, "source": mountSource, "fstype": mountFSType, "target": mountTarget}},
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

// The naive oracle: the records as Go structs of the C layout, read with
// encoding/binary, and strings cut at their length and first NUL with the
// strings package.
type oHeader struct {
	Time                      uint64
	Kind, PID, TID, UID, EUID uint32
	Flags                     uint32
	Cgroup, Start             uint64
	Comm                      [16]byte
	Ret                       int64
}

type oCred struct {
	UID, EUID, GID, EGID uint32
	Eff, Prm             uint64
}

type oPtrace struct {
	H             oHeader
	Request, Addr uint64
	Target, Pad   uint32
}

type oModule struct {
	H            oHeader
	Op           uint32
	FD           int32
	NameLen, Pad uint32
	Name         [64]byte
}

type oCreds struct {
	H        oHeader
	Op, Pad  uint32
	Old, New oCred
}

type oMemfd struct {
	H              oHeader
	Flags, NameLen uint32
	Name           [256]byte
}

type oBPF struct {
	H             oHeader
	ProgType, Pad uint32
	Name          [16]byte
}

type oMount struct {
	H                                  oHeader
	Op, Pad                            uint32
	Flags                              uint64
	SourceLen, FSTypeLen, TargetLen, P uint16
	Source                             [256]byte
	FSType                             [64]byte
	Target                             [1024]byte
}

type oNS struct {
	H     oHeader
	Op    uint32
	FD    int32
	Flags uint64
}

type oProcMem struct {
	H       oHeader
	Target  uint32
	FD      int32
	Flags   uint64
	Op, Pad uint32
	Count   uint64
	Pos     int64
}

// ostr is the oracle's string: b's first n bytes up to a NUL; ok is false
// when n is over len(b).
func ostr(b []byte, n int) (string, bool) {
	if n > len(b) {
		return "", false
	}
	s, _, _ := strings.Cut(string(b[:n]), "\x00")
	return s, true
}

// oracle decodes raw naively; ok is false for a malformed record.
func oracle(raw []byte) (Event, bool) {
	var h oHeader
	if binary.Read(bytes.NewReader(raw), binary.NativeEndian, &h) != nil {
		return Event{}, false
	}
	var e Event
	if h.Kind > 255 {
		return e, false
	}
	e.Kind = Kind(h.Kind)
	e.BootNS, e.PID, e.TID, e.UID, e.EUID = h.Time, h.PID, h.TID, h.UID, h.EUID
	e.Flags = Flags(h.Flags) & (NameTruncated | SourceTruncated | TargetTruncated)
	e.CgroupID, e.Start, e.Result = h.Cgroup, h.Start, h.Ret
	comm, _ := ostr(h.Comm[:], 16)
	e.Comm = []byte(comm)
	read := func(v any) bool {
		return binary.Size(v) == len(raw) && binary.Read(bytes.NewReader(raw), binary.NativeEndian, v) == nil
	}
	ok := true
	switch e.Kind {
	case KindPtrace:
		var r oPtrace
		if !read(&r) {
			return e, false
		}
		e.Ptrace = Ptrace{Request: r.Request, Addr: r.Addr, TargetPID: r.Target}
	case KindModule:
		var r oModule
		if !read(&r) {
			return e, false
		}
		var name string
		name, ok = ostr(r.Name[:], int(r.NameLen))
		e.Module = Module{Syscall: Syscall(r.Op), FD: r.FD, Name: []byte(name)}
	case KindCredentials:
		var r oCreds
		if !read(&r) {
			return e, false
		}
		c := func(o oCred) Cred { return Cred{o.UID, o.EUID, o.GID, o.EGID, o.Eff, o.Prm} }
		e.Creds = Creds{Syscall: Syscall(r.Op), Old: c(r.Old), New: c(r.New)}
	case KindMemfd:
		var r oMemfd
		if !read(&r) {
			return e, false
		}
		var name string
		name, ok = ostr(r.Name[:], int(r.NameLen))
		e.Memfd = Memfd{Flags: r.Flags, Name: []byte(name)}
	case KindBPF:
		var r oBPF
		if !read(&r) {
			return e, false
		}
		name, _ := ostr(r.Name[:], 16)
		e.BPF = BPFLoad{ProgType: r.ProgType, Name: []byte(name)}
	case KindMount:
		var r oMount
		if !read(&r) {
			return e, false
		}
		src, ok1 := ostr(r.Source[:], int(r.SourceLen))
		fst, ok2 := ostr(r.FSType[:], int(r.FSTypeLen))
		tgt, ok3 := ostr(r.Target[:], int(r.TargetLen))
		ok = ok1 && ok2 && ok3
		e.Mount = Mount{Syscall: Syscall(r.Op), Flags: r.Flags, Source: []byte(src), FSType: []byte(fst), Target: []byte(tgt)}
		if r.Op == uint32(SysMount) && r.Flags&MsBind != 0 && naiveBelowProc(tgt) {
			e.Flags |= BindOverProcPID
		}
	case KindNamespace:
		var r oNS
		if !read(&r) {
			return e, false
		}
		e.Namespace = Namespace{Syscall: Syscall(r.Op), FD: r.FD, Flags: r.Flags}
	case KindProcMem:
		var r oProcMem
		if !read(&r) {
			return e, false
		}
		e.ProcMem = ProcMem{Syscall: Syscall(r.Op), TargetPID: r.Target, FD: r.FD, OpenFlags: r.Flags, Count: r.Count, Pos: r.Pos}
	default:
		return e, false
	}
	return e, ok
}

// naiveBelowProc: split on "/", drop empty and "." parts.
func naiveBelowProc(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	var parts []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			parts = append(parts, c)
		}
	}
	if len(parts) < 2 || parts[0] != "proc" {
		return false
	}
	return strings.Trim(parts[1], "0123456789") == ""
}

// record builds a record of kind k with the oracle's struct v.
func record(v any) []byte {
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, v); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func hdr(k Kind) oHeader {
	h := oHeader{Time: 1e9, Kind: uint32(k), PID: 10, TID: 11, UID: 1000, EUID: 0, Cgroup: 7, Start: 5e8, Ret: -1}
	copy(h.Comm[:], "bash")
	return h
}

func mountRec(flags uint64, target string, tlen int) []byte {
	r := oMount{H: hdr(KindMount), Op: uint32(SysMount), Flags: flags, SourceLen: 5, TargetLen: uint16(tlen)}
	copy(r.Source[:], "/tmp\x00")
	copy(r.Target[:], target)
	return record(&r)
}

func TestDecode(t *testing.T) {
	full := strings.Repeat("x", 256)
	m := oMemfd{H: hdr(KindMemfd), Flags: 3, NameLen: 256}
	copy(m.Name[:], full)
	for _, tc := range []struct {
		name string
		raw  []byte
		err  bool
		bind bool
	}{
		{"ptrace", record(&oPtrace{H: hdr(KindPtrace), Request: PtraceAttach, Target: 42}), false, false},
		{"memfd cut", record(&m), false, false},
		{"bind over /proc/1", mountRec(MsBind, "/proc/1\x00", 8), false, true},
		{"bind over /proc//12/./fd", mountRec(MsBind, "/proc//12/./fd\x00", 15), false, true},
		{"bind over /proc/self", mountRec(MsBind, "/proc/self\x00", 11), false, false},
		{"bind over /procx/1", mountRec(MsBind, "/procx/1\x00", 9), false, false},
		{"remount of /proc/1", mountRec(0, "/proc/1\x00", 8), false, false},
		{"relative proc/1", mountRec(MsBind, "proc/1\x00", 7), false, false},
		{"target length over", mountRec(MsBind, "/", 1025), true, false},
		{"short", make([]byte, 10), true, false},
		{"kind 0", record(&oNS{H: hdr(0)}), true, false},
		{"kind 9", record(&oNS{H: hdr(9)}), true, false},
		{"wrong size", append(record(&oNS{H: hdr(KindNamespace)}), 0), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d decoder
			var e Event
			err := d.decode(tc.raw, &e)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if err != nil {
				if !errors.Is(err, errMalformed) {
					t.Errorf("err %v does not wrap errMalformed", err)
				}
				return
			}
			if (e.Flags&BindOverProcPID != 0) != tc.bind {
				t.Errorf("BindOverProcPID %v, want %v (target %q)", e.Flags&BindOverProcPID != 0, tc.bind, e.Mount.Target)
			}
			want, _ := oracle(tc.raw)
			compare(t, &e, &want)
		})
	}
}

// compare fails unless e and want agree (Time aside).
func compare(t *testing.T, e, want *Event) {
	t.Helper()
	a, b := snapshot(e), snapshot(want)
	a.Time, b.Time = b.Time, a.Time
	a.Time = b.Time
	for _, p := range []*Event{&a, &b} {
		for _, s := range []*[]byte{&p.Comm, &p.Module.Name, &p.Memfd.Name, &p.BPF.Name, &p.Mount.Source, &p.Mount.FSType, &p.Mount.Target} {
			if len(*s) == 0 {
				*s = nil
			}
		}
	}
	if !eventsEqual(&a, &b) {
		t.Errorf("decode:\n%+v\noracle:\n%+v", a, b)
	}
}

func eventsEqual(a, b *Event) bool {
	eq := bytes.Equal
	return a.Kind == b.Kind && a.BootNS == b.BootNS && a.PID == b.PID && a.TID == b.TID && a.UID == b.UID &&
		a.EUID == b.EUID && a.Flags == b.Flags && a.CgroupID == b.CgroupID && a.Start == b.Start && eq(a.Comm, b.Comm) &&
		a.Result == b.Result && a.Ptrace == b.Ptrace && a.Module.Syscall == b.Module.Syscall && a.Module.FD == b.Module.FD &&
		eq(a.Module.Name, b.Module.Name) && a.Creds == b.Creds && a.Memfd.Flags == b.Memfd.Flags && eq(a.Memfd.Name, b.Memfd.Name) &&
		a.BPF.ProgType == b.BPF.ProgType && eq(a.BPF.Name, b.BPF.Name) && a.Mount.Syscall == b.Mount.Syscall &&
		a.Mount.Flags == b.Mount.Flags && eq(a.Mount.Source, b.Mount.Source) && eq(a.Mount.FSType, b.Mount.FSType) &&
		eq(a.Mount.Target, b.Mount.Target) && a.Namespace == b.Namespace && a.ProcMem == b.ProcMem
}

// FuzzDecode compares decode with the naive oracle on any record: both
// reject it, or both accept it with the same event.
func FuzzDecode(f *testing.F) {
	f.Add(record(&oPtrace{H: hdr(KindPtrace), Request: PtracePokeData, Target: 42}))
	f.Add(mountRec(MsBind, "/proc/1\x00", 8))
	f.Add(record(&oCreds{H: hdr(KindCredentials), Op: uint32(SysSetresuid), New: oCred{UID: 1}}))
	m := oMemfd{H: hdr(KindMemfd), NameLen: 4}
	copy(m.Name[:], "abc")
	f.Add(record(&m))
	f.Add(record(&oModule{H: hdr(KindModule), NameLen: 70}))
	f.Add(record(&oBPF{H: hdr(KindBPF)}))
	f.Add(record(&oNS{H: hdr(KindNamespace)}))
	f.Add(record(&oProcMem{H: hdr(KindProcMem)}))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var d decoder
		var e Event
		err := d.decode(raw, &e)
		want, ok := oracle(raw)
		if (err == nil) != ok {
			t.Fatalf("decode err %v, oracle ok %v", err, ok)
		}
		if ok {
			compare(t, &e, &want)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"ptrace", record(&oPtrace{H: hdr(KindPtrace), Request: PtraceAttach, Target: 42})},
		{"mount", mountRec(MsBind, "/proc/1234\x00", 11)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var d decoder
			var e Event
			b.ReportAllocs()
			for b.Loop() {
				if err := d.decode(tc.raw, &e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
