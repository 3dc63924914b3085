package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/control"
	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy"
	"trellis.dev/trellis/internal/run"
	"trellis.dev/trellis/internal/sample"
	"trellis.dev/trellis/internal/xdsserver"
)

// signalContext ends on SIGINT or SIGTERM: long-running commands stop
// cleanly on Ctrl-C.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

func newControlCmd() *cobra.Command {
	var cfg control.Config
	var etcd string
	cmd := &cobra.Command{
		Use:   "control",
		Short: "Run the control plane: store (etcd), registry, xDS server and HTTP API",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().StringVar(&cfg.DataDir, "data-dir", ".trellis", "directory of the embedded etcd (unused with --etcd)")
	cmd.Flags().StringVar(&etcd, "etcd", "", "external etcd endpoints, comma-separated (default: embedded etcd)")
	cmd.Flags().StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:15000", "HTTP API address")
	cmd.Flags().StringVar(&cfg.XDSAddr, "xds-addr", "127.0.0.1:15010", "xDS (gRPC) address")
	cmd.Flags().StringSliceVar(&cfg.AllowedHosts, "allowed-hosts", nil,
		"extra Host names the HTTP API answers, comma-separated (always: localhost, loopback addresses, the --http-addr host)")
	cmd.Flags().StringSliceVar(&cfg.AllowedOrigins, "allowed-origins", nil,
		"browser origins (scheme://host[:port]) allowed to call the HTTP API, comma-separated (default: none but its own)")
	cmd.Flags().IntVar(&cfg.MaxRouteConfigBytes, "max-route-config-bytes", control.DefaultMaxRouteConfigBytes,
		"largest route configuration (and total of each other xDS type) an apply may make; grpc-go xDS clients accept 4 MiB by default")
	var admit float64
	cmd.Flags().Float64Var(&admit, "xds-admit-rate", xdsserver.DefaultAdmitRate,
		"xDS streams admitted per second (a restart reconnects every proxy at once); 0: no bound")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, stop := signalContext(cmd.Context())
		defer stop()
		if etcd != "" {
			cfg.Etcd = strings.Split(etcd, ",")
		}
		cfg.Logger = logger(cmd)
		switch {
		case admit < 0:
			return fmt.Errorf("--xds-admit-rate: must not be negative, got %g", admit)
		case admit == 0:
			cfg.XDSAdmitRate = -1 // no bound
		default:
			cfg.XDSAdmitRate = admit
		}
		srv, err := control.Start(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "trellis control ready: http=%s xds=%s\n", srv.HTTPAddr(), srv.XDSAddr())
		select {
		case <-ctx.Done():
			return srv.Close()
		case <-srv.Done(): // a listener failed: end the command with its error
			return srv.Wait()
		}
	}
	return cmd
}

// proxyFlags are the flags trellis proxy and trellis run share.
type proxyFlags struct {
	service, version, zone, address, admin, control string
	inbound, outbound                               int
	readyPath                                       string
	readyGRPC                                       bool
	xdsMaxRecv                                      int
	appProtocol                                     string
}

