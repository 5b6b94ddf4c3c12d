// Package process is procmond's logic: it reads the processes from /proc,
// turns successive scans into lifecycle events, and publishes them as
// typed envelopes.
//
// A scan is bound by system calls (about 1 µs each on a small VM, several
// for the /proc files the kernel generates on every read), so the Scanner
// keeps each process's stat, status, cmdline and directory open between
// scans and re-reads them with pread, and parses them without allocating
// (github.com/prometheus/procfs is the fuzz tests' oracle for those
// parsers, and reads the boot time). Every scan reads stat, the exe link
// and the owner of the process's directory; status, cmdline and the
// executable's identity and hash are read again only when the process may
// have changed them (a new owner, that is a setuid; an exec, seen in stat;
// a new link), and periodically (see the constants in scan.go). See
// BENCHMARKS.md.
//
// A Scanner reads each process into an eventbusv1.ProcessRecord: pid,
// ppid, name, executable path, command line, start time, CPU use since the
// previous scan, resident and virtual memory, uid, gid and user name,
// whether the executable still exists, whether the running image was
// deleted or replaced on disk, and a SHA-256 of the image (read through
// /proc/<pid>/exe, so a deleted binary is still hashed) cached by device,
// inode, size and modification time. Its context (working directory,
// login uid, pid and mount namespaces, namespace pid, cgroup id and path,
// container id) is read when the scanner first sees a process and when it
// sees it exec, and carried over otherwise (a chdir or a cgroup move
// between execs is not followed); the terminal comes from stat at every
// scan. Without root, fields of other users' processes cannot be read: the
// record says accessible=false (the context fields are left empty
// without it).
//
// Diff compares two scans keyed by pid and start time (a reused pid is a
// new process): CREATED, TERMINATED, UPDATED (name, executable, user or
// command line changed, with the changed fields), or OBSERVED for every
// process of the first scan.
//
// A Collector runs the scanner on an interval, publishes the changes, one
// subtopic per subtype (envelope.ProcessTopic:
// events.process.enumeration.observed, events.process.lifecycle.created,
// events.process.lifecycle.terminated, events.process.metadata.updated;
// each with the parent's name and executable), sends heartbeats, and serves the collector control
// operations: health, capabilities, configuration (interval_ms,
// heartbeat_ms, hash), snapshots and shutdown.
//
// Options.Source says where the Collector learns of new processes:
// SourceEBPF publishes each exec as CREATED and each exit as TERMINATED as
// the eBPF sensor (package sensor) reports them (kernel_event EXEC or EXIT,
// image_replaced, the exit code or signal, and the context the kernel
// gave at the exec), enriched from /proc while
// the process exists (accessible=false when it was already gone), and
// keeps the scan to resync: the scan publishes only what the sensor did
// not, matching processes by pid and start time in clock ticks.
// SourceConnector does the same from the netlink process connector
// (connector.go), whose events carry pids only: each exec's process is
// read from /proc at once, and one already gone is published with its
// pid, parent and start time from its fork, accessible=false; a socket
// overflow (ENOBUFS) is counted and makes the collector scan at once.
// SourcePoll only scans; SourceAuto is SourceEBPF when the sensor opens,
// else SourceConnector when the connector subscribes, else SourcePoll.
//
// The Collector's goroutines are its caller's (Run), the rpc.Server's, and
// with the sensor or the connector its reader (which publishes what it
// reads); Run waits for them before it returns.
package process
