// Command daemoneye-cli talks to the DaemonEye event bus; see
// `daemoneye-cli help`.
package main

import (
	"os"

	"github.com/daemoneye/daemoneye/internal/programs/cli"
)

func main() { os.Exit(cli.Run()) }
