package cli

import (
	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/proxy"
)

// limitFlags are the proxy's input limits, on trellis proxy, gateway and run.
type limitFlags struct {
	maxHeaderBytes, maxHeaders, maxConnections int
}

func (f *limitFlags) register(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.maxHeaderBytes, "max-header-bytes", proxy.DefaultMaxHeaderBytes,
		"largest request head (request line and header fields) on every listener; larger is answered 431 header_too_large")
	cmd.Flags().IntVar(&f.maxHeaders, "max-headers", proxy.DefaultMaxHeaders,
		"most header fields of a request (Host included); more is answered 431 header_too_large")
	cmd.Flags().IntVar(&f.maxConnections, "max-connections", 0,
		"connections open at once per traffic listener; more are answered 503 overloaded "+
			"(0: 10000, or a quarter of the file descriptor limit when less)")
}

// apply sets the limits in cfg and returns it.
func (f *limitFlags) apply(cfg proxy.Config) proxy.Config {
	cfg.MaxHeaderBytes, cfg.MaxHeaders, cfg.MaxConnections = f.maxHeaderBytes, f.maxHeaders, f.maxConnections
	return cfg
}
