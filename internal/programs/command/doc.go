// Package command holds what DaemonEye's programs (daemoneye-agent,
// procmond, daemoneye-broker) do alike on their command lines: parse the
// flags with the same exit codes, and build the logger -v selects.
package command
