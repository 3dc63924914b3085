package proxy

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/h1server"
)

// Config says what one proxy is and where it listens.
type Config struct {
	Role                   string // meshxds.RoleSidecar or meshxds.RoleGateway
	Service, Version, Zone string
	// Address is the IP the inbound listener binds and that peers are told
	// to reach it on. Default 127.0.0.1.
	Address string
	// AppPort is the sidecar's app port on 127.0.0.1. 0 makes a client-only
	// sidecar: no inbound listener, not registered as an instance.
	AppPort int
	// InboundPort and OutboundPort: 0 picks a free port. The outbound
	// listener binds 127.0.0.1 only: it is for the app beside it.
	InboundPort, OutboundPort int
	// GatewayAddr is the gateway's listen address. Default 127.0.0.1:8080.
	GatewayAddr string
	// AdminAddr serves /ready, /config_dump, /stats/prometheus.
	// Default 127.0.0.1:0.
	AdminAddr string
	// ControlAddr is the xDS address of trellis control. Default 127.0.0.1:15010.
	ControlAddr string
	// NodeID names this proxy to the control plane. Default
	// "<service>.<version>.<random>" or "gateway.<random>".
	NodeID string
	// ReadyPath, when set, is an HTTP path on the app that must answer
	// 2xx or 3xx before the instance is registered (and keep answering so
	// to stay registered). Without it (and without ReadyGRPC) the app is
	// ready once it accepts connections on AppPort.
	ReadyPath string
	// ReadyGRPC: the app must answer the standard gRPC health check
	// (grpc.health.v1, service "") with SERVING.
	ReadyGRPC bool
	// AppProtocol is what the app speaks on AppPort, when declared: "http",
	// "http2" or "grpc" (the inbound listener serves HTTP only, as before
	// detection), "tcp" or "tls" (every inbound connection is relayed to
	// the app as TCP, bytes untouched, without waiting for the first
	// bytes). Empty: detected per connection from its first bytes
	// (docs/protocols.md).
	AppProtocol string
	// XDSMaxRecvBytes bounds one xDS response. Default 64 MiB.
	XDSMaxRecvBytes int
	Logger          *slog.Logger

	// MaxHeaderBytes bounds a request head (request line, header fields,
	// line ends) on every listener, admin included; MaxHeaders bounds its
	// number of header fields, Host included. A request over either is
	// answered 431 with x-trellis-error: header_too_large. Defaults 60 KiB
	// and 100, Envoy's.
	MaxHeaderBytes, MaxHeaders int
	// MaxConnections caps the connections open at once on each traffic
	// listener (inbound, outbound, gateway; not admin); a connection over
	// it is answered 503 with x-trellis-error: overloaded and closed, and
	// counted. Default 10,000, or a quarter of the file descriptor limit
	// (RLIMIT_NOFILE) when that is less: every proxied connection needs an
	// upstream one too, so the cap is reached, answered and counted before
	// the process runs out of descriptors.
	MaxConnections int
}

// Defaults.
const (
	DefaultAddress     = "127.0.0.1"
	DefaultGatewayAddr = "127.0.0.1:8080"
	DefaultAdminAddr   = "127.0.0.1:0"
	DefaultControlAddr = "127.0.0.1:15010"

	DefaultMaxHeaderBytes = h1server.DefaultMaxHeaderBytes // 60 KiB
	DefaultMaxHeaders     = h1server.DefaultMaxHeaders     // 100
	DefaultMaxConnections = 10000                          // per listener; see Config.MaxConnections

	// DefaultXDSMaxRecvBytes is well over what a scoped proxy needs and
	// 16 times gRPC's default of 4 MiB, which the whole mesh's endpoints
	// passed at ~3,300 services.
	DefaultXDSMaxRecvBytes = 64 << 20
)

// ConfigError names the Config field that is wrong.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return "proxy config: " + e.Field + ": " + e.Reason }

