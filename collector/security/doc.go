// Package security turns the eBPF security sensor's events
// (collector/security/sensor) into CollectionEvent envelopes carrying a
// SecurityEventData, and publishes them on events.process.anomaly.<kind>
// (topics.SecurityPtrace, SecurityModule, SecurityCredentials,
// SecurityMemfd, SecurityBPF, SecurityMount, SecurityNamespace,
// SecurityProcMem). procmond hosts it (its --security flag) next to its
// process collector, when the kernel runs eBPF.
//
// A Runner is opened with Open and read with Run, which hands each
// envelope to a publish function (client.Conn.PublishMsg in procmond);
// Stats gives the sensor's losses (in the kernel's ring buffer) and the
// publish outcomes for health reports and heartbeats.
//
// Each event carries the caller's executable path, read from
// /proc/<pid>/exe when the event is handled, and cached per (pid, process
// start time), so that a process reported many times (a debugger poking)
// is read once and a reused pid is not given another process's path. A
// process that has exited by then has no path (empty).
//
// Cost: the sensor filters in the kernel and decodes without allocating;
// an event that is published allocates its envelope (a few hundred bytes),
// as every envelope on the bus does. Security events are rare (a busy host
// makes a few per second: container starts mount and unshare, sudo
// changes credentials), so this is not a hot path.
package security
