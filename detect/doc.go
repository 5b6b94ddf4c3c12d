// Package detect evaluates detection rules on process events and raises
// alerts.
//
// A rule is a CEL expression (cel.dev/cel-go, the Common Expression
// Language) with an id, a title, a severity and a description. Rules are
// read from YAML (Parse, LoadFile: an unknown key, a duplicate id or an
// expression that does not compile to a boolean is refused with the rule's
// id and the CEL error); Builtin returns the rules DaemonEye ships.
//
// An expression sees these variables:
//
//	process         daemoneye.eventbus.v1.ProcessRecord: pid, ppid, name,
//	                executable_path, command_line, uid, user_name,
//	                executable_deleted, file_exists, executable_hash,
//	                cwd, tty, login_uid, container_id, ...
//	parent          daemoneye.eventbus.v1.ProcessTreeContext: parent_name,
//	                parent_executable_path (empty when unknown)
//	event           "observed", "created", "updated" or "terminated"
//	changed         for "updated": the ProcessRecord fields that changed
//	kernel_event    "exec" or "exit" for an event from the eBPF sensor,
//	                "" for one a /proc scan found
//	image_replaced  for an exec: it replaced the image of a process that
//	                had exec'd already (a shell's exec), not a fork+exec
//	exit_code       for an exit: the exit code; -1 when unknown or killed
//	exit_signal     for an exit: the signal that killed it; 0 otherwise
//
// with CEL's standard functions and its string extensions, for example
//
//	event == "created" && process.executable_path.startsWith("/tmp/")
//	event == "created" && process.container_id != "" && process.name == "sh"
//
// A field with explicit presence (process.login_uid, process.uid) reads as
// 0 when unset: test has(process.login_uid) first.
//
// An Engine runs every rule on each event and returns an eventbusv1.Alert
// for each that holds, carrying the process and the triggering event's
// correlation id. A rule alerts at most once per process (pid and start
// time) within Options.RepeatWindow; the silenced alerts are counted.
// Evaluation is bounded by a CEL cost limit, so a rule cannot run away.
package detect