func badField(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// withDefaults fills in the defaults and checks every field.
func (c Config) withDefaults() (Config, error) {
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	if c.AdminAddr == "" {
		c.AdminAddr = DefaultAdminAddr
	}
	if c.ControlAddr == "" {
		c.ControlAddr = DefaultControlAddr
	}
	if c.Role == meshxds.RoleGateway && c.GatewayAddr == "" {
		c.GatewayAddr = DefaultGatewayAddr
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.XDSMaxRecvBytes == 0 {
		c.XDSMaxRecvBytes = DefaultXDSMaxRecvBytes
	}
	if c.XDSMaxRecvBytes < 1<<20 {
		return c, badField("XDSMaxRecvBytes", "%d is under 1 MiB", c.XDSMaxRecvBytes)
	}
	if c.ReadyPath != "" && c.ReadyPath[0] != '/' {
		return c, badField("ReadyPath", "%q must start with '/'", c.ReadyPath)
	}
	if c.ReadyPath != "" && c.ReadyGRPC {
		return c, badField("ReadyGRPC", "choose an HTTP (ReadyPath) or a gRPC readiness check, not both")
	}
	if !validAppProtocol(c.AppProtocol) {
		return c, badField("AppProtocol", "%q is not one of %s (empty: detect)", c.AppProtocol, AppProtocols)
	}
	if c.AppProtocol != "" && (c.Role != meshxds.RoleSidecar || c.AppPort == 0) {
		return c, badField("AppProtocol", "only a sidecar with an app (AppPort) has an app protocol")
	}
	for _, f := range []struct {
		field string
		v     *int
		def   int
	}{
		{"MaxHeaderBytes", &c.MaxHeaderBytes, DefaultMaxHeaderBytes},
		{"MaxHeaders", &c.MaxHeaders, DefaultMaxHeaders},
		{"MaxConnections", &c.MaxConnections, defaultMaxConnections()},
	} {
		if *f.v < 0 {
			return c, badField(f.field, "must not be negative, got %d", *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}

	switch c.Role {
	case meshxds.RoleSidecar:
		if c.AppPort > 0 && c.Service == "" {
			return c, badField("Service", "a sidecar with an app (AppPort %d) needs its service name", c.AppPort)
		}
		if c.GatewayAddr != "" {
			return c, badField("GatewayAddr", "only a gateway has a gateway listener")
		}
	case meshxds.RoleGateway:
		if c.AppPort != 0 || c.InboundPort != 0 || c.OutboundPort != 0 {
			return c, badField("AppPort", "a gateway has no app, inbound or outbound listener; set GatewayAddr")
		}
	default:
		return c, badField("Role", "must be %q or %q, not %q", meshxds.RoleSidecar, meshxds.RoleGateway, c.Role)
	}
	ip := net.ParseIP(c.Address)
	if ip == nil {
		return c, badField("Address", "%q is not an IP address", c.Address)
	}
	if ip.IsUnspecified() {
		return c, badField("Address", "%s cannot be advertised to peers; give this host's IP", c.Address)
	}
	for _, p := range []struct {
		field string
		port  int
	}{{"AppPort", c.AppPort}, {"InboundPort", c.InboundPort}, {"OutboundPort", c.OutboundPort}} {
		if p.port < 0 || p.port > 65535 {
			return c, badField(p.field, "%d is not a port (0-65535)", p.port)
		}
	}
	if c.AppPort > 0 && c.InboundPort == c.AppPort && ip.IsLoopback() {
		return c, badField("InboundPort", "%d is the app's port", c.InboundPort)
	}
	for _, a := range []struct{ field, addr string }{
		{"GatewayAddr", c.GatewayAddr}, {"AdminAddr", c.AdminAddr}, {"ControlAddr", c.ControlAddr},
	} {
		if a.addr == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.addr); err != nil {
			return c, badField(a.field, "%q is not host:port", a.addr)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return c, badField(a.field, "%q has no valid port", a.addr)
		}
	}
	return c, nil
}

// hasInbound reports whether this proxy takes mesh traffic for an app.
func (c *Config) hasInbound() bool { return c.Role == meshxds.RoleSidecar && c.AppPort > 0 }
