//go:build race

package server

// raceEnabled: under the race detector sync.Pool drops a share of what is
// put back at random, so a pooled path allocates now and then.
const raceEnabled = true
