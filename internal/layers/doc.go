// Package layers holds no code: its test checks that the module's
// dependencies point one way (docs/architecture.md). The core knows
// nothing of sockets, the protocol knows nothing of processes, the bus
// API knows nothing of the monitor, the CLI knows the agent only through
// its API package and links no rule engine, and the bench/ module uses
// public packages only.
package layers
