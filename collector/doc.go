// Package collector is the control plane between the agent and its
// collectors: the operations every collector serves over the bus
// (health, capabilities, and optionally lifecycle, configuration,
// shutdown and snapshots), the typed client the agent and the CLI use to
// call them, and registration with the agent.
//
// A collector implements Collector, plus any of Lifecycle, Configurable,
// Shutdowner and Snapshotter (discovered by type assertion), and calls
// Serve with an rpc.Server. Its operations are then answered on
// control.collector.<stem>.<id> (stems lifecycle, config, health,
// capabilities; Topic says which) and control.agent.tasks.<id>; an
// operation it does not implement is answered with category UNSUPPORTED,
// and GET_CAPABILITIES lists the operations it does. Config keeps a
// versioned configuration with validation and one step of rollback for
// UPDATE_CONFIG.
//
// Client calls these operations with typed requests and results, retrying
// those that are safe to repeat. The agent implements Registry and serves
// it with ServeRegistry on control.agent.coordination.
//
// The package starts no goroutines of its own: the rpc.Server runs the
// handlers.
package collector

import "errors"

// ErrInvalidID: a collector id must be one topic segment of a-z, 0-9, '_'
// and '-', because the collector's topics end with it.
var ErrInvalidID = errors.New("collector: invalid id (use a-z, 0-9, '_' and '-', as in \"procmond\")")
