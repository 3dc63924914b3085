package cli

import (
	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var cfg demo.Config
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole mesh and a sample app on this machine, with a canary Route applied",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:15000", "control plane HTTP API address")
	cmd.Flags().StringVar(&cfg.XDSAddr, "xds-addr", "127.0.0.1:15010", "control plane xDS address")
	cmd.Flags().StringVar(&cfg.GatewayAddr, "gateway-addr", "127.0.0.1:8080", "ingress gateway address")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, stop := signalContext(cmd.Context())
		defer stop()
		cfg.Stdout = cmd.OutOrStdout()
		// The demo's own output is the tour; keep routine logs out of it.
		if !cmd.Flags().Changed("log-level") {
			_ = cmd.Flags().Set("log-level", "warn")
		}
		cfg.Logger = logger(cmd)
		return demo.Run(ctx, cfg)
	}
	return cmd
}
