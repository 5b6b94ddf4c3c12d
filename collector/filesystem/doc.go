// Package filesystem is fsmond's logic: it runs the eBPF filesystem sensor
// (package sensor) and publishes what it reports as typed envelopes,
// answers the collector control operations and sends heartbeats. fsmond's
// program (its main, flags and the agent's wiring) is built on it
// elsewhere.
//
// # Topics
//
// Each event is a CollectionEvent{filesystem: FilesystemEventData} on one
// subtopic per operation (Topic):
//
//   - events.filesystem.operations.open_write, .create, .truncate,
//     .unlink, .rename, .chmod, .chown, .link, .symlink: writes to the
//     watched write sets;
//   - events.filesystem.access.read: read-only opens of the watched read
//     sets (sensitive files).
//
// A chmod that sets the setuid or setgid bit is published wherever the
// file is (events.filesystem.operations.chmod with setuid_set or
// setgid_set). Subscribe to events.filesystem.# for all of them. The subtype is the
// schema's coarse one (CREATED for create, link and symlink; MODIFIED for
// open_write and truncate; DELETED; RENAMED; ATTRIBUTES_CHANGED for chmod
// and chown; ACCESSED for read); FilesystemRecord.operation is the exact
// one. FilesystemRecord carries the path (the destination of a rename, the
// new name of a link), old_path, link_target, the acting process (pid,
// ppid, name, executable path, uid, euid, start time, cgroup id), chmod's
// new_mode with setuid_set and setgid_set, chown's new_uid and new_gid,
// the open flags and path_truncated; FileMetadata the file's type, mode,
// owner, size, inode and device as the kernel had them at the call (only
// for the calls that name a descriptor: opens, fchmod, fchown, ftruncate;
// the others are known by path only).
//
// # Cost
//
// The process name and executable path strings are cached per process
// (pid and start time), so that a process's events share them; each event
// allocates its path strings and its protobuf messages, which the bus
// keeps until it has sent them (BenchmarkConvert).
//
// # Watches
//
// Options.Watches (default sensor.DefaultWatches) are resolved when Run
// starts, every Options.ResolveInterval, and shortly after an event that
// may have created something a pattern matches (a create, rename, link or
// symlink in a watched directory).
//
// # Goroutines
//
// Run's own, the rpc.Server's, and the sensor's reader, which publishes
// what it reads; Run waits for them before it returns.
package filesystem
