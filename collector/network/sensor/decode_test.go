package sensor

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// naiveDecode is the oracle: struct net_event read field by field with
// encoding/binary.Read.
func naiveDecode(raw []byte, wallOffset int64) (Event, bool) {
	var r struct {
		Time                     uint64
		Kind, PID, TID, UID, GID uint32
		Result                   int32
		Cgroup, Start, Cookie    uint64
		Family, Protocol         uint16
		LPort, RPort             uint16
		LAddr, RAddr             [16]byte
		Comm                     [16]byte
	}
	if binary.Size(r) != recordSize {
		panic("oracle layout")
	}
	if len(raw) < recordSize || binary.Read(bytes.NewReader(raw), binary.NativeEndian, &r) != nil {
		return Event{}, false
	}
	if r.Kind < 1 || r.Kind > 4 {
		return Event{}, false
	}
	var l, rm netip.Addr
	switch r.Family {
	case 2:
		l, rm = netip.AddrFrom4([4]byte(r.LAddr[:4])), netip.AddrFrom4([4]byte(r.RAddr[:4]))
	case 10:
		l, rm = netip.AddrFrom16(r.LAddr), netip.AddrFrom16(r.RAddr)
	default:
		return Event{}, false
	}
	return Event{Kind: Kind(r.Kind), Time: time.Unix(0, wallOffset+int64(r.Time)), PID: r.PID, TID: r.TID, UID: r.UID, GID: r.GID,
		Result: r.Result, CgroupID: r.Cgroup, Start: time.Duration(r.Start), Cookie: r.Cookie, Family: r.Family, Protocol: r.Protocol,
		Local: netip.AddrPortFrom(l, r.LPort), Remote: netip.AddrPortFrom(rm, r.RPort), Comm: r.Comm}, true
}

// record builds a record as the BPF program writes it.
func record(kind uint32, family uint16) []byte {
	b := make([]byte, recordSize)
	ne.PutUint64(b[0:], 5e9)
	ne.PutUint32(b[8:], kind)
	ne.PutUint32(b[12:], 100)
	ne.PutUint32(b[16:], 101)
	ne.PutUint32(b[20:], 1000)
	ne.PutUint32(b[24:], 1001)
	ne.PutUint32(b[28:], ^uint32(110)) // -111
	ne.PutUint64(b[32:], 77)
	ne.PutUint64(b[40:], 4e9)
	ne.PutUint64(b[48:], 12345)
	ne.PutUint16(b[56:], family)
	ne.PutUint16(b[58:], 6)
	ne.PutUint16(b[60:], 40000)
	ne.PutUint16(b[62:], 443)
	copy(b[64:], []byte{10, 0, 0, 1})
	copy(b[80:], []byte{192, 0, 2, 7})
	copy(b[96:], "curl")
	return b
}

func TestDecode(t *testing.T) {
	d := decoder{wallOffset: 1e18}
	for _, c := range []struct {
		name string
		raw  []byte
		ok   bool
		want Event
	}{
		{"connect v4", record(1, 2), true, Event{Kind: KindConnect, Time: time.Unix(0, 1e18+5e9), PID: 100, TID: 101, UID: 1000, GID: 1001,
			Result: -111, CgroupID: 77, Start: 4 * time.Second, Cookie: 12345, Family: FamilyIPv4, Protocol: ProtocolTCP,
			Local: netip.MustParseAddrPort("10.0.0.1:40000"), Remote: netip.MustParseAddrPort("192.0.2.7:443"), Comm: [16]byte{'c', 'u', 'r', 'l'}}},
		{"short", record(1, 2)[:recordSize-1], false, Event{}},
		{"kind 0", record(0, 2), false, Event{}},
		{"kind 5", record(5, 2), false, Event{}},
		{"family 1", record(1, 1), false, Event{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var e Event
			err := d.decode(c.raw, &e)
			if (err == nil) != c.ok || c.ok && e != c.want {
				t.Errorf("decode = %v\n%+v\nwant ok %v\n%+v", err, e, c.ok, c.want)
			}
			if c.ok && e.CommString() != "curl" {
				t.Errorf("comm %q", e.CommString())
			}
		})
	}
	var e Event
	if err := d.decode(record(4, 10), &e); err != nil || e.Local.Addr() != netip.AddrFrom16([16]byte{10, 0, 0, 1}) || e.Kind.String() != "udp_send" {
		t.Errorf("IPv6 record: %v %+v", err, e)
	}
}

func FuzzDecode(f *testing.F) {
	for k := uint32(0); k <= 5; k++ {
		f.Add(record(k, 2))
		f.Add(record(k, 10))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := decoder{wallOffset: 42}
		var e Event
		err := d.decode(raw, &e)
		want, ok := naiveDecode(raw, 42)
		if (err == nil) != ok {
			t.Fatalf("decode error %v, oracle ok %v", err, ok)
		}
		if ok && e != want {
			t.Fatalf("decode\n%+v\noracle\n%+v", e, want)
		}
	})
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindConnect: "connect", KindAccept: "accept", KindListen: "listen", KindUDPSend: "udp_send", 9: "kind(9)"} {
		if k.String() != want {
			t.Errorf("%d: %q, want %q", k, k.String(), want)
		}
	}
}

// BenchmarkDecode: a record to an Event, without allocating.
func BenchmarkDecode(b *testing.B) {
	d := decoder{}
	raw := record(1, 10)
	var e Event
	b.ReportAllocs()
	for b.Loop() {
		if err := d.decode(raw, &e); err != nil {
			b.Fatal(err)
		}
	}
}
