//go:build linux

package sensor

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// live returns a Sensor for a test that needs the kernel, or skips the
// test when this process cannot load BPF programs (not root, no BTF).
func live(t testing.TB, opts Options) *Sensor {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the eBPF network sensor needs root (or CAP_BPF and CAP_PERFMON): run go test as root to test it")
	}
	if _, err := os.Stat(kernelBTF); err != nil {
		t.Skipf("the eBPF network sensor needs kernel BTF (%v)", err)
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

var errFound = errors.New("found")

// find runs s until an event satisfies match, and returns it; it fails the
// test after 10 s.
func find(t *testing.T, s *Sensor, what string, match func(*Event) bool) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got Event
	err := s.Run(ctx, func(e *Event) error {
		if match(e) {
			got = *e
			return errFound
		}
		return nil
	})
	if err != errFound {
		t.Fatalf("no %s event within 10 s: %v", what, err)
	}
	return got
}

// checkContext checks the process context of an event of this process.
func checkContext(t *testing.T, e Event, before time.Time) {
	t.Helper()
	if int(e.PID) != os.Getpid() || e.UID != uint32(os.Getuid()) || e.GID != uint32(os.Getgid()) {
		t.Errorf("%v: pid %d uid %d gid %d, want %d %d %d", e.Kind, e.PID, e.UID, e.GID, os.Getpid(), os.Getuid(), os.Getgid())
	}
	if e.CommString() != "sensor.test" || e.CgroupID == 0 || e.Start <= 0 || e.TID == 0 {
		t.Errorf("%v: comm %q cgroup %d start %v tid %d", e.Kind, e.CommString(), e.CgroupID, e.Start, e.TID)
	}
	if e.Time.Before(before.Add(-time.Second)) || e.Time.After(time.Now().Add(time.Second)) {
		t.Errorf("%v: time %v, not between %v and now", e.Kind, e.Time, before)
	}
}

