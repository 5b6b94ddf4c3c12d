// Package network is netmond's collector: it reads the eBPF network
// sensor (package collector/network/sensor) and publishes each event as a
// CollectionEvent{network: NetworkEventData} envelope, answers the
// collector control operations (health, capabilities, configuration,
// shutdown) on control.collector.+.<id> and sends heartbeats on
// control.health.heartbeat.<id>, with the sensor's loss counters in both.
//
// # Topics
//
// Under events.network.connections (topics.NetworkConnections):
//
//   - .opened: an outbound TCP connect, when its handshake ended:
//     state ESTABLISHED and subtype CONNECTION_OPENED, or state CLOSED and
//     subtype STATE_CHANGED when it failed (refused, timed out, aborted);
//   - .accepted: an inbound TCP connection queued for accept(2): state
//     ESTABLISHED, subtype CONNECTION_OPENED,
//     connection_metadata.inbound true; its process is the one that made
//     the socket listen;
//   - .listening: a TCP socket that listens: state LISTEN, subtype
//     LISTEN_STARTED;
//   - .udp: the first send of a UDP socket: subtype CONNECTION_OPENED,
//     state UNSPECIFIED, the remote being that send's destination.
//
// Every NetworkRecord has protocol, local and remote address and port,
// pid, process_name, uid, executable_path, cgroup_id, container_id,
// ip_version, process_start_time and collection_time (when the kernel saw
// the event). connection_metadata.inbound tells accepted connections from
// the others, and first_seen is the event's time.
//
// # Process context
//
// The sensor gives pid, uid, the thread's comm, cgroup id and the
// process's start time. The executable path (/proc/<pid>/exe), the
// process name (/proc/<pid>/comm) and the container id (64 hex digits in
// /proc/<pid>/cgroup) are read from /proc at the first event of a process
// and cached by (pid, start time), so later events of the process read
// nothing; a process gone before its first event keeps only what the
// sensor gave. The cache holds up to 4096 processes and is emptied when
// full.
//
// # Concurrency and cost
//
// Run owns two goroutines (the RPC server's and the sensor reader's) and
// waits for them. The event-to-envelope path (BenchmarkEnvelope) reads no
// file for a cached process; it allocates the envelope's messages, which
// the connection keeps until it sends them, and the address strings.
package network
