package sensor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Kind says what an Event reports.
type Kind uint8

// The kinds of Event. Their values are those the BPF programs write.
const (
	// KindConnect is an outbound TCP connect (connect(2) on a TCP socket),
	// reported when its handshake ends, with the context of the thread
	// that called connect(2): Result is 0 when the connection was
	// established, or a negative errno when it failed (-ECONNREFUSED,
	// -ETIMEDOUT; -ECONNABORTED when the socket was closed first). A
	// connect that never ends (the socket is leaked in SYN_SENT) is not
	// reported.
	KindConnect Kind = 1
	// KindAccept is an inbound TCP connection, reported when the kernel
	// completes its handshake and queues it for accept(2), with the
	// context of the thread that made the listening socket listen (the
	// process that accepts it, unless it handed the socket on): Local is
	// the listener's address, Remote the peer. A connection to a socket
	// that listened before the sensor opened has no process context (PID
	// 0).
	KindAccept Kind = 2
	// KindListen is a TCP socket that listens (listen(2)): Local is its
	// address. A socket that was not bound before listen(2) has port 0
	// (the kernel picks one just after).
	KindListen Kind = 3
	// KindUDPSend is the first send on a UDP socket (sendto(2),
	// sendmsg(2), sendmmsg(2), write(2) on a connected one): Remote is the
	// destination of that send (the connected peer after a connect(2)),
	// Result its return (bytes sent or -errno). Later sends on the socket
	// are not reported. A UDP connect(2) sends nothing and is seen at the
	// socket's first send.
	KindUDPSend Kind = 4
)

// String returns "connect", "accept", "listen", "udp_send" or "kind(N)".
func (k Kind) String() string {
	switch k {
	case KindConnect:
		return "connect"
	case KindAccept:
		return "accept"
	case KindListen:
		return "listen"
	case KindUDPSend:
		return "udp_send"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Address families and protocols as the kernel numbers them.
const (
	FamilyIPv4 = 2  // AF_INET
	FamilyIPv6 = 10 // AF_INET6

	ProtocolTCP = 6  // IPPROTO_TCP
	ProtocolUDP = 17 // IPPROTO_UDP
)

// CommLen is the size of Event.Comm (TASK_COMM_LEN).
const CommLen = 16

// Event is one network event, in the context of the thread that made the
// call. It holds no pointer: copying it allocates nothing.
type Event struct {
	// Kind says what happened.
	Kind Kind
	// Time is when the kernel saw it (CLOCK_BOOTTIME, converted to wall
	// time with the offset taken when the sensor opened).
	Time time.Time
	// PID is the process id (tgid) in the initial pid namespace; TID the
	// thread.
	PID, TID uint32
	// UID and GID are the thread's real user and group ids.
	UID, GID uint32
	// Start is the process's start time since boot (CLOCK_BOOTTIME, as
	// task->start_boottime): with the PID it identifies the process.
	Start time.Duration
	// CgroupID is the cgroup v2 id of the thread (the inode number of its
	// directory in the cgroup2 file system).
	CgroupID uint64
	// Comm is the thread's name (comm), NUL-padded; CommString returns it
	// as a string.
	Comm [CommLen]byte
	// Cookie is the socket's cookie (SO_COOKIE), unique while the system
	// runs: it ties a connect's or an accept's later events to the socket.
	Cookie uint64
	// Family is FamilyIPv4 or FamilyIPv6: the socket's family. An IPv6
	// socket talking to an IPv4 peer has IPv4-mapped IPv6 addresses.
	Family uint16
	// Protocol is ProtocolTCP or ProtocolUDP (or IPPROTO_UDPLITE, 136,
	// for a UDP-Lite socket).
	Protocol uint16
	// Local and Remote are the socket's local address and its peer. An
	// address or port the kernel has not chosen yet is zero (the local
	// address of an unbound UDP socket, the remote of a listener).
	Local, Remote netip.AddrPort
	// Result depends on Kind: a connect's result (0 or a negative
	// errno), a UDP send's return (bytes sent or a negative errno); 0
	// otherwise.
	Result int32
}

// CommString returns Comm up to its first NUL. It allocates.
func (e *Event) CommString() string {
	return string(e.CommBytes())
}

// CommBytes returns Comm up to its first NUL, as a slice of e.Comm.
func (e *Event) CommBytes() []byte {
	c := e.Comm[:]
	if i := bytes.IndexByte(c, 0); i >= 0 {
		c = c[:i]
	}
	return c
}

// errMalformed is returned by decode for a record that is not the layout
// of bpf/network.bpf.c.
var errMalformed = errors.New("malformed sensor record")

// recordSize is the size of struct net_event in bpf/network.bpf.c.
const recordSize = 112

// decoder turns ring-buffer records into Events.
type decoder struct {
	wallOffset int64 // wall-clock ns minus CLOCK_BOOTTIME ns
}

var ne = binary.NativeEndian

// decode fills e from one record, allocating nothing.
func (d *decoder) decode(raw []byte, e *Event) error {
	if len(raw) < recordSize {
		return fmt.Errorf("%w: %d bytes, want %d", errMalformed, len(raw), recordSize)
	}
	k := ne.Uint32(raw[8:])
	if k < uint32(KindConnect) || k > uint32(KindUDPSend) {
		return fmt.Errorf("%w: kind %d", errMalformed, k)
	}
	family := ne.Uint16(raw[56:])
	var local, remote netip.Addr
	switch family {
	case FamilyIPv4:
		local = netip.AddrFrom4([4]byte(raw[64:68]))
		remote = netip.AddrFrom4([4]byte(raw[80:84]))
	case FamilyIPv6:
		local = netip.AddrFrom16([16]byte(raw[64:80]))
		remote = netip.AddrFrom16([16]byte(raw[80:96]))
	default:
		return fmt.Errorf("%w: address family %d", errMalformed, family)
	}
	*e = Event{
		Kind:     Kind(k),
		Time:     time.Unix(0, d.wallOffset+int64(ne.Uint64(raw[0:]))),
		PID:      ne.Uint32(raw[12:]),
		TID:      ne.Uint32(raw[16:]),
		UID:      ne.Uint32(raw[20:]),
		GID:      ne.Uint32(raw[24:]),
		Result:   int32(ne.Uint32(raw[28:])),
		CgroupID: ne.Uint64(raw[32:]),
		Start:    time.Duration(ne.Uint64(raw[40:])),
		Cookie:   ne.Uint64(raw[48:]),
		Family:   family,
		Protocol: ne.Uint16(raw[58:]),
		Local:    netip.AddrPortFrom(local, ne.Uint16(raw[60:])),
		Remote:   netip.AddrPortFrom(remote, ne.Uint16(raw[62:])),
		Comm:     [CommLen]byte(raw[96:112]),
	}
	return nil
}