// TCP listen, connect and accept over IPv4 and IPv6 loopback, each seen
// with this process, its ports and addresses.
func TestTCP(t *testing.T) {
	s := live(t, Options{})
	for _, c := range []struct {
		network, addr string
		family        uint16
	}{
		{"tcp4", "127.0.0.1:0", FamilyIPv4},
		{"tcp6", "[::1]:0", FamilyIPv6},
	} {
		t.Run(c.network, func(t *testing.T) {
			before := time.Now()
			l, err := net.Listen(c.network, c.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			laddr := l.Addr().(*net.TCPAddr).AddrPort()
			conn, err := net.Dial(c.network, laddr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			caddr := conn.LocalAddr().(*net.TCPAddr).AddrPort()
			a, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			a.Close()

			want := map[Kind][2]netip.AddrPort{
				KindListen:  {laddr, netip.AddrPortFrom(netip.IPv6Unspecified(), 0)},
				KindConnect: {caddr, laddr},
				KindAccept:  {laddr, caddr},
			}
			if c.family == FamilyIPv4 {
				want[KindListen] = [2]netip.AddrPort{laddr, netip.AddrPortFrom(netip.IPv4Unspecified(), 0)}
			}
			got := map[Kind]Event{}
			find(t, s, "listen, connect and accept", func(e *Event) bool {
				if _, ok := want[e.Kind]; ok && (e.Local == laddr || e.Local == caddr) {
					got[e.Kind] = *e
				}
				return len(got) == len(want)
			})
			for kind, addrs := range want {
				e := got[kind]
				checkContext(t, e, before)
				if e.Family != c.family || e.Protocol != ProtocolTCP || e.Local != addrs[0] || e.Remote != addrs[1] || e.Result != 0 || e.Cookie == 0 {
					t.Errorf("%v: family %d protocol %d %v -> %v result %d cookie %d; want %d %d %v -> %v 0",
						kind, e.Family, e.Protocol, e.Local, e.Remote, e.Result, e.Cookie, c.family, ProtocolTCP, addrs[0], addrs[1])
				}
			}
		})
	}
}

// A connect refused (no listener) is reported with -ECONNREFUSED.
func TestTCPConnectRefused(t *testing.T) {
	s := live(t, Options{})
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	if c, err := net.Dial("tcp4", addr.String()); err == nil {
		c.Close()
		t.Fatal("connect to a closed port succeeded")
	}
	e := find(t, s, "refused connect", func(e *Event) bool { return e.Kind == KindConnect && e.Remote == addr })
	if e.Result != -int32(unix.ECONNREFUSED) {
		t.Errorf("result %d, want %d", e.Result, -int32(unix.ECONNREFUSED))
	}
}

// UDP: the first sendto of a socket, IPv4 and IPv6, with its destination;
// a later send of the same socket is not reported; a connected socket's
// first write is, with its peer.
func TestUDP(t *testing.T) {
	s := live(t, Options{})
	for _, c := range []struct {
		network, local string
		dst            netip.AddrPort
		family         uint16
	}{
		{"udp4", "127.0.0.1:0", netip.MustParseAddrPort("127.0.0.1:9"), FamilyIPv4},
		{"udp6", "[::1]:0", netip.MustParseAddrPort("[::1]:9"), FamilyIPv6},
	} {
		t.Run(c.network+" sendto", func(t *testing.T) {
			before := time.Now()
			pc, err := net.ListenPacket(c.network, c.local)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			local := pc.LocalAddr().(*net.UDPAddr).AddrPort()
			for i := range 2 {
				dst := netip.AddrPortFrom(c.dst.Addr(), c.dst.Port()+uint16(i))
				if _, err := pc.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(dst)); err != nil {
					t.Fatal(err)
				}
			}
			e := find(t, s, "udp send", func(e *Event) bool { return e.Kind == KindUDPSend && e.Local == local })
			checkContext(t, e, before)
			if e.Family != c.family || e.Protocol != ProtocolUDP || e.Remote != c.dst || e.Result != 1 {
				t.Errorf("family %d protocol %d %v -> %v result %d; want %d %d %v -> %v 1", e.Family, e.Protocol, e.Local, e.Remote, e.Result,
					c.family, ProtocolUDP, local, c.dst)
			}
			// The second send (to port+1) is not reported: a marker
			// socket's send comes first.
			marker, err := net.ListenPacket(c.network, c.local)
			if err != nil {
				t.Fatal(err)
			}
			defer marker.Close()
			mlocal := marker.LocalAddr().(*net.UDPAddr).AddrPort()
			marker.WriteTo([]byte("m"), net.UDPAddrFromAddrPort(c.dst))
			e = find(t, s, "marker send", func(e *Event) bool { return e.Kind == KindUDPSend && (e.Local == local || e.Local == mlocal) })
			if e.Local != mlocal {
				t.Errorf("a second send on the socket was reported: %v -> %v", e.Local, e.Remote)
			}
		})
		t.Run(c.network+" connect", func(t *testing.T) {
			before := time.Now()
			conn, err := net.DialUDP(c.network, nil, net.UDPAddrFromAddrPort(c.dst))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
			if _, err := conn.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			e := find(t, s, "udp connected send", func(e *Event) bool { return e.Kind == KindUDPSend && e.Local == local })
			checkContext(t, e, before)
			if e.Family != c.family || e.Remote != c.dst {
				t.Errorf("family %d %v -> %v; want %d %v -> %v", e.Family, e.Local, e.Remote, c.family, local, c.dst)
			}
		})
	}
}

// Nothing is reported once the sensor is closed, and Run says so.
func TestClosed(t *testing.T) {
	s := live(t, Options{})
	s.Close()
	if err := s.Run(t.Context(), func(*Event) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Read(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close = %v, want ErrClosed", err)
	}
}

// A tiny ring buffer that nobody reads loses events, and the kernel
// counts them by kind.
func TestLossCounted(t *testing.T) {
	s := live(t, Options{RingBytes: os.Getpagesize()})
	for range 200 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pc.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9})
		pc.Close()
	}
	st := s.Stats()
	if st.LostUDPSend == 0 || st.Lost != st.LostConnect+st.LostAccept+st.LostListen+st.LostUDPSend {
		t.Errorf("stats %+v: want UDP sends lost", st)
	}
}

func TestOpenOptions(t *testing.T) {
	for _, o := range []Options{{RingBytes: 1000}, {RingBytes: 3 * os.Getpagesize()}, {UDPSockets: -1}} {
		if _, err := Open(o); !errors.Is(err, ErrOptions) {
			t.Errorf("Open(%+v) = %v, want ErrOptions", o, err)
		}
	}
}

func TestRunContext(t *testing.T) {
	s := live(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Run(ctx, func(*Event) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}