func (f *proxyFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.service, "service", "", "service name of this instance")
	cmd.Flags().StringVar(&f.version, "version", "v1", "version label of this instance")
	cmd.Flags().StringVar(&f.zone, "zone", "", "locality zone of this instance")
	cmd.Flags().StringVar(&f.address, "address", "127.0.0.1", "IP the inbound listener binds and peers use")
	cmd.Flags().IntVar(&f.inbound, "inbound-port", 0, "inbound listener port (0: pick a free one)")
	cmd.Flags().IntVar(&f.outbound, "outbound-port", 0, "outbound listener port on 127.0.0.1 (0: pick a free one)")
	cmd.Flags().StringVar(&f.admin, "admin-addr", "", "admin address (default: a free port on 127.0.0.1)")
	cmd.Flags().StringVar(&f.control, "control", envOr("TRELLIS_CONTROL", "127.0.0.1:15010"), "control plane xDS address (env TRELLIS_CONTROL)")
	cmd.Flags().StringVar(&f.readyPath, "ready-path", "",
		"HTTP path on the app that must answer 2xx/3xx before the instance takes traffic (default: the app's port accepting connections)")
	cmd.Flags().BoolVar(&f.readyGRPC, "ready-grpc", false,
		"the app must answer the gRPC health check (grpc.health.v1) with SERVING before the instance takes traffic")
	cmd.Flags().IntVar(&f.xdsMaxRecv, "xds-max-recv-bytes", proxy.DefaultXDSMaxRecvBytes, "largest xDS response this proxy accepts")
	cmd.Flags().StringVar(&f.appProtocol, "app-protocol", "",
		"what the app speaks: "+strings.Join(proxy.AppProtocols, ", ")+
			" (default: detected per inbound connection from its first bytes; tcp and tls relay every connection untouched, see docs/protocols.md)")
}

func newProxyCmd() *cobra.Command {
	var f proxyFlags
	var lf limitFlags
	var appPort int
	cmd := &cobra.Command{
		Use:   "proxy --service S --version V --app-port P --inbound-port I --outbound-port O",
		Short: "Run a sidecar proxy configured by xDS",
		Args:  cobra.NoArgs,
	}
	f.register(cmd)
	lf.register(cmd)
	cmd.Flags().IntVar(&appPort, "app-port", 0, "the app's port on 127.0.0.1 (0: client-only, no inbound listener)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if f.service == "" {
			return fmt.Errorf("--service: required")
		}
		return serveProxy(cmd, lf.apply(proxy.Config{
			Role: meshxds.RoleSidecar, Service: f.service, Version: f.version, Zone: f.zone,
			Address: f.address, AppPort: appPort, InboundPort: f.inbound, OutboundPort: f.outbound,
			AdminAddr: f.admin, ControlAddr: f.control,
			ReadyPath: f.readyPath, ReadyGRPC: f.readyGRPC, XDSMaxRecvBytes: f.xdsMaxRecv,
			AppProtocol: f.appProtocol,
		}))
	}
	return cmd
}

func newGatewayCmd() *cobra.Command {
	var listen, admin, ctl string
	cmd := &cobra.Command{
		Use:   "gateway --listen 127.0.0.1:8080",
		Short: "Run the ingress gateway: north-south entry routed by Host and path",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "address the gateway listens on")
	cmd.Flags().StringVar(&admin, "admin-addr", "", "admin address (default: a free port on 127.0.0.1)")
	cmd.Flags().StringVar(&ctl, "control", envOr("TRELLIS_CONTROL", "127.0.0.1:15010"), "control plane xDS address (env TRELLIS_CONTROL)")
	var lf limitFlags
	lf.register(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return serveProxy(cmd, lf.apply(proxy.Config{Role: meshxds.RoleGateway, GatewayAddr: listen, AdminAddr: admin, ControlAddr: ctl}))
	}
	return cmd
}

// serveProxy runs a proxy until SIGINT/SIGTERM, then shuts it down cleanly.
func serveProxy(cmd *cobra.Command, cfg proxy.Config) error {
	ctx, stop := signalContext(cmd.Context())
	defer stop()
	cfg.Logger = logger(cmd)
	proxy.SetRuntimeDefaults()               // GC tuned for a proxy (docs/performance.md)
	proxy.ReleaseExecutablePages(cfg.Logger) // idle memory (docs/performance.md)
	p, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "trellis %s listening: inbound=%s outbound=%s gateway=%s admin=%s\n",
		cfg.Role, p.InboundAddr(), p.OutboundAddr(), p.GatewayAddr(), p.AdminAddr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.Shutdown(sctx)
}

