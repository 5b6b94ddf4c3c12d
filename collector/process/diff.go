package process

import (
	"bytes"
	"slices"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
)

// Change is one lifecycle event found by comparing two scans.
type Change struct {
	Subtype eventbusv1.ProcessEventSubtype
	// Key is the process's pid and start time.
	Key Key
	// Record is the process as the latest scan saw it; for TERMINATED, as
	// the previous one did.
	Record *eventbusv1.ProcessRecord
	// Changed names the ProcessRecord fields that changed, for UPDATED.
	Changed []string
	// KernelEvent is the kernel event a change from the eBPF sensor came
	// from; UNSPECIFIED for a change a scan found.
	KernelEvent eventbusv1.ProcessKernelEvent
	// ImageReplaced: for an EXEC, the exec replaced the image of a process
	// that had exec'd already.
	ImageReplaced bool
	// ExitStatus is the raw wait status of an EXIT.
	ExitStatus uint32
}

// Diff compares two scans (keyed by pid and start time, so a reused pid
// is a new process) and returns what happened in between, ordered by pid:
// CREATED for new processes, TERMINATED for those gone, UPDATED for those
// whose name, executable (path, or deleted or replaced on disk), user or
// command line changed. With no previous scan (prev nil), every process
// is OBSERVED.
func Diff(prev, cur map[Key]*eventbusv1.ProcessRecord) []Change {
	var out []Change
	for k, r := range cur {
		if prev == nil {
			out = append(out, Change{Subtype: eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_OBSERVED, Key: k, Record: r})
			continue
		}
		old, ok := prev[k]
		if !ok {
			out = append(out, Change{Subtype: eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED, Key: k, Record: r})
			continue
		}
		if changed := changedFields(old, r); len(changed) > 0 {
			out = append(out, Change{Subtype: eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_UPDATED, Key: k, Record: r, Changed: changed})
		}
	}
	for k, r := range prev {
		if _, ok := cur[k]; !ok {
			out = append(out, Change{Subtype: eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED, Key: k, Record: r})
		}
	}
	slices.SortFunc(out, func(a, b Change) int {
		if a.Record.GetPid() != b.Record.GetPid() {
			return int(a.Record.GetPid()) - int(b.Record.GetPid())
		}
		return int(a.Subtype) - int(b.Subtype)
	})
	return out
}

// changedFields lists the watched fields that differ between two records
// of one process. A field that could not be read in one of them (an
// inaccessible process) does not count as changed.
func changedFields(a, b *eventbusv1.ProcessRecord) []string {
	var out []string
	if a.GetName() != b.GetName() {
		out = append(out, "name")
	}
	if a.GetExecutablePath() != b.GetExecutablePath() && a.GetExecutablePath() != "" && b.GetExecutablePath() != "" {
		out = append(out, "executable_path")
	}
	if a.GetExecutableDeleted() != b.GetExecutableDeleted() {
		out = append(out, "executable_deleted")
	}
	if a.Uid != nil && b.Uid != nil && a.GetUid() != b.GetUid() {
		out = append(out, "uid")
	}
	if a.CommandLine != nil && b.CommandLine != nil && !slices.Equal(a.CommandLine, b.CommandLine) {
		out = append(out, "command_line")
	}
	if len(a.GetExecutableHash()) > 0 && len(b.GetExecutableHash()) > 0 && (!bytes.Equal(a.GetExecutableHash(), b.GetExecutableHash()) || a.GetHashAlgorithm() != b.GetHashAlgorithm()) {
		out = append(out, "executable_hash")
	}
	return out
}
