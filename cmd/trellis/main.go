// Command trellis is the whole mesh in one binary: control plane, sidecar
// proxy, gateway, pod runner, sample app, demo and CLI.
package main

import (
	"os"

	"trellis.dev/trellis/internal/cli"
)

func main() {
	os.Exit(cli.Execute(os.Args[1:]))
}