func newRunCmd() *cobra.Command {
	var f proxyFlags
	var lim limitFlags
	var port int
	cmd := &cobra.Command{
		Use:   "run --service S --version V --port P [--zone Z] -- CMD ARGS...",
		Short: "Run an app with its sidecar: sidecar first, app exit ends the pod",
		Args:  cobra.MinimumNArgs(1),
	}
	f.register(cmd)
	lim.register(cmd)
	cmd.Flags().IntVar(&port, "port", 0, "the app's port (0: a client-only job, not registered)")
	var drain time.Duration
	cmd.Flags().DurationVar(&drain, "drain", 2*time.Second,
		"on SIGTERM, leave the mesh and keep serving this long before the app gets the signal (0: at once)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if f.service == "" {
			return fmt.Errorf("--service: required")
		}
		if drain < 0 {
			return fmt.Errorf("--drain: must not be negative, got %s", drain)
		}
		code, err := run.Run(cmd.Context(), run.Config{
			Service: f.service, Version: f.version, Zone: f.zone, Port: port, Address: f.address,
			InboundPort: f.inbound, OutboundPort: f.outbound, AdminAddr: f.admin, Control: f.control,
			ReadyPath: f.readyPath, ReadyGRPC: f.readyGRPC, XDSMaxRecvBytes: f.xdsMaxRecv, AppProtocol: f.appProtocol,
			MaxHeaderBytes: lim.maxHeaderBytes, MaxHeaders: lim.maxHeaders, MaxConnections: lim.maxConnections,
			Drain: drain, Args: args, Stdin: cmd.InOrStdin(), Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(),
			Logger: logger(cmd),
		})
		if err != nil {
			return err
		}
		if code != 0 {
			return exitError{code}
		}
		return nil
	}
	return cmd
}

func newSampleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sample", Short: "Sample apps for demos and tests"}
	var port int
	var service, version string
	var failStatus int
	var healthFile string
	echo := &cobra.Command{
		Use:   "echo --port P",
		Short: "An HTTP/1.1, h2c and gRPC echo backend; /call?to=SERVICE calls through the sidecar",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			if port == 0 {
				port, _ = strconv.Atoi(os.Getenv("PORT"))
			}
			if failStatus != 0 && (failStatus < 500 || failStatus > 599) {
				return fmt.Errorf("--fail-status %d: want 500-599", failStatus)
			}
			lis, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "sample echo listening on %s\n", lis.Addr())
			return sample.ServeEcho(ctx, lis, sample.EchoConfig{Service: service, Version: version, Logger: logger(cmd),
				FailStatus: failStatus, HealthFile: healthFile})
		},
	}
	echo.Flags().IntVar(&port, "port", 0, "port on 127.0.0.1 (default $PORT)")
	echo.Flags().StringVar(&service, "service", "", "service name to report (default $TRELLIS_SERVICE)")
	echo.Flags().StringVar(&version, "version", "", "version to report (default $TRELLIS_VERSION)")
	echo.Flags().IntVar(&failStatus, "fail-status", 0, "answer every HTTP echo request without ?status with this status (500-599): a failing instance")
	echo.Flags().StringVar(&healthFile, "health-file", "", "answer /healthz 503 while this file does not exist: an instance failing its health check while serving its traffic")

	var gc sample.GRPCCallConfig
	grpcCall := &cobra.Command{
		Use:   "grpc-call --to SERVICE:PORT",
		Short: "A stock grpc-go client: health, unary, server-streaming and bidi calls to a sample echo",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if gc.Target == "" {
				return fmt.Errorf("--to: required")
			}
			return sample.GRPCCall(cmd.Context(), gc, cmd.OutOrStdout())
		},
	}
	grpcCall.Flags().StringVar(&gc.Target, "to", "", "gRPC target, e.g. echo:9000")
	grpcCall.Flags().StringVar(&gc.Message, "message", "hello", "message to send")
	grpcCall.Flags().IntVar(&gc.Count, "count", 3, "replies to ask for on the server stream")
	grpcCall.Flags().DurationVar(&gc.Timeout, "timeout", 10*time.Second, "deadline of all calls")
	cmd.AddCommand(echo, grpcCall)
	return cmd
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
