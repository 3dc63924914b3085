// Package cli holds the trellis command tree (cobra). Each file is one
// command; the work itself lives in the packages the commands call.
package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"
)

// exitError carries an exit code out of a command (trellis run exits with
// its app's code).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Execute runs the command line and returns the process exit code.
func Execute(args []string) int {
	root := newRoot(os.Stdout, os.Stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		return xe.ExitCode()
	}
	// One clear line on stderr.
	fmt.Fprintf(os.Stderr, "error: %s\n", strings.TrimSpace(strings.ReplaceAll(err.Error(), "\n", "; ")))
	return 1
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "trellis",
		Short:         "Trellis: a lightweight service mesh",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().String("log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(
		newControlCmd(),
		newProxyCmd(),
		newGatewayCmd(),
		newRunCmd(),
		newSampleCmd(),
		newDemoCmd(),
		newApplyCmd(),
		newGetCmd(),
		newDeleteCmd(),
	)
	return root
}

// logger builds the process's one slog logger from --log-level.
func logger(cmd *cobra.Command) *slog.Logger {
	lvl := slog.LevelInfo
	s, _ := cmd.Flags().GetString("log-level")
	_ = lvl.UnmarshalText([]byte(s))
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl}))
}

// serverFlag adds --server, defaulting to $TRELLIS_SERVER.
func serverFlag(cmd *cobra.Command) *string {
	def := os.Getenv("TRELLIS_SERVER")
	if def == "" {
		def = "http://127.0.0.1:15000"
	}
	return cmd.Flags().String("server", def, "control plane HTTP API address (env TRELLIS_SERVER)")
}
