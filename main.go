// Command kontena is the whole grid in one binary: the node daemon
// (`kontena up`) and the CLI that manages it.
package main

import (
	"os"

	"github.com/kontena-ng/kontena/cmd"
)

func main() {
	os.Exit(cmd.Run(os.Args, os.Stdout, os.Stderr))
}
